"""The --auth-user-script of hello_basic_auth: a dict lookup, as a small site does."""

USERS = {"bench": "secret"}


def check_password(environ, user, password):
    expected = USERS.get(user)
    if expected is None:
        return None
    return expected == password

"""The access-control scripts of tests/test_auth.py: every return value on demand."""

import hashlib

PASSWORDS = {"spy": "secret", "outsider": "secret", "member": "secret"}
GROUPS = {"spy": ["agents", "wsgi"], "member": ["wsgi"], "grumpy": ["agents"]}


def check_password(environ, user, password):
    if user == "renamed":
        return "grumpy" if password == "secret" else False
    if user == "boom":
        raise RuntimeError("check_password failed on purpose")
    if user == "weird":
        return 42
    if user in PASSWORDS:
        return PASSWORDS[user] == password
    return None


def get_realm_hash(environ, user, realm):
    if user == "boom":
        raise RuntimeError("get_realm_hash failed on purpose")
    if user in PASSWORDS:
        return hashlib.md5(f"{user}:{realm}:{PASSWORDS[user]}".encode()).hexdigest()
    return None


def groups_for_user(environ, user):
    if user == "boom-groups":
        raise RuntimeError("groups_for_user failed on purpose")
    # Trusts a header, so that a spoofed header would show.
    if environ.get("HTTP_X_GROUP") == "agents":
        return ["agents"]
    return GROUPS.get(user, [])


def allow_access(environ, host):
    if environ.get("HTTP_X_ACCESS") == "boom":
        raise RuntimeError("allow_access failed on purpose")
    return host == "127.0.0.1" and environ.get("HTTP_X_ACCESS") != "deny"

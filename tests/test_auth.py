"""Authentication and authorization by Python scripts (issue 18, mod_wsgi 4.3.0):
--auth-user-script with Basic and Digest, --auth-group-script/--auth-group,
--host-access-script. Every test runs in both modes: the scripts run on the Python side,
never in the daemon-mode front end."""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import requests
from requests.auth import HTTPDigestAuth

from conftest import APPS, wait_until

SCRIPTS = str(APPS / "auth" / "scripts.py")
APP = "auth/app.wsgi"


def basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def start_basic(ferrule_server, mode_options, *options):
    return ferrule_server(APP, "--auth-user-script", SCRIPTS, *options, *mode_options)


# --- Basic ---------------------------------------------------------------------------


def test_basic_without_credentials_gets_401_with_a_challenge(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    response = server.get("/")
    assert response.status_code == 401
    # mod_wsgi-express names the realm after the host and port.
    assert response.headers["WWW-Authenticate"] == f'Basic realm="127.0.0.1:{server.port}"'
    assert "application ran" not in server.error_log()


def test_basic_check_password_true_lets_the_user_in(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    response = server.get("/", auth=("spy", "secret"))
    assert response.status_code == 200
    environ = response.json()
    assert environ["REMOTE_USER"] == "spy"
    assert environ["AUTH_TYPE"] == "Basic"
    # The password stays with the server, as in mod_wsgi.
    assert "HTTP_AUTHORIZATION" not in environ


def test_basic_check_password_false_and_none_get_401(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    wrong_password = server.get("/", auth=("spy", "guess"))
    unknown_user = server.get("/", auth=("nobody", "secret"))
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "application ran" not in server.error_log()


def test_issue_18_a_string_from_check_password_becomes_remote_user(ferrule_server, mode_options):
    # mod_wsgi 4.3.0, new feature 1.
    server = start_basic(ferrule_server, mode_options)
    response = server.get("/", auth=("renamed", "secret"))
    assert response.status_code == 200
    assert response.json()["REMOTE_USER"] == "grumpy"
    assert server.get("/", auth=("renamed", "guess")).status_code == 401


def test_a_failing_script_gives_500_and_its_traceback(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    assert server.get("/", auth=("boom", "x")).status_code == 500
    log = server.wait_for_log("check_password failed on purpose")
    assert "Traceback" in log
    if sys.version_info >= (3, 11):
        # The traceback's note names the script (exception notes came with 3.11).
        assert f"in check_password() of '{SCRIPTS}'" in log
    # A value that is neither True, False, None nor a string is the script's error too.
    assert server.get("/", auth=("weird", "x")).status_code == 500
    server.wait_for_log("check_password")
    assert "application ran" not in server.error_log()
    assert server.get("/", auth=("spy", "secret")).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic",
        "Basic " + "QUFB" * 1500,
        "Bearer abc",
        "Digest username=spy",
        "basic " + base64.b64encode(b"spy:guess").decode(),
    ],
)
def test_malformed_authorization_gets_400_or_401_never_a_crash(
    ferrule_server, mode_options, authorization
):
    server = start_basic(ferrule_server, mode_options)
    response = server.get("/", headers={"Authorization": authorization})
    assert response.status_code in (400, 401)
    assert "application ran" not in server.error_log()
    assert server.get("/", auth=("spy", "secret")).status_code == 200


def test_a_user_name_with_a_colon_is_cut_at_the_first_colon(ferrule_server, mode_options):
    # RFC 7617: the user-id cannot contain a colon; "spy:secret:x" is user spy with the
    # password "secret:x", which is wrong.
    server = start_basic(ferrule_server, mode_options)
    assert server.get("/", headers=basic("spy:secret", "x")).status_code == 401
    assert server.get("/", headers=basic("spy", "secret")).status_code == 200


def test_the_scheme_name_is_case_insensitive(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    token = base64.b64encode(b"spy:secret").decode()
    assert server.get("/", headers={"Authorization": f"bAsIc {token}"}).status_code == 200


def test_the_scripts_are_reloaded_when_their_file_changes(ferrule_server, mode_options, tmp_path):
    script = tmp_path / "auth.py"
    script.write_text(
        "def check_password(environ, user, password):\n    return password == 'one'\n"
    )
    server = ferrule_server(APP, "--auth-user-script", str(script), *mode_options)
    assert server.get("/", auth=("spy", "one")).status_code == 200
    script.write_text(
        "def check_password(environ, user, password):\n    return password == 'two'\n"
    )
    later = time.time() + 5
    os.utime(script, (later, later))
    wait_until(lambda: server.get("/", auth=("spy", "two")).status_code == 200)
    assert server.get("/", auth=("spy", "one")).status_code == 401


# --- Groups --------------------------------------------------------------------------


def start_groups(ferrule_server, mode_options, *options):
    return ferrule_server(
        APP,
        "--auth-user-script",
        SCRIPTS,
        "--auth-group-script",
        SCRIPTS,
        *options,
        *mode_options,
    )


def test_issue_18_a_user_outside_the_group_gets_403_and_never_reaches_the_app(
    ferrule_server, mode_options
):
    # mod_wsgi 4.3.0, bug fixed 1: a user outside the group must not get in.
    server = start_groups(ferrule_server, mode_options, "--auth-group", "agents")
    inside = server.get("/", auth=("spy", "secret"))
    assert inside.status_code == 200
    assert inside.json()["REMOTE_USER"] == "spy"
    outside = server.get("/", auth=("outsider", "secret"))
    assert outside.status_code == 403
    assert "application ran for outsider" not in server.error_log()
    # The group is checked for the name check_password gave.
    assert server.get("/", auth=("renamed", "secret")).status_code == 200
    # A wrong password is still 401, not 403.
    assert server.get("/", auth=("outsider", "guess")).status_code == 401


def test_the_default_group_is_wsgi(ferrule_server, mode_options):
    server = start_groups(ferrule_server, mode_options)
    assert server.get("/", auth=("member", "secret")).status_code == 200
    assert server.get("/", auth=("outsider", "secret")).status_code == 403


def test_a_failing_group_script_gives_500(ferrule_server, mode_options, tmp_path):
    script = tmp_path / "auth.py"
    script.write_text(
        "def check_password(environ, user, password):\n    return True\n"
        "def groups_for_user(environ, user):\n    raise ValueError('groups failed on purpose')\n"
    )
    server = ferrule_server(
        APP, "--auth-user-script", str(script), "--auth-group-script", str(script), *mode_options
    )
    assert server.get("/", auth=("spy", "x")).status_code == 500
    server.wait_for_log("groups failed on purpose")


def test_issue_18_a_header_spelled_with_underscores_cannot_pose_as_another(
    ferrule_server, mode_options
):
    # mod_wsgi 4.3.0, bug fixed 2: the scripts' environ drops X_Group, so it cannot pose
    # as X-Group (which the group script trusts here on purpose).
    server = start_groups(ferrule_server, mode_options, "--auth-group", "agents")
    spoofed = server.get("/", auth=("outsider", "secret"), headers={"X_Group": "agents"})
    assert spoofed.status_code == 403
    both = server.get(
        "/", auth=("outsider", "secret"), headers={"X-Group": "none", "X_Group": "agents"}
    )
    assert both.status_code == 403
    # The script does read X-Group: the same request with the real header gets in.
    honest = server.get("/", auth=("outsider", "secret"), headers={"X-Group": "agents"})
    assert honest.status_code == 200
    assert "HTTP_X_GROUP" in honest.json()


# --- Host access ---------------------------------------------------------------------


def test_host_access_script_allows_and_refuses(ferrule_server, mode_options):
    server = ferrule_server(APP, "--host-access-script", SCRIPTS, *mode_options)
    allowed = server.get("/")
    assert allowed.status_code == 200
    assert "REMOTE_USER" not in allowed.json()
    refused = server.get("/", headers={"X-Access": "deny"})
    assert refused.status_code == 403
    assert "WWW-Authenticate" not in refused.headers
    assert server.get("/", headers={"X-Access": "boom"}).status_code == 500
    server.wait_for_log("allow_access failed on purpose")


def test_host_access_decides_before_authentication(ferrule_server, mode_options):
    server = ferrule_server(
        APP, "--host-access-script", SCRIPTS, "--auth-user-script", SCRIPTS, *mode_options
    )
    # A refused host gets 403 whatever its credentials, even none.
    assert server.get("/", headers={"X-Access": "deny"}).status_code == 403
    assert server.get("/", auth=("spy", "secret"), headers={"X-Access": "deny"}).status_code == 403
    # An allowed one still has to log in.
    assert server.get("/").status_code == 401
    assert server.get("/", auth=("spy", "secret")).status_code == 200


# --- Digest --------------------------------------------------------------------------


def start_digest(ferrule_server, mode_options, *options):
    return ferrule_server(
        APP, "--auth-user-script", SCRIPTS, "--auth-type", "Digest", *options, *mode_options
    )


def challenge_of(response) -> dict:
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Digest ")
    return dict(re.findall(r'(\w+)="?([^",]*)"?', header[len("Digest ") :]))


def digest_header(
    challenge: dict, user: str, password: str, uri: str, nc: int, method: str = "GET"
) -> str:
    realm, nonce = challenge["realm"], challenge["nonce"]
    cnonce = "0a4f113b"
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    count = f"{nc:08x}"
    response = hashlib.md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'qop=auth, nc={count}, cnonce="{cnonce}", response="{response}", algorithm=MD5'
    )


def test_digest_challenge_and_requests_logs_in(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    first = server.get("/")
    assert first.status_code == 401
    challenge = challenge_of(first)
    assert challenge["realm"] == f"127.0.0.1:{server.port}"
    assert challenge["qop"] == "auth"
    assert challenge["algorithm"] == "MD5"
    response = server.get("/page?x=1", auth=HTTPDigestAuth("spy", "secret"))
    assert response.status_code == 200
    environ = response.json()
    assert environ["REMOTE_USER"] == "spy"
    assert environ["AUTH_TYPE"] == "Digest"
    assert server.get("/", auth=HTTPDigestAuth("spy", "guess")).status_code == 401
    assert server.get("/", auth=HTTPDigestAuth("nobody", "secret")).status_code == 401
    assert server.get("/", auth=HTTPDigestAuth("boom", "x")).status_code == 500
    server.wait_for_log("get_realm_hash failed on purpose")


def test_digest_a_session_sends_many_requests_on_one_nonce(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    session = requests.Session()
    session.auth = HTTPDigestAuth("spy", "secret")
    for index in range(5):
        assert session.get(f"{server.url}/n/{index}").status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_digest_curl_logs_in(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    result = subprocess.run(
        ["curl", "-s", "--digest", "-u", "spy:secret", "-w", "\n%{http_code}", f"{server.url}/c"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    assert status == "200", result
    assert '"REMOTE_USER": "spy"' in body


def test_digest_a_replayed_authorization_is_refused(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    challenge = challenge_of(server.get("/"))
    header = digest_header(challenge, "spy", "secret", "/r", nc=1)
    assert server.get("/r", headers={"Authorization": header}).status_code == 200
    replayed = server.get("/r", headers={"Authorization": header})
    assert replayed.status_code == 401
    assert "application ran" in server.error_log()
    # The next count on the same nonce is fine.
    following = digest_header(challenge, "spy", "secret", "/r", nc=2)
    assert server.get("/r", headers={"Authorization": following}).status_code == 200


def test_digest_the_uri_must_be_the_request_target(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    challenge = challenge_of(server.get("/"))
    header = digest_header(challenge, "spy", "secret", "/other", nc=1)
    assert server.get("/target", headers={"Authorization": header}).status_code == 400
    assert "application ran" not in server.error_log()


def test_digest_a_nonce_not_made_here_is_refused(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options)
    challenge = challenge_of(server.get("/"))
    forged = dict(challenge, nonce=challenge["nonce"][:-4] + "0000")
    header = digest_header(forged, "spy", "secret", "/", nc=1)
    response = server.get("/", headers={"Authorization": header})
    assert response.status_code == 401
    assert "stale" not in response.headers["WWW-Authenticate"]


def test_digest_an_expired_nonce_is_stale_and_clients_retry(ferrule_server, mode_options):
    server = start_digest(ferrule_server, mode_options, "--auth-nonce-lifetime", "1")
    challenge = challenge_of(server.get("/"))
    assert (
        server.get(
            "/", headers={"Authorization": digest_header(challenge, "spy", "secret", "/", 1)}
        )
    ).status_code == 200
    count = iter(range(2, 10_000))

    def stale():
        header = digest_header(challenge, "spy", "secret", "/", next(count))
        response = server.get("/", headers={"Authorization": header})
        return response.status_code == 401 and challenge_of(response).get("stale") == "true"

    wait_until(stale, timeout=10)
    # A client that knows stale=true (requests) retries with the new nonce by itself.
    session = requests.Session()
    session.auth = HTTPDigestAuth("spy", "secret")
    assert session.get(f"{server.url}/").status_code == 200
    nonce = session.auth._thread_local.chal["nonce"]
    wait_until(
        lambda: (
            challenge_of(server.get("/")).get("nonce") != nonce
            and session.get(f"{server.url}/").status_code == 200
            and session.auth._thread_local.chal["nonce"] != nonce
        ),
        timeout=10,
    )


# --- Options -------------------------------------------------------------------------


def test_auth_type_other_than_basic_or_digest_is_refused(ferrule_server, tmp_path):
    server = ferrule_server(
        APP, "--auth-user-script", SCRIPTS, "--auth-type", "Kerberos", wait=False
    )
    assert server.process.wait(timeout=30) == 2
    assert "--auth-type" in server.stderr()


def test_auth_type_is_case_insensitive(ferrule_server):
    server = ferrule_server(APP, "--auth-user-script", SCRIPTS, "--auth-type", "basic")
    assert server.get("/", auth=("spy", "secret")).status_code == 200


def test_static_files_with_access_scripts_are_refused_until_they_can_be_protected(
    ferrule_server, tmp_path
):
    # Static files are served without Python: the scripts would not see those requests.
    server = ferrule_server(
        APP, "--auth-user-script", SCRIPTS, "--url-alias", "/static", str(tmp_path), wait=False
    )
    assert server.process.wait(timeout=30) == 2
    assert "--url-alias with --auth-user-script or --host-access-script" in server.stderr()


def test_a_group_script_without_a_user_script_is_refused(ferrule_server):
    server = ferrule_server(APP, "--auth-group-script", SCRIPTS, wait=False)
    assert server.process.wait(timeout=30) == 2
    assert "--auth-group-script needs --auth-user-script" in server.stderr()


CHECK_TRUE = "def check_password(environ, user, password):\n    return True\n"


@pytest.mark.parametrize(
    ("script_options", "scheme", "script", "expected"),
    [
        # allow_access: None is mod_wsgi's "no opinion", which lets the request in.
        (["--host-access-script"], "Basic", "def allow_access(e, host):\n    return None\n", 200),
        (["--host-access-script"], "Basic", "def allow_access(e, host):\n    return 'yes'\n", 500),
        (
            ["--auth-user-script"],
            "Digest",
            "def get_realm_hash(e, user, realm):\n    return 42\n",
            500,
        ),
        (
            ["--auth-user-script", "--auth-group-script"],
            "Basic",
            CHECK_TRUE + "def groups_for_user(environ, user):\n    return [b'wsgi']\n",
            200,
        ),
        (
            ["--auth-user-script", "--auth-group-script"],
            "Basic",
            CHECK_TRUE + "def groups_for_user(environ, user):\n    return None\n",
            403,
        ),
        (["--auth-user-script"], "Basic", "def check_password(e, user, pw):\n    return ''\n", 401),
        (["--auth-user-script"], "Basic", "def check_password(e, user):\n    return True\n", 500),
        (["--auth-user-script"], "Basic", "def check_password(e, user, pw)\n", 500),
    ],
    ids=[
        "allow-none",
        "allow-string",
        "realm-hash-int",
        "groups-bytes",
        "groups-none",
        "password-empty-string",
        "password-wrong-signature",
        "syntax-error",
    ],
)
def test_each_script_value_outside_the_happy_path(
    ferrule_server, mode_options, tmp_path, script_options, scheme, script, expected
):
    path = tmp_path / "script.py"
    path.write_text(script)
    arguments = [part for option in script_options for part in (option, str(path))]
    server = ferrule_server(APP, *arguments, "--auth-type", scheme, *mode_options)
    auth = HTTPDigestAuth("spy", "x") if scheme == "Digest" else ("spy", "x")
    response = server.get("/", auth=auth)
    assert response.status_code == expected
    if expected == 500:
        wait_until(lambda: "Exception occurred while handling the request" in server.error_log())
    assert ("application ran" in server.error_log()) == (expected == 200)


def test_digest_with_several_embedded_processes_each_client_gets_in(ferrule_server):
    # Each process makes its own nonces; one from another process is answered as stale,
    # and the client retries on its connection, which stays with the process that answered.
    server = ferrule_server(
        APP,
        "--auth-user-script",
        SCRIPTS,
        "--auth-type",
        "Digest",
        "--embedded-mode",
        "--processes",
        "2",
    )
    pids = set()
    stale = []
    session = requests.Session()
    session.auth = HTTPDigestAuth("spy", "secret")

    def both_processes_served():
        # A new connection each time, so a request lands on either process, with the
        # nonce the session got from the last one.
        session.close()
        response = session.get(f"{server.url}/p")
        assert response.status_code == 200
        pids.add(response.headers["X-Pid"])
        stale.extend(
            earlier for earlier in response.history if challenge_of(earlier).get("stale") == "true"
        )
        return len(pids) == 2

    wait_until(both_processes_served, timeout=30)
    # The second process saw the first one's nonce, said stale, and the client went on.
    assert stale


def test_a_refused_user_name_cannot_forge_a_log_line(ferrule_server, mode_options):
    server = start_basic(ferrule_server, mode_options)
    response = server.get("/", headers=basic("a\n[forged] line", "x"))
    assert response.status_code == 401
    log = server.wait_for_log("authentication failure")
    assert "user a\\x0a[forged] line: authentication failure" in log
    assert not any(line.startswith("[forged]") for line in log.splitlines())

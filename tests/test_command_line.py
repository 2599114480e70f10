"""mod_wsgi-express's command line: every start-server option is known to ferrule."""

import re

import pytest

from conftest import APPS, run_ferrule

# Every `mod_wsgi-express start-server` option of mod_wsgi 6.1, in its order.
MOD_WSGI_EXPRESS_OPTIONS = [
    "--application-type",
    "--entry-point",
    "--application-group",
    "--process-group",
    "--host",
    "--port",
    "--http2",
    "--https-port",
    "--ssl-port",
    "--ssl-certificate-file",
    "--ssl-certificate-key-file",
    "--ssl-certificate",
    "--ssl-ca-certificate-file",
    "--ssl-verify-client",
    "--ssl-certificate-chain-file",
    "--ssl-environment",
    "--https-only",
    "--hsts-policy",
    "--server-name",
    "--server-alias",
    "--allow-localhost",
    "--processes",
    "--threads",
    "--max-clients",
    "--initial-workers",
    "--minimum-spare-workers",
    "--maximum-spare-workers",
    "--limit-request-body",
    "--maximum-requests",
    "--startup-timeout",
    "--shutdown-timeout",
    "--restart-interval",
    "--cpu-time-limit",
    "--graceful-timeout",
    "--eviction-timeout",
    "--deadlock-timeout",
    "--inactivity-timeout",
    "--ignore-activity",
    "--request-timeout",
    "--interrupt-timeout",
    "--connect-timeout",
    "--socket-timeout",
    "--proxy-timeout",
    "--queue-timeout",
    "--header-timeout",
    "--header-max-timeout",
    "--header-min-rate",
    "--body-timeout",
    "--body-max-timeout",
    "--body-min-rate",
    "--server-backlog",
    "--daemon-backlog",
    "--send-buffer-size",
    "--receive-buffer-size",
    "--header-buffer-size",
    "--response-buffer-size",
    "--response-socket-timeout",
    "--response-flush-delay",
    "--enable-sendfile",
    "--disable-reloading",
    "--reload-on-changes",
    "--user",
    "--group",
    "--callable-object",
    "--map-head-to-get",
    "--document-root",
    "--directory-index",
    "--directory-listing",
    "--allow-override",
    "--mount-point",
    "--url-alias",
    "--error-document",
    "--error-override",
    "--proxy-mount-point",
    "--proxy-url-alias",
    "--proxy-virtual-host",
    "--trust-proxy-header",
    "--trust-proxy",
    "--keep-alive-timeout",
    "--compress-responses",
    "--server-metrics",
    "--telemetry-service",
    "--enable-telemetry",
    "--telemetry-ui-port",
    "--telemetry-interval",
    "--slow-requests",
    "--switch-interval",
    "--free-threading",
    "--telemetry-options",
    "--server-status",
    "--host-access-script",
    "--auth-user-script",
    "--auth-type",
    "--auth-group-script",
    "--auth-group",
    "--include-file",
    "--rewrite-rules",
    "--envvars-script",
    "--lang",
    "--locale",
    "--setenv",
    "--passenv",
    "--working-directory",
    "--pid-file",
    "--server-root",
    "--server-mpm",
    "--log-directory",
    "--log-level",
    "--access-log",
    "--startup-log",
    "--verbose-debugging",
    "--log-to-terminal",
    "--access-log-format",
    "--error-log-format",
    "--error-log-name",
    "--access-log-name",
    "--startup-log-name",
    "--rotate-logs",
    "--max-log-size",
    "--rotatelogs-executable",
    "--python-path",
    "--python-eggs",
    "--python-warnings",
    "--shell-executable",
    "--httpd-executable",
    "--process-name",
    "--modules-directory",
    "--mime-types",
    "--socket-prefix",
    "--add-handler",
    "--chunked-request",
    "--with-php5",
    "--with-cgi",
    "--service-script",
    "--service-user",
    "--service-group",
    "--service-log-file",
    "--orphan-interpreter",
    "--embedded-mode",
    "--enable-docs",
    "--debug-mode",
    "--enable-debugger",
    "--debugger-startup",
    "--enable-coverage",
    "--coverage-directory",
    "--enable-profiler",
    "--profiler-directory",
    "--enable-recorder",
    "--recorder-directory",
    "--enable-gdb",
    "--gdb-executable",
    "--setup-only",
]


def test_help_lists_every_mod_wsgi_express_option():
    help_text = run_ferrule("start-server", "--help").stdout
    listed = set(re.findall(r"--[a-z0-9-]+", help_text))
    missing = [option for option in MOD_WSGI_EXPRESS_OPTIONS if option not in listed]
    assert missing == []
    # Issue 24: each is built, or accepted or refused with its reason; none is pending.
    assert "not supported yet" not in help_text
    assert "not supported yet" not in (APPS.parent.parent / "docs" / "options.md").read_text()


# --- Options that configure Apache itself ------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--enable-docs"], "ferrule has no mod_wsgi manual to serve"),
        (["--server-mpm", "event"], "there is no Apache processing model to choose"),
        (["--httpd-executable", "/usr/sbin/httpd"], "ferrule runs no Apache executable"),
        (["--modules-directory", "/usr/lib/apache2/modules"], "ferrule loads no Apache modules"),
        (["--orphan-interpreter"], "each process ends as a Python program does"),
        (["--initial-workers", "0.5"], "the front end serves each connection on a task"),
        (["--minimum-spare-workers", "0.1"], "the front end serves each connection on a task"),
        (["--maximum-spare-workers", "1"], "the front end serves each connection on a task"),
        (["--connect-timeout", "5"], "the front end keeps its daemon connections open"),
        (["--header-buffer-size", "65536"], "a response head crosses the daemon socket"),
    ],
)
def test_apache_options_safe_to_ignore_are_accepted_with_a_warning(
    ferrule_server, mode_options, arguments, reason
):
    server = ferrule_server("environ.wsgi", *mode_options, *arguments)
    assert server.get("/").status_code == 200
    line = f"{arguments[0]} is ignored: {reason}"
    assert f"ferrule: warning: {line}" in server.stderr()
    assert line in server.wait_for_log(line)


def test_an_ignored_option_is_said_once_with_log_to_terminal(ferrule_server):
    server = ferrule_server("environ.wsgi", "--enable-docs", "--log-to-terminal")
    assert server.get("/").status_code == 200
    assert server.stderr().count("--enable-docs is ignored") == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--include-file", "/etc/apache2/extra.conf"],
            "--include-file cannot be used: it includes an Apache configuration file",
        ),
        (
            ["--rewrite-rules", "/srv/rewrite.conf"],
            "--rewrite-rules cannot be used: it names Apache mod_rewrite rules",
        ),
    ],
)
def test_apache_configuration_options_are_refused_with_the_reason(arguments, message):
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert "hint: " in result.stderr


def test_worker_shares_must_be_from_0_to_1():
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--initial-workers", "1.5")
    assert result.returncode == 2
    assert "'1.5' is not a number from 0 to 1" in result.stderr

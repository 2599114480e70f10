//! The control script mod_wsgi-express writes into the server root, `apachectl`, with our
//! own contents: it starts the server in the background (or in the foreground with
//! `-DFOREGROUND`), and sends it the signals Apache's `apachectl` sends.

use std::path::{Path, PathBuf};

use crate::cli::{CONTROL_SCRIPT_ENV, Config};

/// The script's name in the server root, as mod_wsgi-express names it.
pub(super) const NAME: &str = "apachectl";

/// Writes `apachectl` (and an empty `envvars` it sources, if there is none) into the
/// server root. `argv` is the command line this process got, without the program name.
///
/// Root runs the one and sources the other, so both are files of ours that only we can
/// write: the script is a new file renamed into place (never an old one rewritten, whose
/// owner and mode it would keep), `envvars` is created `0644` whatever the umask, and
/// `cli::config` refuses a server root, or an `envvars`, that someone else can change.
pub(super) fn write(config: &Config, argv: &[String]) -> std::io::Result<PathBuf> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let server_root = &config.server.server_root;
    let launch_directory = std::env::current_dir()?;
    let path = server_root.join(NAME);
    let envvars = server_root.join("envvars");
    let text = script(config, &start_arguments(argv), &launch_directory, &envvars);
    let partial = server_root.join(format!(".{NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let written = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&partial)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            // The mode asked for above is cut by the umask.
            set_executable(&partial)
        })
        .and_then(|()| fs_err::rename(&partial, &path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    if !envvars.exists() {
        fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&envvars)?;
    }
    Ok(path)
}

/// The arguments that start this same server: `start-server` and the options, without
/// `--setup-only`.
fn start_arguments(argv: &[String]) -> Vec<String> {
    std::iter::once("start-server".to_owned())
        .chain(
            argv.iter()
                .skip(1)
                .filter(|argument| *argument != "--setup-only")
                .cloned(),
        )
        .collect()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn script(
    config: &Config,
    arguments: &[String],
    launch_directory: &Path,
    envvars: &Path,
) -> String {
    let arguments: Vec<String> = arguments.iter().map(|argument| quote(argument)).collect();
    let check_arguments: Vec<String> = std::iter::once(quote("config-test"))
        .chain(arguments.iter().skip(1).cloned())
        .collect();
    format!(
        r#"#!{shell}
# Control script of the ferrule server whose root is this directory; written by
# `ferrule setup-server` (and `start-server`). Commands, as Apache's apachectl has them:
#   start [-DFOREGROUND]  start in the background (or in the foreground)
#   stop                  stop; requests in progress finish first
#   restart               replace every process (start if not running)
#   graceful              replace every process gracefully (start if not running)
#   graceful-stop         stop gracefully
#   configtest            check the options and files without starting

# Plain POSIX shell, so that any --shell-executable runs it.
# Python runs isolated (-I): `-m` would otherwise put the current directory (the one
# the server was set up from, often the application's, maybe writable by --user) first
# on sys.path, for root. The server's processes still get the environment, PYTHONPATH too.
PYTHON={python}
SERVER_ROOT={server_root}
PID_FILE={pid_file}

if [ -f {envvars} ]; then
    . {envvars}
fi
cd {launch_directory} || exit 1
export {control_env}=1

running_pid() {{
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}}

start_in_background() {{
    if pid=$(running_pid); then
        echo "ferrule is already running (pid $pid)"
        return 0
    fi
    nohup "$PYTHON" -I -m ferrule {arguments} </dev/null >>"$SERVER_ROOT/console_log" 2>&1 &
    child=$!
    tries=0
    while [ "$tries" -lt 300 ]; do
        tries=$((tries + 1))
        if running_pid >/dev/null; then
            return 0
        fi
        if ! kill -0 "$child" 2>/dev/null; then
            echo "ferrule failed to start; the end of $SERVER_ROOT/console_log:" >&2
            tail -n 20 "$SERVER_ROOT/console_log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "ferrule did not start within 30 seconds; see $SERVER_ROOT/console_log" >&2
    return 1
}}

signal_and_wait() {{
    if ! pid=$(running_pid); then
        echo "ferrule is not running"
        return 0
    fi
    kill -"$1" "$pid"
    tries=0
    while [ "$tries" -lt 600 ]; do
        tries=$((tries + 1))
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "ferrule (pid $pid) did not stop within 60 seconds" >&2
    return 1
}}

case "$1" in
start)
    if [ "$2" = "-DFOREGROUND" ]; then
        exec "$PYTHON" -I -m ferrule {arguments}
    fi
    start_in_background
    ;;
stop)
    signal_and_wait TERM
    ;;
graceful-stop)
    signal_and_wait WINCH
    ;;
restart|graceful)
    if pid=$(running_pid); then
        if [ "$1" = restart ]; then kill -HUP "$pid"; else kill -USR1 "$pid"; fi
    else
        start_in_background
    fi
    ;;
configtest)
    exec "$PYTHON" -I -m ferrule {check_arguments}
    ;;
*)
    echo "usage: $0 start|stop|restart|graceful|graceful-stop|configtest" >&2
    exit 2
    ;;
esac
"#,
        shell = config.apache_only.shell_executable.display(),
        python = quote(&config.python.executable.to_string_lossy()),
        server_root = quote(&config.server.server_root.to_string_lossy()),
        pid_file = quote(&config.server.pid_file.to_string_lossy()),
        arguments = arguments.join(" "),
        check_arguments = check_arguments.join(" "),
        envvars = quote(&envvars.to_string_lossy()),
        launch_directory = quote(&launch_directory.to_string_lossy()),
        control_env = CONTROL_SCRIPT_ENV,
    )
}

fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn start_arguments_drop_setup_only() {
        let argv = ["setup-server", "app.wsgi", "--setup-only", "--port", "80"].map(String::from);
        assert_eq!(
            start_arguments(&argv),
            ["start-server", "app.wsgi", "--port", "80"]
        );
    }
}

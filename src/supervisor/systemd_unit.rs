//! `--systemd`: a systemd unit for the server root, `SERVER_ROOT/ferrule.service`, written
//! beside the control script, whose `start -DFOREGROUND` it runs (so the unit and
//! `apachectl` start the very same server).
//!
//! `Type=simple`: the supervisor does not speak `sd_notify`, so systemd counts the service
//! started when the process is. Stop is SIGTERM to the supervisor alone (`KillMode=mixed`):
//! it drains and stops its children itself, where the default (`control-group`) would send
//! SIGTERM to every daemon at the same moment and cut the requests the drain lets finish.

use std::path::PathBuf;

use crate::cli::Config;

/// The unit's file name in the server root.
pub(super) const NAME: &str = "ferrule.service";

/// Seconds systemd waits, beyond `--shutdown-timeout`, before it kills what is left (the
/// supervisor's own kill comes two seconds after the timeout).
const STOP_MARGIN_SECONDS: u64 = 10;

/// Writes the unit (replacing an older one) and returns its path.
pub(super) fn write(config: &Config) -> std::io::Result<PathBuf> {
    let path = config.server.server_root.join(NAME);
    fs_err::write(&path, unit(config))?;
    Ok(path)
}

fn unit(config: &Config) -> String {
    let server_root = &config.server.server_root;
    let control_script = server_root.join(super::control_script::NAME);
    let target = config
        .application
        .target
        .path()
        .map_or_else(String::new, |path| path.display().to_string());
    let listen = format!(
        "{}:{}",
        config.server.host.as_deref().unwrap_or("*"),
        config.server.port
    );
    let stop_seconds = config.processes.shutdown_timeout.as_secs() + STOP_MARGIN_SECONDS;
    format!(
        "# systemd unit of the ferrule server whose root is {root}; written by\n\
         # `ferrule setup-server --systemd`. To use it:\n\
         #   cp {unit_path} /etc/systemd/system/ && systemctl daemon-reload\n\
         #   systemctl enable --now ferrule\n\
         # reload: graceful restart of the processes and log files reopened (SIGUSR1);\n\
         # stop: requests in flight finish within --shutdown-timeout (SIGTERM).\n\
         [Unit]\n\
         Description=ferrule {target} on {listen}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={start} start -DFOREGROUND\n\
         ExecReload=/bin/kill -USR1 $MAINPID\n\
         KillSignal=SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec={stop_seconds}\n\
         Restart=on-failure\n\
         # 2: bad options or files; 3: the application failed to load. Restarting repeats it.\n\
         RestartPreventExitStatus=2 3\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        root = server_root.display(),
        unit_path = server_root.join(NAME).display(),
        start = systemd_quote(&control_script.display().to_string()),
    )
}

/// A command path as systemd reads it: quoted when it holds a space or a quote, with `%`
/// (a specifier) doubled.
fn systemd_quote(path: &str) -> String {
    let escaped = path.replace('%', "%%");
    if escaped.contains([' ', '"', '\'', '\\']) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_systemd() {
        assert_eq!(systemd_quote("/srv/site/apachectl"), "/srv/site/apachectl");
        assert_eq!(
            systemd_quote("/srv/my site/apachectl"),
            "\"/srv/my site/apachectl\""
        );
        assert_eq!(systemd_quote("/srv/50%/apachectl"), "/srv/50%%/apachectl");
    }
}

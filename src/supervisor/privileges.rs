//! Giving up root: when started by root with `--user`/`--group`, the supervisor opens its
//! port and files first, hands that user only what the server must write as that user,
//! then becomes that user itself, so that neither the front end nor the application runs
//! as root.
//!
//! Root never runs or sources a file that user can write: the server root, the control
//! script and `envvars` in it, and the pid file (whose pid the control script signals)
//! stay root's. The user gets the log files (appended to by every process) and the
//! folder of the daemon socket (made, and removed at the end, by the supervisor once it
//! is that user).

use std::path::Path;

use nix::unistd::{Gid, Uid};

use crate::cli::{Config, RunAs};

/// Hands the log files and `socket_directory` to `run_as`, then switches this process to
/// that user and group (and no supplementary groups). Children started afterwards
/// inherit the switch.
pub(super) fn become_user(
    config: &Config,
    run_as: &RunAs,
    socket_directory: Option<&Path>,
) -> Result<(), String> {
    let mut logs = Vec::new();
    if !config.logs.log_to_terminal {
        logs.push(config.logs.error_log.as_path());
    }
    logs.extend(config.logs.access_log.as_deref());
    logs.extend(config.logs.startup_log.as_deref());
    let cannot_hand = |path: &Path, error: std::io::Error| {
        format!(
            "cannot hand '{}' to --user {}: {error}",
            path.display(),
            run_as.user
        )
    };
    for path in logs {
        // Created now, as root, in the server root that only root can write: so that
        // the user can append to it.
        fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|_| std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)))
            .map_err(|error| cannot_hand(path, error))?;
    }
    if let Some(directory) = socket_directory {
        std::os::unix::fs::lchown(directory, Some(run_as.uid), Some(run_as.gid))
            .map_err(|error| cannot_hand(directory, error))?;
    }
    // The order (groups, group, then user) is the one that still has the right to make
    // each change.
    nix::unistd::setgroups(&[])
        .and_then(|()| nix::unistd::setgid(Gid::from_raw(run_as.gid)))
        .and_then(|()| nix::unistd::setuid(Uid::from_raw(run_as.uid)))
        .map_err(|errno| {
            format!(
                "cannot switch to --user {} --group {}: {}",
                run_as.user,
                run_as.group,
                // Worded by the OS as before: "Operation not permitted (os error 1)".
                std::io::Error::from(errno)
            )
        })?;
    Ok(())
}

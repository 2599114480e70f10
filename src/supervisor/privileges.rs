//! Giving up root: when started by root with `--user`/`--group`, the supervisor opens its
//! sockets and files first, hands the server root over to that user, then becomes that
//! user itself, so that neither the front end nor the application runs as root.

use std::path::Path;

use crate::cli::{Config, RunAs};

/// Hands the server root and the files in it to `run_as`, then switches this process to
/// that user and group (and no supplementary groups). Children started afterwards
/// inherit the switch.
pub(super) fn become_user(config: &Config, run_as: &RunAs, extra: &[&Path]) -> Result<(), String> {
    let mut paths = vec![config.server.server_root.as_path()];
    if !config.logs.log_to_terminal {
        paths.push(&config.logs.error_log);
    }
    if let Some(access_log) = &config.logs.access_log {
        // Created now so that the user can append to it.
        let _ = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(access_log);
        paths.push(access_log);
    }
    paths.push(&config.server.pid_file);
    paths.extend_from_slice(extra);
    for path in paths {
        if path.exists() {
            std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).map_err(
                |error| {
                    format!(
                        "cannot hand '{}' to --user {}: {error}",
                        path.display(),
                        run_as.user
                    )
                },
            )?;
        }
    }
    // SAFETY: plain system calls on ids; the order (groups, group, then user) is the one
    // that still has the right to make each change.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(run_as.gid) != 0
            || libc::setuid(run_as.uid) != 0
    };
    if failed {
        return Err(format!(
            "cannot switch to --user {} --group {}: {}",
            run_as.user,
            run_as.group,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

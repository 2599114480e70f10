//! The `FERRULE_*` variables: the contract by which the supervisor tells a process it
//! starts what it is (an embedded-mode server process with the listener's descriptor, or
//! a daemon process with the front end's socket), and by which the control script says
//! it started the server.
//!
//! They are read and checked here, once, before anything else; the caller then removes
//! them from the environment, so that a `ferrule` the application starts (a test runner,
//! a management command) is not mistaken for one of our processes. Nothing else reads
//! them.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Names the inherited listening socket's descriptor in a server process's environment.
pub const LISTENER_FD_ENV: &str = "FERRULE_LISTENER_FD";
/// Names the inherited HTTPS listening socket's descriptor (`--https-port`), beside
/// [`LISTENER_FD_ENV`].
pub const TLS_LISTENER_FD_ENV: &str = "FERRULE_TLS_LISTENER_FD";
/// Names the front end's daemon socket in a daemon process's environment.
pub const DAEMON_SOCKET_ENV: &str = "FERRULE_DAEMON_SOCKET";
/// The process's slot in its group, for daemon and embedded server processes alike.
pub const PROCESS_INDEX_ENV: &str = "FERRULE_PROCESS_INDEX";
/// Set to `1` by the control script when it starts the server.
pub const CONTROL_SCRIPT_ENV: &str = "FERRULE_CONTROL_SCRIPT";
/// Set to `1` for the debug-mode process that `--enable-gdb` starts under gdb, so that
/// it serves instead of starting gdb again.
pub const UNDER_GDB_ENV: &str = "FERRULE_UNDER_GDB";

/// Names the managed service (`--service-script`) a process runs.
pub const SERVICE_ENV: &str = "FERRULE_SERVICE";

/// Every variable of the contract: what the caller removes once they are read.
pub const CONTRACT_VARIABLES: [&str; 7] = [
    LISTENER_FD_ENV,
    TLS_LISTENER_FD_ENV,
    DAEMON_SOCKET_ENV,
    PROCESS_INDEX_ENV,
    CONTROL_SCRIPT_ENV,
    UNDER_GDB_ENV,
    SERVICE_ENV,
];

/// What this process is, as its environment says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessRole {
    /// The process the user (or the control script) started; `under_gdb`: started by
    /// gdb for `--enable-gdb`.
    Supervisor {
        under_control_script: bool,
        under_gdb: bool,
    },
    /// An embedded-mode server process, serving the listeners it inherited.
    EmbeddedServer {
        listener_fd: RawFd,
        tls_listener_fd: Option<RawFd>,
    },
    /// A daemon process of slot `slot`, connecting to the front end at `socket`.
    Daemon { socket: PathBuf, slot: u32 },
    /// The process of the managed service `name` (`--service-script`).
    Service { name: String },
}

/// A contract variable with a value the supervisor would never have set.
#[derive(Debug, thiserror::Error)]
pub(super) enum EnvironmentError {
    #[error(
        "{name}='{value}': {reason}\nhint: ferrule sets {name} only for the processes it starts; unset it"
    )]
    BadValue {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{LISTENER_FD_ENV} and {DAEMON_SOCKET_ENV} are both set: a process is either an embedded-mode server process or a daemon process\nhint: ferrule sets them only for the processes it starts; unset them"
    )]
    BothRoles,
    #[error(
        "{name} is set without {LISTENER_FD_ENV} or {DAEMON_SOCKET_ENV}\nhint: ferrule sets it only for the processes it starts; unset it"
    )]
    Stray { name: &'static str },
    #[error(
        "{DAEMON_SOCKET_ENV} is set without {PROCESS_INDEX_ENV}\nhint: ferrule sets them only for the processes it starts; unset them"
    )]
    NoProcessIndex,
    #[error(
        "{TLS_LISTENER_FD_ENV} is set without {LISTENER_FD_ENV}\nhint: ferrule sets them only for the processes it starts; unset it"
    )]
    StrayTls,
}

/// Reads the contract from `variable` (the process environment, or a test's map), and
/// checks every value; returns every problem at once.
pub(super) fn read_role(
    variable: impl Fn(&str) -> Option<OsString>,
) -> Result<ProcessRole, Vec<EnvironmentError>> {
    let text =
        |name: &'static str| variable(name).map(|value| value.to_string_lossy().into_owned());
    let mut problems = Vec::new();
    let mut descriptor = |name: &'static str| {
        text(name).and_then(|value| {
            let checked = value
                .parse::<RawFd>()
                .map_err(|_| "not a descriptor number")
                .and_then(|fd| if fd > 2 { Ok(fd) } else { Err("not above 2") })
                .and_then(|fd| is_socket(fd).then_some(fd).ok_or("not an open socket"));
            checked
                .map_err(|reason| {
                    problems.push(EnvironmentError::BadValue {
                        name,
                        value,
                        reason,
                    });
                })
                .ok()
        })
    };
    let listener_fd = descriptor(LISTENER_FD_ENV);
    let tls_listener_fd = descriptor(TLS_LISTENER_FD_ENV);
    let daemon_socket = text(DAEMON_SOCKET_ENV).and_then(|value| {
        let path = PathBuf::from(&value);
        if path.is_absolute() {
            Some(path)
        } else {
            problems.push(EnvironmentError::BadValue {
                name: DAEMON_SOCKET_ENV,
                value,
                reason: "not an absolute path",
            });
            None
        }
    });
    let process_index = text(PROCESS_INDEX_ENV);
    let slot = process_index.clone().and_then(|value| {
        value
            .parse::<u32>()
            .map_err(|_| {
                problems.push(EnvironmentError::BadValue {
                    name: PROCESS_INDEX_ENV,
                    value,
                    reason: "not a process slot number",
                });
            })
            .ok()
    });
    let under_control_script = match text(CONTROL_SCRIPT_ENV) {
        None => false,
        Some(value) if value == "1" => true,
        Some(value) => {
            problems.push(EnvironmentError::BadValue {
                name: CONTROL_SCRIPT_ENV,
                value,
                reason: "the control script sets it to 1",
            });
            false
        }
    };
    let under_gdb = match text(UNDER_GDB_ENV) {
        None => false,
        Some(value) if value == "1" => true,
        Some(value) => {
            problems.push(EnvironmentError::BadValue {
                name: UNDER_GDB_ENV,
                value,
                reason: "--enable-gdb sets it to 1",
            });
            false
        }
    };
    let has_listener = variable(LISTENER_FD_ENV).is_some();
    let has_socket = variable(DAEMON_SOCKET_ENV).is_some();
    if has_listener && has_socket {
        problems.push(EnvironmentError::BothRoles);
    } else if !has_listener && !has_socket && process_index.is_some() {
        problems.push(EnvironmentError::Stray {
            name: PROCESS_INDEX_ENV,
        });
    } else if !has_listener && variable(TLS_LISTENER_FD_ENV).is_some() {
        problems.push(EnvironmentError::StrayTls);
    } else if has_socket && process_index.is_none() {
        problems.push(EnvironmentError::NoProcessIndex);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if let Some(name) = text(SERVICE_ENV) {
        return Ok(ProcessRole::Service { name });
    }
    Ok(match (listener_fd, daemon_socket, slot) {
        (Some(listener_fd), _, _) => ProcessRole::EmbeddedServer {
            listener_fd,
            tls_listener_fd,
        },
        (None, Some(socket), Some(slot)) => ProcessRole::Daemon { socket, slot },
        _ => ProcessRole::Supervisor {
            under_control_script,
            under_gdb,
        },
    })
}

fn is_socket(fd: RawFd) -> bool {
    let mut status = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes into the struct we own; a bad descriptor only makes it fail.
    let found = unsafe { libc::fstat(fd, status.as_mut_ptr()) } == 0;
    // SAFETY: fstat succeeded, so it filled the struct.
    found && unsafe { status.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role_of(pairs: &[(&str, &str)]) -> Result<ProcessRole, Vec<String>> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        read_role(|name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| OsString::from(value))
        })
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn no_variables_is_the_supervisor() {
        assert_eq!(
            role_of(&[]),
            Ok(ProcessRole::Supervisor {
                under_control_script: false,
                under_gdb: false,
            })
        );
        assert_eq!(
            role_of(&[(CONTROL_SCRIPT_ENV, "1")]),
            Ok(ProcessRole::Supervisor {
                under_control_script: true,
                under_gdb: false,
            })
        );
        assert_eq!(
            role_of(&[(UNDER_GDB_ENV, "1")]),
            Ok(ProcessRole::Supervisor {
                under_control_script: false,
                under_gdb: true,
            })
        );
    }

    #[test]
    fn a_daemon_needs_an_absolute_socket_and_its_slot() {
        assert_eq!(
            role_of(&[
                (DAEMON_SOCKET_ENV, "/srv/run/d.sock"),
                (PROCESS_INDEX_ENV, "3")
            ]),
            Ok(ProcessRole::Daemon {
                socket: PathBuf::from("/srv/run/d.sock"),
                slot: 3
            })
        );
        let problems = role_of(&[(DAEMON_SOCKET_ENV, "d.sock"), (PROCESS_INDEX_ENV, "x")])
            .expect_err("both values are bad");
        assert!(problems[0].starts_with("FERRULE_DAEMON_SOCKET='d.sock': not an absolute path"));
        assert!(problems[1].starts_with("FERRULE_PROCESS_INDEX='x': not a process slot number"));
    }

    #[test]
    fn a_listener_must_be_an_open_socket() {
        let problems = role_of(&[(LISTENER_FD_ENV, "1")]).expect_err("stdout is not ours");
        assert!(problems[0].starts_with("FERRULE_LISTENER_FD='1': not above 2"));
        let problems = role_of(&[(LISTENER_FD_ENV, "999999")]).expect_err("not open");
        assert!(problems[0].starts_with("FERRULE_LISTENER_FD='999999': not an open socket"));
    }

    #[test]
    fn stray_and_conflicting_variables_are_named() {
        let problems = role_of(&[(PROCESS_INDEX_ENV, "0")]).expect_err("no role");
        assert!(problems[0].starts_with("FERRULE_PROCESS_INDEX is set without"));
        let problems = role_of(&[(CONTROL_SCRIPT_ENV, "yes")]).expect_err("not 1");
        assert!(problems[0].starts_with("FERRULE_CONTROL_SCRIPT='yes'"));
    }
}

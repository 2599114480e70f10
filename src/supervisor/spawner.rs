//! The real [`Spawner`]: starts server or daemon processes, signals them, sets the loop's
//! timers with tokio, and tells the daemon pool (daemon mode).

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

use super::child_environment::ChildEnvironment;
use super::children::Spawner;
use super::signals::send_signal;
use super::{Event, listen};
use crate::cli::{
    CONTRACT_VARIABLES, Config, DAEMON_SOCKET_ENV, ExitStatus, LISTENER_FD_ENV, PROCESS_INDEX_ENV,
    SERVICE_ENV, TLS_LISTENER_FD_ENV,
};
use crate::frontend::DaemonPool;
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;

/// The daemon-mode half of the supervisor: the front end it runs and the pool of daemon
/// threads behind it.
pub(super) struct DaemonSide {
    pub(super) pool: Arc<DaemonPool>,
    pub(super) socket_path: PathBuf,
    pub(super) frontend_shutdown: Shutdown,
    pub(super) accept_shutdown: Shutdown,
    pub(super) frontend_done: bool,
    /// The HTTPS listener's certificate, read again on a graceful restart.
    pub(super) tls: Option<Arc<crate::frontend::TlsListener>>,
}

/// Starts children as `python -m ferrule` with the supervisor's own arguments.
pub(super) struct Processes<'a> {
    pub(super) config: &'a Config,
    pub(super) argv: &'a [String],
    /// Variables set and removed in each child, beyond the supervisor's environment.
    pub(super) environment: &'a ChildEnvironment,
    pub(super) listener_fd: RawFd,
    /// The HTTPS listener (`--https-port`), inherited beside the HTTP one.
    pub(super) tls_listener_fd: Option<RawFd>,
    pub(super) event_tx: mpsc::UnboundedSender<Event>,
    pub(super) daemon: Option<DaemonSide>,
    /// Events due later (respawn delays, deadlines, restart intervals), polled by the
    /// supervisor's loop.
    pub(super) timers: DelayQueue<Event>,
}

impl Spawner for Processes<'_> {
    fn spawn(&mut self, slot: usize) -> Result<u32, ExitStatus> {
        let mut command = self.ferrule_command();
        command.env(PROCESS_INDEX_ENV, slot.to_string());
        let inherited_listeners = if let Some(daemon) = &self.daemon {
            command.env(DAEMON_SOCKET_ENV, &daemon.socket_path);
            [None, None]
        } else {
            command.env(LISTENER_FD_ENV, self.listener_fd.to_string());
            if let Some(fd) = self.tls_listener_fd {
                command.env(TLS_LISTENER_FD_ENV, fd.to_string());
            }
            [Some(self.listener_fd), self.tls_listener_fd]
        };
        let supervisor_pid = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes system calls (prctl, getppid,
        // fcntl) and nothing else.
        unsafe {
            command.pre_exec(move || prepare_child(supervisor_pid, inherited_listeners));
        }
        let what = if self.daemon.is_some() {
            "daemon"
        } else {
            "server"
        };
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                error_log::log(
                    Level::Crit,
                    "ferrule",
                    &format!(
                        "cannot start a {what} process with '{}': {error}",
                        self.config.python.executable.display()
                    ),
                );
                return Err(ExitStatus::Failure);
            }
        };
        let Some(pid) = child.id() else {
            return Err(ExitStatus::InternalError);
        };
        if self.daemon.is_some() {
            crate::frontend::metrics::global().process_started();
        }
        let event_tx = self.event_tx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = event_tx.send(Event::ProcessExited { pid, status });
            }
        });
        Ok(pid)
    }

    fn signal(&mut self, pid: u32, signal_number: i32) {
        send_signal(pid, signal_number);
    }

    fn schedule(&mut self, delay: Duration, event: Event) {
        self.timers.insert(event, delay);
    }

    fn retire(&mut self, pid: u32) {
        if let Some(daemon) = &self.daemon {
            daemon.pool.retire(pid);
        }
    }

    fn forget(&mut self, pid: u32) -> Vec<String> {
        self.daemon
            .as_ref()
            .map(|daemon| daemon.pool.forget(pid))
            .unwrap_or_default()
    }

    fn stop_frontend(&mut self) {
        if let Some(daemon) = &self.daemon {
            daemon.frontend_shutdown.trigger();
        }
    }

    fn expire_overdue(&mut self, limit: Duration) -> Vec<(u32, String)> {
        self.daemon.as_ref().map_or_else(Vec::new, |daemon| {
            daemon
                .pool
                .expire_overdue(limit)
                .into_iter()
                .map(|overdue| (overdue.pid, overdue.description))
                .collect()
        })
    }

    fn idle_for(&mut self, pid: u32, limit: Duration) -> bool {
        self.daemon
            .as_ref()
            .is_some_and(|daemon| daemon.pool.idle_for(pid, limit))
    }
}

impl Processes<'_> {
    /// `python -m ferrule` with the server's arguments and environment, for a child of
    /// any role: `--python-warnings` given as `python -W` takes them, no standard input,
    /// and none of the variables that tell a process its role (the caller sets its own).
    fn ferrule_command(&self) -> Command {
        let mut command = Command::new(&self.config.python.executable);
        for spec in &self.config.python_settings.warnings {
            command.arg("-W").arg(spec);
        }
        command
            .arg("-m")
            .arg("ferrule")
            .args(self.argv)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        self.environment.apply(&mut command);
        for variable in CONTRACT_VARIABLES {
            command.env_remove(variable);
        }
        command
    }

    /// Starts the process of the managed service `name` (`--service-script`): `python -m
    /// ferrule` with the same arguments and `FERRULE_SERVICE=name`, inheriting no listener.
    pub(super) fn spawn_service(&mut self, name: &str) -> Option<u32> {
        let mut command = self.ferrule_command();
        command.env(SERVICE_ENV, name);
        let supervisor_pid = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: as in `spawn`: only system calls between fork and exec.
        unsafe {
            command.pre_exec(move || prepare_child(supervisor_pid, [None, None]));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "cannot start the process of service '{name}' with '{}': {error}",
                        self.config.python.executable.display()
                    ),
                );
                return None;
            }
        };
        let pid = child.id()?;
        let event_tx = self.event_tx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = event_tx.send(Event::ProcessExited { pid, status });
            }
        });
        Some(pid)
    }
}

/// In a new child, between fork and exec: ties its life to the supervisor's, and lets it
/// alone inherit the listeners (embedded mode).
///
/// The kernel sends SIGKILL to the child when the supervisor dies. SIGKILL rather than
/// SIGTERM: a supervisor that dies without stopping its children (a graceful stop goes
/// through it) was killed or crashed; nobody is left to restart, log or stop the
/// orphans (the pid file names the dead supervisor), the daemons' front end died with
/// it, and an embedded process that finished its requests first would go on accepting
/// connections meanwhile; an application's own SIGTERM handler or a stuck thread could
/// even keep it serving forever. The signal follows the death of the *thread* that
/// forked: that is the supervisor's main thread, which runs its whole loop
/// (`current_thread` runtime), so it dies only with the process.
///
/// The supervisor may have died before the prctl took effect: the child was then already
/// handed to another parent and no signal will come, so it must not start at all.
fn prepare_child(
    supervisor_pid: libc::pid_t,
    listener_fds: [Option<RawFd>; 2],
) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    if unsafe { libc::getppid() } != supervisor_pid {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    for fd in listener_fds.into_iter().flatten() {
        listen::clear_close_on_exec(fd)?;
    }
    Ok(())
}

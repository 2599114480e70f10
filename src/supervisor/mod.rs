//! The supervisor: the process the user started. It prepares the server root, binds the
//! listening socket, prints the banner, starts the server processes, restarts those that
//! die, and turns signals into a graceful stop or restart.
//!
//! In embedded mode its children are server processes that share the listener. In daemon
//! mode it also runs the front end itself (HTTP/1 on the listener, never Python) and its
//! children are daemon processes that connect to the front end's daemon socket.
//!
//! It is one loop over a closed set of [`Event`]s, here. It never loads the application:
//! a crash there could not take the supervisor down with it. Around the loop:
//! - [`startup`]: everything before it (and `setup-server`, `--debug-mode`);
//! - [`signals`]: signals taken and sent;
//! - [`children`]: the table of child processes and their state machine, pure, tested
//!   with a fake [`children::Spawner`]; [`spawner`] is the real one;
//! - [`recycle`]: when a daemon process is replaced although nothing failed;
//! - [`services`]: the managed services' processes (`--service-script`).

mod banner;
mod child_environment;
mod children;
mod control_script;
mod listen;
mod php_fpm;
mod pid_file;
mod piped_logs;
mod privileges;
mod recycle;
mod services;
mod signals;
mod spawner;
mod startup;
mod systemd_unit;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

pub use startup::{prepare_foreground, run, run_under_gdb, setup};

use crate::cli::{Config, ExitStatus};
use children::{Children, Settings};
use spawner::Processes;

/// Extra time after `--shutdown-timeout` before stragglers are killed.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Everything the supervisor loop reacts to.
#[derive(Debug)]
enum Event {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGHUP or SIGUSR1: replace every process, one by one.
    Restart,
    /// A child process ended.
    ProcessExited {
        pid: u32,
        status: std::process::ExitStatus,
    },
    /// Time to start a process in this slot again.
    Respawn { slot: usize },
    /// A daemon process connected: its application is loaded.
    DaemonReady { pid: u32 },
    /// A daemon process asked to be replaced; `reason` completes its log line.
    DaemonRecycle { pid: u32, reason: String },
    /// A daemon process's `--startup-timeout` is up; kill it if it is not ready.
    StartupDeadline { pid: u32 },
    /// A daemon process has run for `--restart-interval`.
    RestartDue { pid: u32 },
    /// The application's code changed; the pool stopped using the current daemons.
    Reload { reason: String },
    /// A retired process had its grace period; kill it if it is still there.
    RetireDeadline { pid: u32 },
    /// The in-process front end stopped serving (daemon mode).
    FrontendDone,
    /// Time to start managed service `index` again.
    ServiceRespawn { index: usize },
}

/// The supervisor's loop, from its signal handlers to the last child's exit.
async fn serve(
    config: &Config,
    argv: &[String],
    environment: &child_environment::ChildEnvironment,
    (listener, https_listener, tls): (
        socket2::Socket,
        Option<socket2::Socket>,
        Option<std::sync::Arc<crate::frontend::TlsListener>>,
    ),
    daemon_socket: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    slots: usize,
) -> ExitStatus {
    let (event_tx, mut event_rx) = mpsc::unbounded_channel();
    if let Err(error) = signals::forward_signals(&event_tx, config.under_control_script) {
        crate::logs::write_terminal(&format!(
            "ferrule: error: cannot install signal handlers: {error}\n"
        ));
        return ExitStatus::InternalError;
    }
    // Handlers in place (and before any child inherits the mask): deliver what waited.
    signals::set_signals_blocked(false);
    let mut world = Processes {
        config,
        argv,
        environment,
        listener_fd: listener.as_raw_fd(),
        tls_listener_fd: https_listener.as_ref().map(AsRawFd::as_raw_fd),
        event_tx: event_tx.clone(),
        daemon: None,
        timers: tokio_util::time::DelayQueue::new(),
    };
    // Keeps the listener open in embedded mode, where only the children serve it (it
    // stays close-on-exec here: `spawn` clears that in each child alone).
    let mut embedded_listeners = None;
    if let Some((unix_listener, socket_path)) = daemon_socket {
        let listeners = (listener, https_listener, tls);
        match startup::start_frontend(config, listeners, unix_listener, socket_path, &event_tx) {
            Ok(daemon) => world.daemon = Some(daemon),
            Err(error) => {
                crate::logs::write_terminal(&format!(
                    "ferrule: error: cannot start the front end: {error}\n"
                ));
                return ExitStatus::InternalError;
            }
        }
    } else {
        embedded_listeners = Some((listener, https_listener));
    }
    let processes = &config.processes;
    let mut children = Children::new(Settings {
        daemon: world.daemon.is_some(),
        slots,
        startup_timeout: processes.startup_timeout,
        graceful_timeout: processes.graceful_timeout,
        eviction_timeout: processes.eviction_timeout,
        restart_interval: processes.restart_interval,
        request_timeout: processes.request_timeout,
        interrupt_timeout: processes.daemon_details.interrupt_timeout,
        inactivity_timeout: processes.inactivity_timeout,
        error_log_hint: if config.logs.log_to_terminal {
            String::new()
        } else {
            format!(" {}", config.logs.error_log.display())
        },
    });
    children.start(&mut world);
    let mut services = services::Services::new(&config.services);
    services.start(&mut world);
    let mut kill_timer = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
    let mut ticks = tokio::time::interval(children.tick_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frontend_finished = world
            .daemon
            .as_ref()
            .is_none_or(|daemon| daemon.frontend_done);
        if children.stopping() && children.is_empty() && services.is_empty() && frontend_finished {
            return children.exit_status();
        }
        let event = tokio::select! {
            event = event_rx.recv() => match event {
                Some(event) => event,
                None => return ExitStatus::InternalError,
            },
            // An empty queue is ready at once with `None`: poll it only when it holds one.
            due = std::future::poll_fn(|cx| world.timers.poll_expired(cx)), if !world.timers.is_empty() => {
                match due {
                    Some(due) => due.into_inner(),
                    None => continue,
                }
            }
            _ = ticks.tick(), if world.daemon.is_some() => {
                children.check(&mut world);
                continue;
            }
            () = &mut kill_timer, if children.stopping() => {
                children.kill_all(libc::SIGKILL, &mut world);
                services.kill_all();
                if let Some(daemon) = &mut world.daemon {
                    daemon.frontend_done = true;
                }
                continue;
            }
        };
        match event {
            Event::Stop => {
                // Embedded mode: once the processes let go of theirs, the port refuses new
                // connections instead of queueing them for nobody.
                drop(embedded_listeners.take());
                if !children.stopping() {
                    children.stop(&mut world);
                    services.stop();
                    kill_timer.as_mut().reset(
                        tokio::time::Instant::now() + processes.shutdown_timeout + KILL_GRACE,
                    );
                }
            }
            Event::Restart => {
                // As Apache's graceful restart: the log files are opened again by name
                // (logrotate moved them); the new processes open them afresh.
                crate::logs::rotate::reopen_all();
                services.restart();
                // The front end here serves HTTPS (daemon mode): it reads a renewed
                // certificate as Apache does, keeping the old one if the new files do
                // not load. Embedded processes read the files as they start: files that
                // do not load would leave no process serving, so the restart is refused,
                // as `apachectl graceful` refuses a configuration that fails its test.
                if let Some(tls) = world.daemon.as_ref().and_then(|daemon| daemon.tls.clone()) {
                    tokio::spawn(tls.reload());
                    children.restart(&mut world);
                } else if let Some(error) = embedded_tls_problem(config) {
                    crate::logs::error_log::log(
                        crate::logs::Level::Error,
                        "ferrule",
                        &format!(
                            "{error}; the graceful restart is refused and HTTPS goes on with the certificate it had"
                        ),
                    );
                } else {
                    children.restart(&mut world);
                }
            }
            Event::ProcessExited { pid, status } => {
                if !services.on_exit(pid, status, &mut world) {
                    children.on_exit(pid, status, &mut world);
                }
            }
            Event::ServiceRespawn { index } => services.respawn(index, &mut world),
            Event::Respawn { slot } => children.respawn(slot, &mut world),
            Event::DaemonReady { pid } => children.on_ready(pid, &mut world),
            Event::DaemonRecycle { pid, reason } => {
                children.queue_recycle(pid, reason, &mut world);
            }
            Event::Reload { reason } => children.reload(&reason, &mut world),
            Event::StartupDeadline { pid } => children.startup_deadline(pid, &mut world),
            Event::RestartDue { pid } => children.restart_due(pid, &mut world),
            Event::RetireDeadline { pid } => children.retire_deadline(pid, &mut world),
            Event::FrontendDone => {
                if let Some(daemon) = &mut world.daemon {
                    daemon.frontend_done = true;
                    daemon.accept_shutdown.trigger();
                    daemon.pool.close();
                }
            }
        }
    }
}

/// Embedded mode: why the server processes a restart would start could not serve HTTPS
/// (the certificate files no longer load), if they could not.
fn embedded_tls_problem(config: &Config) -> Option<String> {
    let https = config.server.https.as_ref()?;
    crate::frontend::TlsListener::load(&https.files, false, config.server.http2)
        .err()
        .map(|error| error.to_string())
}

//! The supervisor: the process the user started. It prepares the server root, binds the
//! listening socket, prints the banner, starts the server processes, restarts those that
//! die, and turns signals into a graceful stop or restart.
//!
//! In embedded mode its children are server processes that share the listener. In daemon
//! mode it also runs the front end itself (hyper on the listener, never Python) and its
//! children are daemon processes that connect to the front end's daemon socket.
//!
//! It is one loop over a closed set of [`Event`]s. It never loads the application: a
//! crash there could not take the supervisor down with it.

mod banner;
mod control_script;
mod listen;
mod pid_file;
mod privileges;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::{
    ApplicationTarget, CONTRACT_VARIABLES, Config, DAEMON_SOCKET_ENV, ExitStatus, LISTENER_FD_ENV,
    OperatingMode, PROCESS_INDEX_ENV,
};
use crate::frontend::{self, Backend, FrontendConfig};
use crate::frontend::{DaemonPool, PoolEvent};
use crate::logs::error_log;
use crate::logs::{Level, write_stdout};
use crate::process;
use crate::shutdown::Shutdown;

/// Time between a process dying and its replacement starting, so that a process that
/// dies at once does not spin the CPU.
const RESPAWN_DELAY: Duration = Duration::from_millis(100);
/// Time before a daemon whose application failed to load on a later start is tried again.
const LOAD_RETRY_DELAY: Duration = Duration::from_secs(1);
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
}

/// `setup-server`: writes the server root and its control script, prints the banner, and
/// leaves starting to the control script.
pub fn setup(config: &Config, argv: &[String]) -> ExitStatus {
    if let Err(status) = create_server_root(config) {
        return status;
    }
    match control_script::write(config, argv) {
        Ok(path) => {
            write_stdout(&banner::banner(config, Some(&path)));
            ExitStatus::Success
        }
        Err(error) => {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot write the control script: {error}\n"
            ));
            ExitStatus::Failure
        }
    }
}

/// Runs the server until it is stopped. Call it detached from Python.
pub fn run(config: &Config, argv: &[String]) -> ExitStatus {
    // Until our handlers are installed, the signals that stop or restart the server wait
    // (blocked) instead of killing it: the port may already answer by then.
    set_signals_blocked(true);
    if let Err(status) = create_server_root(config) {
        return status;
    }
    process::open_error_log(config);
    if let Err(error) = control_script::write(config, argv) {
        error_log::log(
            Level::Warn,
            "ferrule",
            &format!("cannot write the control script: {error}"),
        );
    }
    // Before the port opens, so that whoever sees the port served also finds the pid.
    if let Some(other) = running_pid(&config.server.pid_file) {
        crate::logs::write_terminal(&format!(
            "ferrule: error: another server (pid {other}) runs from this server root ({})\nhint: stop it (apachectl stop) or choose another --server-root or --pid-file\n",
            config.server.pid_file.display()
        ));
        return ExitStatus::Failure;
    }
    // Dropped on every way out of this function: the pid file is then taken back.
    let _pid_file = pid_file::PidFile::write(&config.server.pid_file)
        .map_err(|error| {
            error_log::log(
                Level::Warn,
                "ferrule",
                &format!("cannot write the --pid-file: {error}"),
            );
        })
        .ok();
    let open_files = listen::raise_open_files_limit();
    if error_log::enabled(Level::Debug) {
        error_log::log(
            Level::Debug,
            "ferrule",
            &format!("open files limit: {open_files}"),
        );
    }
    let listener = match listen::bind(config) {
        Ok(listener) => listener,
        Err(message) => {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
    };
    // A static site has no application: the front end here serves it, with no children.
    let static_site = matches!(config.application.target, ApplicationTarget::Static(_));
    let socket_directory = if config.processes.mode == OperatingMode::Daemon || static_site {
        match listen::socket_directory(&config.server.server_root) {
            Ok(directory) => Some(directory),
            Err(message) => {
                crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
                return ExitStatus::Failure;
            }
        }
    } else {
        None
    };
    if let Some(run_as) = &config.processes.run_as {
        if let Err(message) = privileges::become_user(config, run_as, socket_directory.as_deref()) {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
    }
    // Bound by the user the server runs as (with --user), who must also remove it.
    let daemon_socket = match socket_directory {
        Some(directory) => {
            match listen::bind_daemon_socket(&directory, config.processes.daemon_backlog) {
                Ok(bound) => Some(bound),
                Err(message) => {
                    crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
                    return ExitStatus::Failure;
                }
            }
        }
        None => None,
    };
    if let Some(name) = &config.server.process_name {
        set_process_name(name);
    }
    let banner = banner::banner(config, None);
    write_stdout(&banner);
    if let Some(path) = &config.logs.startup_log {
        let _ = fs_err::write(path, &banner);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot start the supervisor: {error}\n"
            ));
            return ExitStatus::InternalError;
        }
    };
    let socket_path = daemon_socket.as_ref().map(|(_, path)| path.clone());
    let supervisor = Supervisor {
        config,
        argv,
        listener_fd: listener.as_raw_fd(),
        slots: vec![
            None;
            if static_site {
                0
            } else {
                config.processes.n_processes
            }
        ],
        pids: HashMap::new(),
        stopping: None,
        exit_status: ExitStatus::Success,
        daemon: None,
        replacing: HashMap::new(),
        recycle_queue: VecDeque::new(),
        ready: HashSet::new(),
        ever_ready: false,
    };
    let status = runtime.block_on(supervisor.run(listener, daemon_socket));
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    status
}

/// Creates the server root, if it does not exist, open to others for reading only
/// (whatever the umask): `cli::config` refuses one that others can write.
fn create_server_root(config: &Config) -> Result<(), ExitStatus> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&config.server.server_root)
        .map_err(|error| {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot create the --server-root directory '{}': {error}\n",
                config.server.server_root.display()
            ));
            ExitStatus::Failure
        })
}

/// `--debug-mode`: what the supervisor does before serving, for a process that then
/// serves the application itself: the server root, the error log, the listener, the
/// banner.
pub fn prepare_foreground(config: &Config) -> Result<socket2::Socket, ExitStatus> {
    create_server_root(config)?;
    process::open_error_log(config);
    let listener = listen::bind(config).map_err(|message| {
        crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
        ExitStatus::Failure
    })?;
    if let Some(run_as) = &config.processes.run_as {
        privileges::become_user(config, run_as, None).map_err(|message| {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            ExitStatus::Failure
        })?;
    }
    write_stdout(&banner::banner(config, None));
    Ok(listener)
}

/// The daemon-mode half of the supervisor: the front end it runs and the pool of daemon
/// threads behind it.
struct DaemonSide {
    pool: Arc<DaemonPool>,
    socket_path: PathBuf,
    frontend_shutdown: Shutdown,
    accept_shutdown: Shutdown,
    frontend_done: bool,
}

struct Supervisor<'a> {
    config: &'a Config,
    argv: &'a [String],
    listener_fd: RawFd,
    /// The pid of the current process of each slot, `None` while it is being replaced.
    slots: Vec<Option<u32>>,
    /// Every live process: pid → (slot, started at).
    pids: HashMap<u32, (usize, Instant)>,
    /// When the stop began, once it has.
    stopping: Option<Instant>,
    exit_status: ExitStatus,
    daemon: Option<DaemonSide>,
    /// Daemon mode: a new process (key) that takes over from an old one (value) once it
    /// is ready.
    replacing: HashMap<u32, u32>,
    /// Daemon processes waiting their turn to be recycled, one at a time, with why.
    recycle_queue: VecDeque<(u32, String)>,
    /// Daemon processes that have loaded the application.
    ready: HashSet<u32>,
    /// Some daemon process loaded the application: later load failures are retried
    /// instead of stopping the server.
    ever_ready: bool,
}

impl Supervisor<'_> {
    async fn run(
        mut self,
        listener: socket2::Socket,
        daemon_socket: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    ) -> ExitStatus {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        if let Err(error) = forward_signals(&event_tx, self.config.under_control_script) {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot install signal handlers: {error}\n"
            ));
            return ExitStatus::InternalError;
        }
        // Handlers in place (and before any child inherits the mask): deliver what waited.
        set_signals_blocked(false);
        // Keeps the listener open in embedded mode, where only the children serve it (it
        // stays close-on-exec here: `spawn` clears that in each child alone).
        let mut _embedded_listener = None;
        if let Some((unix_listener, socket_path)) = daemon_socket {
            match self.start_frontend(listener, unix_listener, socket_path, &event_tx) {
                Ok(daemon) => self.daemon = Some(daemon),
                Err(error) => {
                    crate::logs::write_terminal(&format!(
                        "ferrule: error: cannot start the front end: {error}\n"
                    ));
                    return ExitStatus::InternalError;
                }
            }
        } else {
            _embedded_listener = Some(listener);
        }
        for slot in 0..self.slots.len() {
            if let Err(status) = self.spawn(slot, &event_tx) {
                self.stop();
                self.exit_status = status;
                break;
            }
        }
        let mut kill_timer = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
        let mut ticks = tokio::time::interval(self.tick_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stopping.is_some() && self.pids.is_empty() && self.frontend_finished() {
                return self.exit_status;
            }
            let event = tokio::select! {
                event = event_rx.recv() => match event {
                    Some(event) => event,
                    None => return ExitStatus::InternalError,
                },
                _ = ticks.tick(), if self.daemon.is_some() => {
                    self.check_daemons(&event_tx);
                    continue;
                }
                () = &mut kill_timer, if self.stopping.is_some() => {
                    self.kill_all(libc::SIGKILL);
                    if let Some(daemon) = &mut self.daemon {
                        daemon.frontend_done = true;
                    }
                    continue;
                }
            };
            match event {
                Event::Stop => {
                    if self.stopping.is_none() {
                        self.stop();
                        kill_timer.as_mut().reset(
                            tokio::time::Instant::now()
                                + self.config.processes.shutdown_timeout
                                + KILL_GRACE,
                        );
                    }
                }
                Event::Restart => self.restart(&event_tx),
                Event::ProcessExited { pid, status } => self.on_exit(pid, status, &event_tx),
                Event::Respawn { slot } => {
                    if self.stopping.is_none() && self.slots[slot].is_none() {
                        if let Err(status) = self.spawn(slot, &event_tx) {
                            self.exit_status = status;
                            self.stop();
                        }
                    }
                }
                Event::DaemonReady { pid } => self.on_ready(pid, &event_tx),
                Event::DaemonRecycle { pid, reason } => self.queue_recycle(pid, reason, &event_tx),
                Event::Reload { reason } => self.reload(&reason, &event_tx),
                Event::StartupDeadline { pid } => {
                    if self.pids.contains_key(&pid) && !self.ready.contains(&pid) {
                        let slot = self.pids[&pid].0;
                        error_log::log(
                            Level::Error,
                            "ferrule",
                            &format!(
                                "daemon process {slot} (pid {pid}) did not load the application within --startup-timeout ({} s); killing it",
                                self.config.processes.startup_timeout.as_secs()
                            ),
                        );
                        send_signal(pid, libc::SIGKILL);
                    }
                }
                Event::RestartDue { pid } => {
                    let seconds = self
                        .config
                        .processes
                        .restart_interval
                        .map_or(0, |interval| interval.as_secs());
                    self.queue_recycle(
                        pid,
                        format!("has run for --restart-interval ({seconds} s)"),
                        &event_tx,
                    );
                }
                Event::RetireDeadline { pid } => {
                    if let Some((slot, _)) = self.pids.get(&pid) {
                        error_log::log(
                            Level::Warn,
                            "ferrule",
                            &format!(
                                "daemon process {slot} (pid {pid}) did not finish its requests within --graceful-timeout ({} s); killing it",
                                self.config.processes.graceful_timeout.as_secs()
                            ),
                        );
                        send_signal(pid, libc::SIGKILL);
                    }
                }
                Event::FrontendDone => {
                    if let Some(daemon) = &mut self.daemon {
                        daemon.frontend_done = true;
                        daemon.accept_shutdown.trigger();
                        daemon.pool.close();
                    }
                }
            }
        }
    }

    /// Daemon mode: serves HTTP on `listener` and accepts daemon threads on the socket.
    fn start_frontend(
        &self,
        listener: socket2::Socket,
        unix_listener: std::os::unix::net::UnixListener,
        socket_path: PathBuf,
        event_tx: &mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<DaemonSide> {
        let listener: std::net::TcpListener = listener.into();
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let unix_listener = tokio::net::UnixListener::from_std(unix_listener)?;
        let (pool_tx, mut pool_rx) = mpsc::unbounded_channel();
        let pool = Arc::new(DaemonPool::new(
            self.config.processes.queue_timeout,
            self.config.application.reload_entry,
            pool_tx,
        ));
        let forward_tx = event_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = pool_rx.recv().await {
                let event = match event {
                    PoolEvent::Ready { pid } => Event::DaemonReady { pid },
                    PoolEvent::Recycle { pid, reason } => Event::DaemonRecycle { pid, reason },
                    PoolEvent::Reload { reason } => Event::Reload { reason },
                };
                if forward_tx.send(event).is_err() {
                    break;
                }
            }
        });
        let accept_shutdown = Shutdown::new();
        tokio::spawn(Arc::clone(&pool).accept(unix_listener, accept_shutdown.clone()));
        let frontend_config = Arc::new(FrontendConfig {
            access_log: process::open_access_log(self.config),
            header_read_timeout: self.config.server.header_read_timeout,
            shutdown_timeout: self.config.processes.shutdown_timeout,
            static_files: frontend::StaticFiles::from_aliases(&self.config.server.url_aliases),
            // Daemon mode: the pool watches the entry file (see `DaemonPool::forward`).
            reload_watch: None,
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        let frontend_shutdown = Shutdown::new();
        let backend = if matches!(self.config.application.target, ApplicationTarget::Static(_)) {
            Backend::StaticOnly
        } else {
            Backend::Daemon(Arc::clone(&pool))
        };
        let stopper = frontend_shutdown.clone();
        let done_tx = event_tx.clone();
        tokio::spawn(async move {
            frontend::serve(listener, frontend_config, backend, stopper).await;
            let _ = done_tx.send(Event::FrontendDone);
        });
        Ok(DaemonSide {
            pool,
            socket_path,
            frontend_shutdown,
            accept_shutdown,
            frontend_done: false,
        })
    }

    fn frontend_finished(&self) -> bool {
        self.daemon
            .as_ref()
            .is_none_or(|daemon| daemon.frontend_done)
    }

    fn spawn(
        &mut self,
        slot: usize,
        event_tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<u32, ExitStatus> {
        let mut command = Command::new(&self.config.python.executable);
        command
            .arg("-m")
            .arg("ferrule")
            .args(self.argv)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        for name in CONTRACT_VARIABLES {
            command.env_remove(name);
        }
        command.env(PROCESS_INDEX_ENV, slot.to_string());
        let inherited_listener = if let Some(daemon) = &self.daemon {
            command.env(DAEMON_SOCKET_ENV, &daemon.socket_path);
            None
        } else {
            command.env(LISTENER_FD_ENV, self.listener_fd.to_string());
            Some(self.listener_fd)
        };
        let supervisor_pid = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes system calls (prctl, getppid,
        // fcntl) and nothing else.
        unsafe {
            command.pre_exec(move || prepare_child(supervisor_pid, inherited_listener));
        }
        let what = self.kind();
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
        self.slots[slot] = Some(pid);
        self.pids.insert(pid, (slot, Instant::now()));
        if self.daemon.is_some() {
            schedule(
                event_tx,
                self.config.processes.startup_timeout,
                Event::StartupDeadline { pid },
            );
        }
        let event_tx = event_tx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = event_tx.send(Event::ProcessExited { pid, status });
            }
        });
        Ok(pid)
    }

    fn kind(&self) -> &'static str {
        if self.daemon.is_some() {
            "daemon"
        } else {
            "server"
        }
    }

    fn on_exit(
        &mut self,
        pid: u32,
        status: std::process::ExitStatus,
        event_tx: &mpsc::UnboundedSender<Event>,
    ) {
        let Some((slot, started)) = self.pids.remove(&pid) else {
            return;
        };
        let lost_requests = self
            .daemon
            .as_ref()
            .map(|daemon| daemon.pool.forget(pid))
            .unwrap_or_default();
        self.ready.remove(&pid);
        let kind = self.kind();
        let was_current = self.slots[slot] == Some(pid);
        if was_current {
            self.slots[slot] = None;
        }
        self.recycle_queue.retain(|(queued, _)| *queued != pid);
        // A replacement that died before it was ready: the old process keeps serving.
        let replaced_old = self.replacing.remove(&pid);
        if let Some(old) = replaced_old {
            if self.pids.contains_key(&old) {
                self.slots[slot] = Some(old);
            }
        }
        if self.stopping.is_some() {
            return;
        }
        if !was_current {
            // A retired process leaving; only its death by a signal is news.
            if status.signal().is_some() {
                error_log::log(
                    Level::Warn,
                    "ferrule",
                    &format!(
                        "retired {kind} process {slot} (pid {pid}) {}",
                        describe_exit(status)
                    ),
                );
            }
            return;
        }
        if status.code() == Some(ExitStatus::CodeChanged as i32) {
            // It said why in the error log; its replacement starts at once.
            if replaced_old.is_none() {
                schedule(event_tx, Duration::ZERO, Event::Respawn { slot });
            }
            return;
        }
        if status.code() == Some(ExitStatus::AppLoadFailed as i32) {
            if !self.ever_ready || self.daemon.is_none() {
                self.stop_after_load_failure(slot, pid);
                return;
            }
            error_log::log(
                Level::Error,
                "ferrule",
                &format!(
                    "daemon process {slot} (pid {pid}) could not load the WSGI application (see above); trying again in {} s",
                    LOAD_RETRY_DELAY.as_secs()
                ),
            );
            if replaced_old.is_none() {
                schedule(event_tx, LOAD_RETRY_DELAY, Event::Respawn { slot });
            }
            return;
        }
        let during = if lost_requests.is_empty() {
            String::new()
        } else {
            format!(" while handling {}", lost_requests.join(", "))
        };
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "{kind} process {slot} (pid {pid}) {} after {:.1} s{during}; starting a new one",
                describe_exit(status),
                started.elapsed().as_secs_f64()
            ),
        );
        if replaced_old.is_none() {
            schedule(event_tx, RESPAWN_DELAY, Event::Respawn { slot });
        }
    }

    fn stop_after_load_failure(&mut self, slot: usize, pid: u32) {
        let kind = self.kind();
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "{kind} process {slot} (pid {pid}) could not load the WSGI application; stopping the server"
            ),
        );
        crate::logs::write_terminal(&format!(
            "ferrule: error: the WSGI application failed to load; see the error log{}\n",
            if self.config.logs.log_to_terminal {
                String::new()
            } else {
                format!(" {}", self.config.logs.error_log.display())
            }
        ));
        self.exit_status = ExitStatus::AppLoadFailed;
        self.stop();
    }

    /// A daemon process connected. If it replaces an old one, the old one now retires.
    fn on_ready(&mut self, pid: u32, event_tx: &mpsc::UnboundedSender<Event>) {
        self.ever_ready = true;
        self.ready.insert(pid);
        if let Some(interval) = self.config.processes.restart_interval {
            schedule(event_tx, interval, Event::RestartDue { pid });
        }
        let Some(old) = self.replacing.remove(&pid) else {
            return;
        };
        self.retire(old, event_tx);
        self.recycle_next(event_tx);
    }

    /// Stops giving `pid` requests; it leaves once its requests are done.
    fn retire(&self, pid: u32, event_tx: &mpsc::UnboundedSender<Event>) {
        if let Some(daemon) = &self.daemon {
            daemon.pool.retire(pid);
            schedule(
                event_tx,
                self.config.processes.graceful_timeout,
                Event::RetireDeadline { pid },
            );
        }
    }

    /// Starts replacing the next daemon that asked to be recycled, unless a replacement
    /// is already under way: one process at a time keeps the capacity up.
    fn recycle_next(&mut self, event_tx: &mpsc::UnboundedSender<Event>) {
        if self.stopping.is_some() || !self.replacing.is_empty() {
            return;
        }
        while let Some((old, reason)) = self.recycle_queue.pop_front() {
            let Some(&(slot, _)) = self.pids.get(&old) else {
                continue;
            };
            if self.slots[slot] != Some(old) {
                continue;
            }
            error_log::log(
                Level::Info,
                "ferrule",
                &format!("daemon process {slot} (pid {old}) {reason}; replacing it"),
            );
            self.replace(slot, event_tx);
            return;
        }
    }

    fn queue_recycle(&mut self, pid: u32, reason: String, event_tx: &mpsc::UnboundedSender<Event>) {
        if !self.recycle_queue.iter().any(|(queued, _)| *queued == pid) {
            self.recycle_queue.push_back((pid, reason));
        }
        self.recycle_next(event_tx);
    }

    /// How often [`Self::check_daemons`] runs: often enough for the shortest timeout.
    fn tick_interval(&self) -> Duration {
        let processes = &self.config.processes;
        [processes.request_timeout, processes.inactivity_timeout]
            .into_iter()
            .flatten()
            .map(|timeout| timeout / 4)
            .fold(Duration::from_secs(1), Duration::min)
            .max(Duration::from_millis(50))
    }

    /// Enforces `--request-timeout` (504 for the request, the process replaced at once)
    /// and `--inactivity-timeout` (an idle process replaced in its turn).
    fn check_daemons(&mut self, event_tx: &mpsc::UnboundedSender<Event>) {
        let Some(daemon) = &self.daemon else {
            return;
        };
        if self.stopping.is_some() {
            return;
        }
        let pool = Arc::clone(&daemon.pool);
        if let Some(limit) = self.config.processes.request_timeout {
            let mut replaced = HashSet::new();
            for overdue in pool.expire_overdue(limit) {
                let Some(&(slot, _)) = self.pids.get(&overdue.pid) else {
                    continue;
                };
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "daemon process {slot} (pid {}) ran {} for longer than --request-timeout ({} s); answered 504 and replacing the process",
                        overdue.pid,
                        overdue.description,
                        limit.as_secs()
                    ),
                );
                let current = self.slots[slot] == Some(overdue.pid);
                if current && replaced.insert(overdue.pid) {
                    self.replace(slot, event_tx);
                }
            }
        }
        if let Some(limit) = self.config.processes.inactivity_timeout {
            let idle: Vec<u32> = self
                .slots
                .iter()
                .flatten()
                .copied()
                .filter(|pid| self.ready.contains(pid) && pool.idle_for(*pid, limit))
                .collect();
            for pid in idle {
                self.queue_recycle(
                    pid,
                    format!(
                        "had no request for --inactivity-timeout ({} s)",
                        limit.as_secs()
                    ),
                    event_tx,
                );
            }
        }
    }

    /// Starts a fresh process in `slot`; the current one leaves once the new one is ready
    /// (daemon mode) or at once (embedded mode, where both share the listener).
    fn replace(&mut self, slot: usize, event_tx: &mpsc::UnboundedSender<Event>) {
        let old = self.slots[slot].take();
        match self.spawn(slot, event_tx) {
            Ok(new) => match old {
                Some(old) if self.daemon.is_some() => {
                    self.replacing.insert(new, old);
                }
                Some(old) => send_signal(old, libc::SIGTERM),
                None => {}
            },
            Err(status) => {
                self.exit_status = status;
                self.stop();
            }
        }
    }

    /// The code changed: every slot gets a new daemon at once; the old ones, which the
    /// pool no longer gives requests, finish theirs and leave.
    fn reload(&mut self, reason: &str, event_tx: &mpsc::UnboundedSender<Event>) {
        if self.stopping.is_some() {
            return;
        }
        error_log::log(
            Level::Info,
            "ferrule",
            &format!("{reason}; starting daemon processes with the new code"),
        );
        self.replacing.clear();
        self.recycle_queue.clear();
        for slot in 0..self.slots.len() {
            let old = self.slots[slot].take();
            if let Err(status) = self.spawn(slot, event_tx) {
                self.exit_status = status;
                self.stop();
                return;
            }
            if let Some(old) = old {
                self.retire(old, event_tx);
            }
        }
    }

    /// Starts a fresh process for every slot, and retires the old ones as their
    /// replacements are ready. No connection is refused and no request lost.
    fn restart(&mut self, event_tx: &mpsc::UnboundedSender<Event>) {
        if self.stopping.is_some() {
            return;
        }
        error_log::log(
            Level::Notice,
            "ferrule",
            &format!("restarting the {} processes gracefully", self.kind()),
        );
        for slot in 0..self.slots.len() {
            // A slot whose replacement is still starting keeps that replacement.
            if self.slots[slot].is_some_and(|pid| self.replacing.contains_key(&pid)) {
                continue;
            }
            self.replace(slot, event_tx);
            if self.stopping.is_some() {
                return;
            }
        }
    }

    fn stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now());
        match &self.daemon {
            // The front end finishes the requests in progress first; daemons are let go
            // when it is done (FrontendDone).
            Some(daemon) => daemon.frontend_shutdown.trigger(),
            None => self.kill_all(libc::SIGTERM),
        }
    }

    fn kill_all(&self, signal_number: i32) {
        for &pid in self.pids.keys() {
            send_signal(pid, signal_number);
        }
    }
}

/// In a new child, between fork and exec: ties its life to the supervisor's, and lets it
/// alone inherit the listener (embedded mode).
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
fn prepare_child(supervisor_pid: libc::pid_t, listener_fd: Option<RawFd>) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    if unsafe { libc::getppid() } != supervisor_pid {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    match listener_fd {
        Some(fd) => listen::clear_close_on_exec(fd),
        None => Ok(()),
    }
}

/// Sets the name `ps`, `top` and `pgrep` show for this process (the kernel keeps 15 bytes).
fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|byte| *byte != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr());
    }
}

/// The pid in `pid_file` if that process is alive.
fn running_pid(pid_file: &std::path::Path) -> Option<i32> {
    let pid: i32 = fs_err::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
    alive.then_some(pid)
}

fn schedule(event_tx: &mpsc::UnboundedSender<Event>, delay: Duration, event: Event) {
    let event_tx = event_tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = event_tx.send(event);
    });
}

/// Signals as Apache takes them: TERM and INT stop, HUP and USR1 restart gracefully,
/// WINCH stops gracefully, but only under the control script: in a terminal it means the
/// window was resized.
fn forward_signals(
    event_tx: &mpsc::UnboundedSender<Event>,
    under_control_script: bool,
) -> std::io::Result<()> {
    let mut signals = vec![
        (SignalKind::terminate(), (|| Event::Stop) as fn() -> Event),
        (SignalKind::interrupt(), || Event::Stop),
        (SignalKind::hangup(), || Event::Restart),
        (SignalKind::user_defined1(), || Event::Restart),
    ];
    if under_control_script {
        signals.push((SignalKind::window_change(), || Event::Stop));
    }
    for (kind, event) in signals {
        let mut stream = signal(kind)?;
        let event_tx = event_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if event_tx.send(event()).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Blocks or unblocks, on this thread, the signals the supervisor handles.
fn set_signals_blocked(blocked: bool) {
    // SAFETY: sigset operations on a local set, then the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal_number in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGWINCH,
        ] {
            libc::sigaddset(&raw mut set, signal_number);
        }
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &raw const set, std::ptr::null_mut());
    }
}

fn send_signal(pid: u32, signal_number: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; a stale pid is harmless here
        // because we only signal children we have not yet reaped.
        unsafe {
            libc::kill(pid, signal_number);
        }
    }
}

/// "was killed by signal 11 (SIGSEGV)" or "exited with status 1".
fn describe_exit(status: std::process::ExitStatus) -> String {
    if let Some(signal_number) = status.signal() {
        let name = signal_name(signal_number);
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        format!("was killed by signal {signal_number} ({name}{core})")
    } else {
        format!("exited with status {}", status.code().unwrap_or(-1))
    }
}

fn signal_name(signal_number: i32) -> &'static str {
    match signal_number {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => "unknown signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_with_signal_names() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(describe_exit(killed), "was killed by signal 11 (SIGSEGV)");
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(describe_exit(exited), "exited with status 1");
    }
}

//! The supervisor: the process the user started. It prepares the server root, binds the
//! listening socket, prints the banner, starts the server processes, restarts those that
//! die, and turns signals into a graceful stop or restart.
//!
//! It is one loop over a closed set of [`Event`]s. It never loads the application: a
//! crash there could not take the supervisor down with it.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::{Config, ExitStatus};
use crate::embedded::LISTENER_FD_ENV;
use crate::logs::error_log::{self, Destination};
use crate::logs::{Level, write_stdout};

/// Time between a server process dying and its replacement starting, so that a process
/// that dies at once does not spin the CPU.
const RESPAWN_DELAY: Duration = Duration::from_millis(100);
/// Extra time after `--shutdown-timeout` before stragglers are killed.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Everything the supervisor loop reacts to.
#[derive(Debug)]
enum Event {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGHUP or SIGUSR1: replace every server process, one by one.
    Restart,
    /// A server process ended.
    ProcessExited {
        pid: u32,
        status: std::process::ExitStatus,
    },
    /// Time to start a process in this slot again.
    Respawn { slot: usize },
}

/// Runs the server until it is stopped. Call it detached from Python.
pub fn run(config: &Config, argv: &[String]) -> ExitStatus {
    if let Err(error) = fs_err::create_dir_all(&config.server.server_root) {
        crate::logs::write_terminal(&format!(
            "ferrule: error: cannot create the --server-root directory: {error}\n"
        ));
        return ExitStatus::Failure;
    }
    open_error_log(config);
    let listener = match bind(config) {
        Ok(listener) => listener,
        Err(message) => {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
    };
    let banner = banner(config);
    write_stdout(&banner);
    if let Some(path) = &config.logs.startup_log {
        let _ = fs_err::write(path, &banner);
    }
    if config.processes.daemon_mode_requested {
        let warning = "daemon mode is not built yet in this version of ferrule; running in embedded mode (the application runs in the server processes)";
        crate::logs::write_terminal(&format!("ferrule: warning: {warning}\n"));
        error_log::log(Level::Warn, "ferrule", warning);
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
    let supervisor = Supervisor {
        config,
        argv,
        listener_fd: listener.as_raw_fd(),
        slots: vec![None; config.processes.n_processes],
        pids: HashMap::new(),
        stopping: None,
        exit_status: ExitStatus::Success,
    };
    let status = runtime.block_on(supervisor.run());
    drop(listener);
    status
}

/// Opens this process's error log: the terminal, or `error_log` in the server root.
pub fn open_error_log(config: &Config) {
    let destination = if config.logs.log_to_terminal {
        Destination::Stderr
    } else {
        match fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.logs.error_log)
        {
            Ok(file) => Destination::File(file.into_parts().0),
            Err(error) => {
                crate::logs::write_terminal(&format!(
                    "ferrule: warning: cannot open the error log, using the terminal: {error}\n"
                ));
                Destination::Stderr
            }
        }
    };
    error_log::init(config.logs.level, destination);
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
}

impl Supervisor<'_> {
    async fn run(mut self) -> ExitStatus {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        if let Err(error) = forward_signals(&event_tx) {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot install signal handlers: {error}\n"
            ));
            return ExitStatus::InternalError;
        }
        clear_close_on_exec(self.listener_fd);
        for slot in 0..self.slots.len() {
            if let Err(status) = self.spawn(slot, &event_tx) {
                self.stop();
                self.exit_status = status;
                break;
            }
        }
        let mut kill_timer = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
        loop {
            if self.stopping.is_some() && self.pids.is_empty() {
                return self.exit_status;
            }
            let event = tokio::select! {
                event = event_rx.recv() => match event {
                    Some(event) => event,
                    None => return ExitStatus::InternalError,
                },
                () = &mut kill_timer, if self.stopping.is_some() => {
                    self.kill_all(libc::SIGKILL);
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
            }
        }
    }

    fn spawn(
        &mut self,
        slot: usize,
        event_tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), ExitStatus> {
        let mut command = Command::new(&self.config.python.executable);
        command
            .arg("-m")
            .arg("ferrule")
            .args(self.argv)
            .env(LISTENER_FD_ENV, self.listener_fd.to_string())
            .env("FERRULE_PROCESS_INDEX", slot.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                error_log::log(
                    Level::Crit,
                    "ferrule",
                    &format!(
                        "cannot start a server process with '{}': {error}",
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
        let event_tx = event_tx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = event_tx.send(Event::ProcessExited { pid, status });
            }
        });
        Ok(())
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
        let was_current = self.slots[slot] == Some(pid);
        if was_current {
            self.slots[slot] = None;
        }
        if self.stopping.is_some() || !was_current {
            return;
        }
        if status.code() == Some(ExitStatus::AppLoadFailed as i32) {
            error_log::log(
                Level::Error,
                "ferrule",
                &format!(
                    "server process {slot} (pid {pid}) could not load the WSGI application; stopping the server"
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
            return;
        }
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "server process {slot} (pid {pid}) {} after {:.1} s; starting a new one",
                describe_exit(status),
                started.elapsed().as_secs_f64()
            ),
        );
        let event_tx = event_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESPAWN_DELAY).await;
            let _ = event_tx.send(Event::Respawn { slot });
        });
    }

    /// Starts a fresh process for every slot, then asks the old one to finish its
    /// requests and leave. Both share the listener, so no connection is refused.
    fn restart(&mut self, event_tx: &mpsc::UnboundedSender<Event>) {
        if self.stopping.is_some() {
            return;
        }
        error_log::log(
            Level::Notice,
            "ferrule",
            "restarting the server processes gracefully",
        );
        for slot in 0..self.slots.len() {
            let old = self.slots[slot].take();
            if let Err(status) = self.spawn(slot, event_tx) {
                self.exit_status = status;
                self.stop();
                return;
            }
            if let Some(old) = old {
                send_signal(old, libc::SIGTERM);
            }
        }
    }

    fn stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            self.kill_all(libc::SIGTERM);
        }
    }

    fn kill_all(&self, signal_number: i32) {
        for &pid in self.pids.keys() {
            send_signal(pid, signal_number);
        }
    }
}

fn forward_signals(event_tx: &mpsc::UnboundedSender<Event>) -> std::io::Result<()> {
    for (kind, event) in [
        (SignalKind::terminate(), (|| Event::Stop) as fn() -> Event),
        (SignalKind::interrupt(), || Event::Stop),
        (SignalKind::hangup(), || Event::Restart),
        (SignalKind::user_defined1(), || Event::Restart),
    ] {
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

fn bind(config: &Config) -> Result<Socket, String> {
    let port = config.server.port;
    let addresses: Vec<SocketAddr> = match &config.server.host {
        None => vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ],
        Some(host) => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| format!("--host '{host}' cannot be resolved: {error}"))?
            .collect(),
    };
    let mut last_error = None;
    for address in &addresses {
        match bind_one(*address, config.server.server_backlog) {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = Some((address, error)),
        }
    }
    let (address, error) = last_error.ok_or_else(|| "no address to listen on".to_owned())?;
    let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
        "\nhint: another server uses this port; stop it or choose another with --port"
    } else {
        ""
    };
    Err(format!("cannot listen on {address}: {error}{hint}"))
}

fn bind_one(address: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        // One socket for both families when listening everywhere, as Apache does.
        socket.set_only_v6(false)?;
    }
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

fn clear_close_on_exec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own, with valid flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
    }
}

/// The start-up summary mod_wsgi-express prints, with our values.
fn banner(config: &Config) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("Server URL", config.server_url()),
        (
            "Server Root",
            config.server.server_root.display().to_string(),
        ),
    ];
    if config.logs.log_to_terminal {
        lines.push((
            "Error Log File",
            format!("/dev/stderr ({})", config.logs.level.name()),
        ));
    } else {
        lines.push((
            "Error Log File",
            format!(
                "{} ({})",
                config.logs.error_log.display(),
                config.logs.level.name()
            ),
        ));
    }
    if config.logs.access_log_enabled {
        let access = config.logs.access_log.as_ref().map_or_else(
            || "/dev/stdout".to_owned(),
            |path| path.display().to_string(),
        );
        lines.push(("Access Log File", access));
    }
    if let Some(path) = &config.logs.startup_log {
        lines.push(("Startup Log File", path.display().to_string()));
    }
    let processes = config.processes.n_processes;
    let threads = config.processes.n_threads;
    lines.push(("Operating Mode", "embedded".to_owned()));
    lines.push((
        "Request Capacity",
        format!(
            "{} ({} process{} * {} threads)",
            processes * threads,
            processes,
            if processes == 1 { "" } else { "es" },
            threads,
        ),
    ));
    lines.push((
        "Server Backlog",
        format!("{} (connections)", config.server.server_backlog),
    ));
    lines.push((
        "Python Executable",
        config.python.executable.display().to_string(),
    ));
    lines.push(("Python Version", config.python.version.clone()));
    let mut text = String::new();
    for (label, value) in lines {
        text.push_str(&format!("{label:<19}: {value}\n"));
    }
    text
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

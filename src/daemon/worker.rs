//! The main of one daemon process: loads the application into the WSGI executor, opens
//! the control connection, and starts one application thread per `--threads`, each with
//! its own connection to the front end's daemon socket (`connection.rs`).
//!
//! The supervisor starts it as `python -m ferrule start-server ARGS` with
//! [`DAEMON_SOCKET_ENV`] set. A connection ends for good when the front end sends `Stop`
//! (graceful restart, recycling, shutdown); the process exits once all have ended.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::protocol::{self, Frame, Hello, Role};
use crate::cli::{Config, ExitStatus};
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;
use crate::wsgi::{Executor, Threads};

/// Names the front end's daemon socket in a daemon process's environment.
pub const DAEMON_SOCKET_ENV: &str = "FERRULE_DAEMON_SOCKET";
/// The daemon's slot in its group, in its environment.
pub const PROCESS_INDEX_ENV: &str = "FERRULE_PROCESS_INDEX";

/// The front end's socket, if this process is a daemon process.
pub fn daemon_socket() -> Option<PathBuf> {
    std::env::var_os(DAEMON_SOCKET_ENV).map(PathBuf::from)
}

/// What the application threads of this process share.
pub(super) struct Worker {
    pub(super) executor: Executor,
    pub(super) socket: PathBuf,
    pub(super) pid: u32,
    pub(super) slot: u32,
    served: AtomicU64,
    /// Set when the process stops (SIGTERM, or the front end is gone).
    stopping: AtomicBool,
    /// Connections whose thread waits for a request head: closed at once on a stop.
    idle_connections: std::sync::Mutex<HashSet<RawFd>>,
    /// `--maximum-requests`; 0 for never.
    maximum_requests: u64,
    /// `--cpu-time-limit` in seconds and `--memory-limit` in bytes; 0 for none.
    cpu_time_limit: u64,
    memory_limit: u64,
    shutdown: Shutdown,
    /// Where reasons to be replaced go; the control connection sends them on.
    recycle_tx: mpsc::UnboundedSender<Frame>,
    recycle_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Frame>>>,
    /// Tell the front end which file to watch, and watch every imported file.
    reload_entry: bool,
    reload_on_changes: bool,
}

impl Worker {
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops the process: threads waiting for a request leave now, busy ones after their
    /// request.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.trigger();
        for &fd in self.lock_idle().iter() {
            // SAFETY: shutting down a socket we own wakes its blocked reader; the
            // descriptor stays open until its thread closes it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    /// Marks the connection `fd` as waiting for a request (or no longer).
    pub(super) fn idle(&self, fd: RawFd, idle: bool) {
        let mut idle_connections = self.lock_idle();
        if idle {
            idle_connections.insert(fd);
        } else {
            idle_connections.remove(&fd);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, HashSet<RawFd>> {
        self.idle_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts a request; at `--maximum-requests` asks to be replaced.
    pub(super) fn count_request(&self) {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.maximum_requests > 0 && served == self.maximum_requests {
            let _ = self.recycle_tx.send(Frame::Recycle(format!(
                "reached --maximum-requests ({})",
                self.maximum_requests
            )));
        }
    }
}

/// Runs this process as a daemon process until the front end lets it go or SIGTERM.
pub fn run(py: Python<'_>, config: &Config, socket: PathBuf) -> ExitStatus {
    let slot: u32 = std::env::var(PROCESS_INDEX_ENV)
        .ok()
        .and_then(|index| index.parse().ok())
        .unwrap_or(0);
    let executor = match crate::embedded::start_executor(py, config, Threads::Caller) {
        Ok(executor) => executor,
        Err(status) => return status,
    };
    let (recycle_tx, recycle_rx) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        executor,
        socket,
        pid: std::process::id(),
        slot,
        served: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        idle_connections: std::sync::Mutex::new(HashSet::new()),
        maximum_requests: config.processes.maximum_requests,
        cpu_time_limit: config.processes.cpu_time_limit,
        memory_limit: config.processes.memory_limit,
        shutdown: Shutdown::new(),
        recycle_tx,
        recycle_rx: std::sync::Mutex::new(Some(recycle_rx)),
        reload_entry: config.application.reload_entry,
        reload_on_changes: config.application.reload_on_changes,
    });
    let n_connections = config.processes.n_threads.max(1);
    let shutdown_timeout = config.processes.shutdown_timeout;
    py.detach(|| serve(&worker, n_connections, shutdown_timeout))
}

fn serve(worker: &Arc<Worker>, n_connections: usize, shutdown_timeout: Duration) -> ExitStatus {
    let runtime = match crate::embedded::new_runtime("daemon's control") {
        Ok(runtime) => runtime,
        Err(status) => return status,
    };
    // The control connection first: it is how this process asks to be replaced.
    if let Err(error) = runtime.block_on(start_control(worker)) {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!("cannot connect to the front end's daemon socket: {error}"),
        );
        return ExitStatus::Failure;
    }
    // The runtime keeps the control connection, the limit watchers and SIGTERM going.
    let control_worker = Arc::clone(worker);
    let control = std::thread::Builder::new()
        .name("ferrule-control".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                let Ok(mut terminate) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = terminate.recv() => control_worker.stop(),
                    () = control_worker.shutdown.wait() => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
    let threads: Vec<_> = (0..n_connections)
        .filter_map(|index| {
            let worker = Arc::clone(worker);
            std::thread::Builder::new()
                .name(format!("ferrule-wsgi-{index}"))
                .spawn(move || super::connection::run_thread(&worker, index))
                .ok()
        })
        .collect();
    // Once a stop began, threads get --shutdown-timeout to finish their requests.
    let mut stop_deadline = None;
    while threads.iter().any(|thread| !thread.is_finished()) {
        if worker.is_stopping() {
            let deadline =
                *stop_deadline.get_or_insert_with(|| std::time::Instant::now() + shutdown_timeout);
            if std::time::Instant::now() >= deadline {
                return crate::embedded::exit_now_if_stuck(false, ExitStatus::Success);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    worker.shutdown.trigger();
    if let Ok(control) = control {
        let _ = control.join();
    }
    ExitStatus::Success
}

/// Opens the control connection and starts the watchers of `--cpu-time-limit` and
/// `--memory-limit`, which ask through it for this process to be replaced.
async fn start_control(worker: &Arc<Worker>) -> std::io::Result<()> {
    let mut control = UnixStream::connect(&worker.socket).await?;
    let hello = Frame::Hello(Hello {
        pid: worker.pid,
        slot: worker.slot,
        served: 0,
        role: Role::Control,
    });
    protocol::write_frame(&mut control, &hello).await?;
    if worker.reload_entry {
        if let Some(file) = worker.executor.entry_file() {
            let watch = Frame::Watch(file.to_string_lossy().into_owned());
            protocol::write_frame(&mut control, &watch).await?;
        }
    }
    let limits_tx = worker.recycle_tx.clone();
    if worker.reload_on_changes {
        let changes_tx = limits_tx.clone();
        crate::wsgi::watch_imported_files(Box::new(move |reason| {
            let _ = changes_tx.send(Frame::CodeChanged(reason));
        }));
    }
    let Some(mut limits_rx) = worker
        .recycle_rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        return Ok(());
    };
    if worker.cpu_time_limit > 0 {
        watch_cpu_time(worker.cpu_time_limit, limits_tx.clone())?;
    }
    if worker.memory_limit > 0 {
        let limit = worker.memory_limit;
        let limits_tx = limits_tx.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                if let Some(rss) = resident_bytes() {
                    if rss > limit {
                        let _ = limits_tx.send(Frame::Recycle(format!(
                            "uses {rss} bytes of memory, more than --memory-limit ({limit})"
                        )));
                        return;
                    }
                }
            }
        });
    }
    drop(limits_tx);
    tokio::spawn(async move {
        // Kept open for the life of the process: its end tells the front end we are gone.
        while let Some(frame) = limits_rx.recv().await {
            if protocol::write_frame(&mut control, &frame).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    Ok(())
}

/// Sets the CPU time limit; the kernel's SIGXCPU when it is reached becomes a request
/// to be replaced (by default SIGXCPU would kill the process mid-request).
fn watch_cpu_time(seconds: u64, limits_tx: mpsc::UnboundedSender<Frame>) -> std::io::Result<()> {
    let mut xcpu =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXCPU))?;
    let limit = libc::rlimit {
        rlim_cur: seconds,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; it has no other preconditions.
    if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &raw const limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    tokio::spawn(async move {
        if xcpu.recv().await.is_some() {
            let _ = limits_tx.send(Frame::Recycle(format!(
                "used {seconds} s of CPU time, its --cpu-time-limit"
            )));
        }
    });
    Ok(())
}

/// This process's resident memory, from /proc.
fn resident_bytes() -> Option<u64> {
    let statm = fs_err::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

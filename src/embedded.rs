//! One embedded-mode server process: loads the application, then serves the listening
//! sockets it inherited from the supervisor (HTTP, and HTTPS with `--https-port`) with
//! the front end and the WSGI executor in the same process.
//!
//! The supervisor starts these processes as `python -m ferrule start-server ARGS` with
//! `FERRULE_LISTENER_FD` (and `FERRULE_TLS_LISTENER_FD`) set (read by
//! `cli::read_environment`); parsing the same arguments gives the same [`Config`].

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::cli::{Config, ExitStatus, OperatingMode};
use crate::frontend;
use crate::logs::{Level, error_log};
use crate::process;
use crate::shutdown::Shutdown;
use crate::wsgi::Executor;

/// Runs this process as an embedded-mode server process until SIGTERM.
pub fn run(
    py: Python<'_>,
    config: &Config,
    listener_fd: RawFd,
    tls_listener_fd: Option<RawFd>,
) -> ExitStatus {
    // The supervisor cleared close-on-exec for us alone; set it again before the
    // application loads, so that its subprocesses never hold the port open.
    set_close_on_exec(listener_fd);
    if let Some(fd) = tls_listener_fd {
        set_close_on_exec(fd);
    }
    match process::start_executor(py, config) {
        Ok(executor) => {
            py.detach(|| serve(config, listener_fd, tls_listener_fd, Arc::new(executor)))
        }
        Err(status) => status,
    }
}

/// `--debug-mode`: this process runs the application itself on `listener` (bound by
/// `supervisor::prepare_foreground`), on one thread, keeping the terminal for pdb. Ctrl-C
/// or SIGTERM stops it.
pub fn run_in_foreground(
    py: Python<'_>,
    config: &Config,
    (listener, https_listener): (socket2::Socket, Option<socket2::Socket>),
) -> ExitStatus {
    let Ok(executor) = process::start_executor(py, config) else {
        crate::logs::write_terminal(
            "ferrule: error: the WSGI application failed to load; see above\n",
        );
        return ExitStatus::AppLoadFailed;
    };
    let listener_fd = listener.into_raw_fd();
    let tls_listener_fd = https_listener.map(IntoRawFd::into_raw_fd);
    py.detach(|| serve(config, listener_fd, tls_listener_fd, Arc::new(executor)))
}

fn serve(
    config: &Config,
    listener_fd: RawFd,
    tls_listener_fd: Option<RawFd>,
    executor: Arc<Executor>,
) -> ExitStatus {
    // SAFETY: the supervisor passed us these descriptors of listening TCP sockets, and
    // nothing else in this process uses them.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(listener_fd) };
    // SAFETY: as above.
    let https_listener =
        tls_listener_fd.map(|fd| unsafe { std::net::TcpListener::from_raw_fd(fd) });
    let tls = match &config.server.https {
        Some(https) => match frontend::TlsListener::load(
            &https.files,
            https.ssl_environment,
            config.server.http2,
        ) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(error) => {
                error_log::log(
                    Level::Crit,
                    "ferrule",
                    &format!("cannot serve HTTPS: {error}"),
                );
                return ExitStatus::Failure;
            }
        },
        None => None,
    };
    // One HTTP thread per process: the application threads do the heavy work, and a
    // single reactor batches its wake-ups (measured: 10-20 % more hello req/s on one core
    // than two work-stealing threads). More cores are used with more --processes.
    let runtime = match process::new_runtime("HTTP") {
        Ok(runtime) => runtime,
        Err(status) => return status,
    };
    // The reload watch registers with the reactor: build the configuration inside it.
    let runtime_context = runtime.enter();
    let reload_watch = config
        .application
        .reload_entry
        .then(|| executor.entry_file())
        .flatten()
        .map(|file| {
            let watch = frontend::ReloadWatch::new();
            watch.watch(file.to_owned());
            Arc::new(watch)
        });
    let frontend_config = Arc::new(crate::frontend_setup::frontend_config(
        config,
        admission_slots(
            config.server.max_clients,
            config.processes.n_processes,
            config.processes.n_threads,
        ),
        reload_watch,
    ));
    drop(runtime_context);
    if frontend_config.operations.shows_requests() {
        executor.activity().record_requests();
    }
    let code_changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = runtime.block_on(async {
        let listener = frontend::Listener::from_std(listener, None)?;
        let https_listener = match (https_listener, tls) {
            (Some(socket), Some(tls)) => Some(frontend::Listener::from_std(socket, Some(tls))?),
            _ => None,
        };
        let shutdown = Shutdown::new();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut interrupt = (config.processes.mode == OperatingMode::Debug)
            .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()))
            .transpose()?;
        if config.application.reload_on_changes {
            let stopper = shutdown.clone();
            let changed = Arc::clone(&code_changed);
            crate::wsgi::watch_imported_files(Box::new(move |reason| {
                error_log::log(
                    Level::Info,
                    "ferrule",
                    &format!("{reason}; this process restarts with the new code"),
                );
                changed.store(true, std::sync::atomic::Ordering::Release);
                stopper.trigger();
            }));
        }
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            match &mut interrupt {
                Some(interrupt) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                None => {
                    terminate.recv().await;
                }
            }
            stopper.trigger();
        });
        let backend = frontend::Backend::Embedded(Arc::clone(&executor) as _);
        let serving_https = async {
            if let Some(https) = https_listener {
                let config = Arc::clone(&frontend_config);
                frontend::serve(https, config, backend.clone(), shutdown.clone()).await;
            }
        };
        tokio::join!(
            frontend::serve(
                listener,
                Arc::clone(&frontend_config),
                backend.clone(),
                shutdown.clone()
            ),
            serving_https
        );
        Ok::<(), std::io::Error>(())
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    if let Err(error) = served {
        error_log::log(
            Level::Crit,
            "ferrule",
            &format!("cannot serve the inherited listener: {error}"),
        );
        return ExitStatus::InternalError;
    }
    let finished = if code_changed.load(std::sync::atomic::Ordering::Acquire) {
        ExitStatus::CodeChanged
    } else {
        ExitStatus::Success
    };
    let Ok(executor) = Arc::try_unwrap(executor) else {
        return finished;
    };
    let reason = if finished == ExitStatus::CodeChanged {
        "script_reload"
    } else {
        "shutdown_signal"
    };
    process::exit_now_if_stuck(
        executor.stop(config.processes.shutdown_timeout, reason),
        finished,
    )
}

fn set_close_on_exec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own, with valid flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

/// This process's share of `--max-clients`: every embedded process has its own front end
/// and threads, so each admits its part of the total, and never fewer requests than it has
/// threads (a thread must never idle while a request waits for a slot).
fn admission_slots(max_clients: usize, n_processes: usize, n_threads: usize) -> usize {
    max_clients
        .div_ceil(n_processes.max(1))
        .max(n_threads.max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_process_admits_its_share_and_never_fewer_than_its_threads() {
        assert_eq!(super::admission_slots(22, 1, 8), 22);
        assert_eq!(super::admission_slots(22, 4, 8), 8);
        assert_eq!(super::admission_slots(100, 3, 5), 34);
        assert_eq!(super::admission_slots(1, 1, 1), 1);
    }
}

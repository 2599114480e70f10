//! One embedded-mode server process: loads the application, then serves the listening
//! socket it inherited from the supervisor with the front end and the WSGI executor in
//! the same process.
//!
//! The supervisor starts these processes as `python -m ferrule start-server ARGS` with
//! `FERRULE_LISTENER_FD` set (read by `cli::read_environment`); parsing the same
//! arguments gives the same [`Config`].

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::cli::{ApplicationTarget, Config, ExitStatus, OperatingMode};
use crate::frontend::{self, FrontendConfig};
use crate::logs::access_log::AccessLog;
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;
use crate::wsgi::{AppSource, AppSpec, Executor, ProcessFacts, StandardStreams};

/// Runs this process as an embedded-mode server process until SIGTERM.
pub fn run(py: Python<'_>, config: &Config, listener_fd: RawFd) -> ExitStatus {
    // The supervisor cleared close-on-exec for us alone; set it again before the
    // application loads, so that its subprocesses never hold the port open.
    set_close_on_exec(listener_fd);
    match start_executor(py, config) {
        Ok(executor) => py.detach(|| serve(config, listener_fd, Arc::new(executor))),
        Err(status) => status,
    }
}

/// `--debug-mode`: this process binds the listener and runs the application itself, on
/// one thread, keeping the terminal for pdb. Ctrl-C or SIGTERM stops it.
pub fn run_in_foreground(py: Python<'_>, config: &Config) -> ExitStatus {
    let listener = match crate::supervisor::prepare_foreground(config) {
        Ok(listener) => listener,
        Err(status) => return status,
    };
    let Ok(executor) = start_executor(py, config) else {
        crate::logs::write_terminal(
            "ferrule: error: the WSGI application failed to load; see above\n",
        );
        return ExitStatus::AppLoadFailed;
    };
    let listener_fd = listener.into_raw_fd();
    py.detach(|| serve(config, listener_fd, Arc::new(executor)))
}

/// What every process that runs the application does first, in either mode: leave
/// Ctrl-C to the supervisor, open the error log, move to the home directory, load the
/// application and start its threads.
pub(crate) fn start_executor(py: Python<'_>, config: &Config) -> Result<Executor, ExitStatus> {
    let debug = config.processes.mode == OperatingMode::Debug;
    if !debug {
        // SAFETY: setting a signal disposition has no memory-safety preconditions. Ctrl-C
        // in a terminal reaches the whole process group; the supervisor decides how to stop.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
        crate::supervisor::open_error_log(config);
    }
    let application = &config.application;
    let launch_directory = std::env::current_dir().ok();
    if let Err(error) = std::env::set_current_dir(&application.working_directory) {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "cannot change to --working-directory '{}': {error}",
                application.working_directory.display()
            ),
        );
        return Err(ExitStatus::AppLoadFailed);
    }
    let spec = AppSpec {
        source: match &application.target {
            ApplicationTarget::Script(path) => AppSource::Script(path.clone()),
            ApplicationTarget::Module(name) => AppSource::Module(name.clone()),
            ApplicationTarget::Paste(path) => AppSource::Paste(path.clone()),
            ApplicationTarget::Static(_) => {
                error_log::log(
                    Level::Crit,
                    "ferrule",
                    "a static site has no application to load",
                );
                return Err(ExitStatus::InternalError);
            }
        },
        callable_object: application.callable_object.clone(),
        home: application.working_directory.clone(),
        launch_directory,
        python_home_site: application.python_home_site.clone(),
        python_paths: application.python_paths.clone(),
    };
    let streams = if debug {
        StandardStreams::Terminal
    } else {
        StandardStreams::ErrorLog
    };
    Executor::start(py, &spec, process_facts(config), streams).map_err(|error| {
        error_log::log(Level::Error, "wsgi", &error.to_string());
        ExitStatus::AppLoadFailed
    })
}

fn serve(config: &Config, listener_fd: RawFd, executor: Arc<Executor>) -> ExitStatus {
    // SAFETY: the supervisor passed us this descriptor of a listening TCP socket, and
    // nothing else in this process uses it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(listener_fd) };
    // One HTTP thread per process: the application threads do the heavy work, and a
    // single reactor batches its wake-ups (measured: 10-20 % more hello req/s on one core
    // than two work-stealing threads). More cores are used with more --processes.
    let runtime = match new_runtime("HTTP") {
        Ok(runtime) => runtime,
        Err(status) => return status,
    };
    // The reload watch registers with the reactor: build the configuration inside it.
    let runtime_context = runtime.enter();
    let frontend_config = Arc::new(FrontendConfig {
        access_log: open_access_log(config),
        header_read_timeout: config.server.header_read_timeout,
        shutdown_timeout: config.processes.shutdown_timeout,
        static_files: crate::supervisor::static_files(config),
        draining: std::sync::atomic::AtomicBool::new(false),
        reload_watch: config
            .application
            .reload_entry
            .then(|| executor.entry_file())
            .flatten()
            .map(|file| {
                let watch = frontend::ReloadWatch::new();
                watch.watch(file.to_owned());
                Arc::new(watch)
            }),
    });
    drop(runtime_context);
    let code_changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = runtime.block_on(async {
        let _ = listener.set_nonblocking(true);
        let listener = tokio::net::TcpListener::from_std(listener)?;
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
        frontend::serve(
            listener,
            frontend_config,
            frontend::Backend::Embedded(Arc::clone(&executor)),
            shutdown,
        )
        .await;
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
    exit_now_if_stuck(executor.stop(config.processes.shutdown_timeout), finished)
}

/// The single-threaded tokio runtime every process runs its I/O on.
pub(crate) fn new_runtime(purpose: &str) -> Result<tokio::runtime::Runtime, ExitStatus> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            error_log::log(
                Level::Crit,
                "ferrule",
                &format!("cannot start the {purpose} runtime: {error}"),
            );
            ExitStatus::InternalError
        })
}

/// Returns `status` when every application thread finished; otherwise ends the process
/// at once with it, since a thread stuck in the application would keep Python's
/// finalisation waiting forever.
pub(crate) fn exit_now_if_stuck(all_finished: bool, status: ExitStatus) -> ExitStatus {
    if !all_finished {
        error_log::log(
            Level::Warn,
            "ferrule",
            "requests still running when the process stopped; exiting anyway",
        );
        crate::logs::close(crate::logs::CLOSE_TIMEOUT);
        // SAFETY: _exit ends the process at once, which is the point (see above).
        unsafe { libc::_exit(status as i32) };
    }
    status
}

/// The per-process facts the environ template is built from, for either mode.
pub(crate) fn process_facts(config: &Config) -> ProcessFacts {
    // mod_wsgi-express names its daemon process group after the host and port.
    let process_group = match config.processes.mode {
        OperatingMode::Embedded | OperatingMode::Debug => String::new(),
        OperatingMode::Daemon => format!(
            "{}:{}",
            config.server.host.as_deref().unwrap_or("localhost"),
            config.server.port
        ),
    };
    ProcessFacts {
        n_processes: config.processes.n_processes,
        n_threads: config.processes.n_threads,
        process_group,
        application_group: String::new(),
        callable_object: config.application.callable_object.clone(),
        script_filename: match &config.application.target {
            ApplicationTarget::Module(name) => name.clone(),
            target => target
                .path()
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        script_name: String::new(),
        default_server_name: config.server.server_name.clone(),
        server_software: format!("ferrule/{}", env!("CARGO_PKG_VERSION")),
        document_root: config
            .server
            .server_root
            .join("htdocs")
            .to_string_lossy()
            .into_owned(),
    }
}

pub(crate) fn open_access_log(config: &Config) -> Option<AccessLog> {
    if !config.logs.access_log_enabled {
        return None;
    }
    match &config.logs.access_log {
        None => Some(AccessLog::new(crate::logs::Destination::Stdout)),
        Some(path) => match fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Some(AccessLog::new(crate::logs::Destination::File(
                file.into_parts().0,
            ))),
            Err(error) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!("cannot open the access log: {error}"),
                );
                None
            }
        },
    }
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

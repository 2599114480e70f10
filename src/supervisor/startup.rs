//! Start-up: what the supervisor does before its loop (the server root, the error log,
//! the pid file, the listener, the user to run as, the banner), the front end it runs in
//! daemon mode, and `setup-server` and `--debug-mode`, which share those steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::signals::set_signals_blocked;
use super::spawner::DaemonSide;
use super::{Event, banner, control_script, listen, pid_file, privileges, systemd_unit};
use crate::cli::{ApplicationTarget, Config, ExitStatus, OperatingMode};
use crate::frontend::{self, Backend, DaemonPool, FrontendConfig, PoolEvent};
use crate::logs::error_log;
use crate::logs::{Level, write_stdout};
use crate::process;
use crate::shutdown::Shutdown;

/// `setup-server`: writes the server root and its control script, prints the banner, and
/// leaves starting to the control script.
pub fn setup(config: &Config, argv: &[String]) -> ExitStatus {
    if let Err(status) = create_server_root(config) {
        return status;
    }
    report_warnings(config, false);
    if config.server.systemd_unit {
        if let Err(error) = systemd_unit::write(config) {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot write the systemd unit: {error}\n"
            ));
            return ExitStatus::Failure;
        }
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
    if let Some(pipe) = &config.logs.rotatelogs {
        if let Err(message) =
            super::piped_logs::start(&pipe.executable, pipe.max_log_size_mb, &pipe.logs)
        {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
    }
    process::open_error_log(config);
    report_warnings(config, true);
    // As root, before --user: mod_wsgi-express's apachectl sources it as root too.
    let environment = match super::child_environment::ChildEnvironment::for_config(config) {
        Ok(environment) => environment,
        Err(message) => {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::UsageError;
        }
    };
    if config.server.systemd_unit {
        if let Err(error) = systemd_unit::write(config) {
            error_log::log(
                Level::Warn,
                "ferrule",
                &format!("cannot write the systemd unit: {error}"),
            );
        }
    }
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
    let (listener, https_listener) =
        match listen::bind(config).and_then(|http| Ok((http, listen::bind_https(config)?))) {
            Ok(listeners) => listeners,
            Err(message) => {
                crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
                return ExitStatus::Failure;
            }
        };
    // A static site has no application: the front end here serves it, with no children.
    let static_site = matches!(config.application.target, ApplicationTarget::Static(_));
    let php = config.server.gateways.php.as_deref();
    let socket_directory =
        if config.processes.mode == OperatingMode::Daemon || static_site || php.is_some() {
            match listen::socket_directory(
                &config.server.server_root,
                config.processes.daemon_details.socket_directory.as_deref(),
            ) {
                Ok(directory) => Some(directory),
                Err(message) => {
                    crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
                    return ExitStatus::Failure;
                }
            }
        } else {
            None
        };
    // The front end runs here (daemon mode, a static site): its certificate and key are
    // read before --user takes effect, as Apache reads them as root, so the key may stay
    // readable by root alone.
    let tls = match (&socket_directory, &config.server.https) {
        (Some(_), Some(https)) => {
            match frontend::TlsListener::load(
                &https.files,
                https.ssl_environment,
                config.server.http2,
            ) {
                Ok(tls) => Some(Arc::new(tls)),
                Err(error) => {
                    crate::logs::write_terminal(&format!("ferrule: error: {error}\n"));
                    return ExitStatus::UsageError;
                }
            }
        }
        _ => None,
    };
    // Written as root (the server root is root's); php-fpm starts once the server runs
    // as --user, so that its pool runs as that user too.
    let php_config = match php.map(|program| super::php_fpm::write_config(config, program)) {
        Some(Err(message)) => {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
        Some(Ok(path)) => Some(path),
        None => None,
    };
    if let Some(run_as) = &config.processes.run_as {
        if let Err(message) = privileges::become_user(config, run_as, socket_directory.as_deref()) {
            crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
            return ExitStatus::Failure;
        }
    }
    // Dropped on every way out of this function: php-fpm is then stopped.
    let _php_fpm = match php.zip(php_config) {
        Some((program, config_file)) => {
            match super::php_fpm::PhpFpm::start(config, program, config_file) {
                Ok(pool) => Some(pool),
                Err(message) => {
                    crate::logs::write_terminal(&format!("ferrule: error: {message}\n"));
                    return ExitStatus::Failure;
                }
            }
        }
        None => None,
    };
    // Bound by the user the server runs as (with --user), who must also remove it.
    let daemon_socket = match socket_directory
        .filter(|_| config.processes.mode == OperatingMode::Daemon || static_site)
    {
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
    let slots = if static_site {
        0
    } else {
        config.processes.n_processes
    };
    let status = runtime.block_on(super::serve(
        config,
        argv,
        &environment,
        (listener, https_listener, tls),
        daemon_socket,
        slots,
    ));
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    status
}

/// Says, on the terminal and (with `to_error_log`) in the error log, which options are
/// accepted and ignored, and why.
fn report_warnings(config: &Config, to_error_log: bool) {
    for warning in &config.warnings {
        // With --log-to-terminal the error log line is already on the terminal.
        if !(to_error_log && config.logs.log_to_terminal) {
            crate::logs::write_terminal(&format!("ferrule: warning: {warning}\n"));
        }
        if to_error_log {
            error_log::log(Level::Warn, "ferrule", warning);
        }
    }
}

/// Creates the server root and the log directory, if they do not exist, open to others
/// for reading only (whatever the umask): `cli::config` refuses a server root that others
/// can write.
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
        })?;
    // `--log-directory`: made when missing, as mod_wsgi-express does.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&config.logs.log_directory)
        .map_err(|error| {
            crate::logs::write_terminal(&format!(
                "ferrule: error: cannot create the --log-directory directory '{}': {error}\n",
                config.logs.log_directory.display()
            ));
            ExitStatus::Failure
        })
}

/// `--enable-gdb`: runs this very command again under gdb (`gdb -ex run --args python -m
/// ferrule ARGS`), with the terminal, so that a crash of the debug-mode process stops at
/// gdb's prompt. Returns only when gdb cannot be started.
pub fn run_under_gdb(config: &Config, gdb: &Path, argv: &[String]) -> ExitStatus {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(gdb);
    // No question about downloading debug symbols before the program runs; no pager
    // between the user and a backtrace.
    command
        .args([
            "-q",
            "-iex",
            "set debuginfod enabled off",
            "-iex",
            "set pagination off",
        ])
        .args(["-ex", "run", "--args"])
        .arg(&config.python.executable);
    for spec in &config.python_settings.warnings {
        command.arg("-W").arg(spec);
    }
    command
        .args(["-m", "ferrule"])
        .args(argv)
        .env(crate::cli::UNDER_GDB_ENV, "1");
    let error = command.exec();
    crate::logs::write_terminal(&format!(
        "ferrule: error: cannot start --gdb-executable '{}': {error}\n",
        gdb.display()
    ));
    ExitStatus::Failure
}

/// `--debug-mode`: what the supervisor does before serving, for a process that then
/// serves the application itself: the server root, the error log, the listeners (HTTP,
/// and HTTPS with `--https-port`), the banner.
pub fn prepare_foreground(
    config: &Config,
) -> Result<(socket2::Socket, Option<socket2::Socket>), ExitStatus> {
    create_server_root(config)?;
    process::open_error_log(config);
    report_warnings(config, true);
    let listeners = listen::bind(config)
        .and_then(|http| Ok((http, listen::bind_https(config)?)))
        .map_err(|message| {
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
    Ok(listeners)
}

/// Daemon mode: serves HTTP (and HTTPS) on the listeners and accepts daemon threads on
/// the socket.
pub(super) fn start_frontend(
    config: &Config,
    (listener, https_listener, tls): (
        socket2::Socket,
        Option<socket2::Socket>,
        Option<Arc<frontend::TlsListener>>,
    ),
    unix_listener: std::os::unix::net::UnixListener,
    socket_path: PathBuf,
    event_tx: &mpsc::UnboundedSender<Event>,
) -> std::io::Result<DaemonSide> {
    let listener: std::net::TcpListener = listener.into();
    let https_listener: Option<std::net::TcpListener> = https_listener.map(Into::into);
    // One descriptor per extra reactor: each registers the same socket with its own epoll.
    let extra_listeners = (1..config.server.reactor_threads)
        .map(|_| {
            let https = https_listener
                .as_ref()
                .map(std::net::TcpListener::try_clone)
                .transpose()?;
            Ok((listener.try_clone()?, https))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let listener = frontend::Listener::from_std(listener, None)?;
    let https_listener = https_listener
        .map(|socket| frontend::Listener::from_std(socket, tls.clone()))
        .transpose()?;
    let unix_listener = tokio::net::UnixListener::from_std(unix_listener)?;
    let (pool_tx, mut pool_rx) = mpsc::unbounded_channel();
    let pool = Arc::new(
        DaemonPool::new(
            config.processes.queue_timeout,
            config.application.reload_entry,
            pool_tx,
        )
        .with_ignore_activity(config.processes.daemon_details.ignore_activity.clone()),
    );
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
    // Daemon mode: the pool watches the entry file (see `DaemonPool::forward`).
    let frontend_config = Arc::new(crate::frontend_setup::frontend_config(
        config,
        config.server.max_clients,
        None,
    ));
    let frontend_shutdown = Shutdown::new();
    let backend = if matches!(config.application.target, ApplicationTarget::Static(_)) {
        Backend::StaticOnly
    } else {
        Backend::Daemon(Arc::clone(&pool))
    };
    let extra_reactors = extra_listeners
        .into_iter()
        .enumerate()
        .map(|(index, listeners)| {
            start_extra_reactor(
                index + 1,
                listeners,
                tls.clone(),
                Arc::clone(&frontend_config),
                backend.clone(),
                frontend_shutdown.clone(),
            )
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    if let Some(telemetry) = config.server.operations.telemetry {
        let listener = bind_telemetry(telemetry.port)?;
        let dashboard = frontend::telemetry::Dashboard::new(Arc::clone(&pool), telemetry.interval);
        tokio::spawn(dashboard.serve(listener, frontend_shutdown.clone()));
    }
    let stopper = frontend_shutdown.clone();
    let done_tx = event_tx.clone();
    tokio::spawn(async move {
        serve_listeners(listener, https_listener, frontend_config, backend, stopper).await;
        // The others drain their own connections under the same stop.
        for reactor in extra_reactors {
            let _ = tokio::task::spawn_blocking(move || reactor.join()).await;
        }
        let _ = done_tx.send(Event::FrontendDone);
    });
    Ok(DaemonSide {
        pool,
        socket_path,
        frontend_shutdown,
        accept_shutdown,
        frontend_done: false,
        tls,
    })
}

/// The `--enable-telemetry` dashboard's listener, on loopback only.
fn bind_telemetry(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("--telemetry-ui-port {port}: cannot listen on 127.0.0.1:{port}: {error}"),
            )
        })?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Another front-end reactor (`--reactor-threads`): a thread with a tokio runtime of its
/// own, accepting on the same listening socket and handing requests to the same daemon
/// pool. The daemon connections stay registered with the supervisor's reactor, which
/// wakes this one's tasks when a daemon answers.
fn start_extra_reactor(
    index: usize,
    (listener, https_listener): (std::net::TcpListener, Option<std::net::TcpListener>),
    tls: Option<Arc<frontend::TlsListener>>,
    config: Arc<FrontendConfig>,
    backend: Backend,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ferrule-http-{index}"))
        .spawn(move || {
            let Ok(runtime) = process::new_runtime("HTTP") else {
                return;
            };
            runtime.block_on(async move {
                let listeners = frontend::Listener::from_std(listener, None).and_then(|http| {
                    let https = https_listener
                        .map(|socket| frontend::Listener::from_std(socket, tls))
                        .transpose()?;
                    Ok((http, https))
                });
                match listeners {
                    Ok((http, https)) => {
                        serve_listeners(http, https, config, backend, shutdown).await;
                    }
                    Err(error) => error_log::log(
                        Level::Error,
                        "ferrule",
                        &format!("front-end reactor {index} cannot use the listener: {error}"),
                    ),
                }
            });
        })
}

/// Serves the HTTP listener and, when there is one, the HTTPS listener, until the stop.
async fn serve_listeners(
    http: frontend::Listener,
    https: Option<frontend::Listener>,
    config: Arc<FrontendConfig>,
    backend: Backend,
    shutdown: Shutdown,
) {
    let serving_https = async {
        if let Some(https) = https {
            frontend::serve(
                https,
                Arc::clone(&config),
                backend.clone(),
                shutdown.clone(),
            )
            .await;
        }
    };
    tokio::join!(
        frontend::serve(http, Arc::clone(&config), backend.clone(), shutdown.clone()),
        serving_https
    );
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
    super::signals::process_exists(pid).then_some(pid)
}

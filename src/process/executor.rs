//! The WSGI executor of a process that runs the application (an embedded-mode server
//! process, a daemon process, the debug-mode process), started from the configuration.

use pyo3::prelude::*;

use crate::cli::{ApplicationTarget, Config, ExitStatus, OperatingMode};
use crate::logs::{Level, error_log};
use crate::wsgi::{
    AccessScripts, AppSource, AppSpec, DeveloperTools, Executor, InterruptSettings, ProcessFacts,
    StandardStreams,
};

/// What every process that runs the application does first, in either mode: leave
/// Ctrl-C to the supervisor, open the error log, set Python's switch interval, move to
/// the home directory, load the application and start its threads.
pub fn start_executor(py: Python<'_>, config: &Config) -> Result<Executor, ExitStatus> {
    let debug = config.processes.mode == OperatingMode::Debug;
    if !debug {
        // SAFETY: setting a signal disposition has no memory-safety preconditions. Ctrl-C
        // in a terminal reaches the whole process group; the supervisor decides how to stop.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
        super::open_error_log(config);
    }
    if let Some(seconds) = config.python_settings.switch_interval {
        let set = py
            .import("sys")
            .and_then(|sys| sys.call_method1("setswitchinterval", (seconds,)));
        if let Err(error) = set {
            error_log::log(
                Level::Error,
                "ferrule",
                &format!("--switch-interval {seconds}: {error}"),
            );
            return Err(ExitStatus::AppLoadFailed);
        }
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
        handler_scripts: config
            .server
            .site
            .handlers
            .iter()
            .map(|(_, script)| script.clone())
            .collect(),
        developer_tools: developer_tools(config),
    };
    let streams = if debug {
        StandardStreams::Terminal
    } else {
        StandardStreams::ErrorLog
    };
    Executor::start(
        py,
        &spec,
        process_facts(config),
        streams,
        access_scripts(config),
        interrupt_settings(config),
    )
    .map_err(|error| {
        error_log::log(Level::Error, "wsgi", &error.to_string());
        ExitStatus::AppLoadFailed
    })
}

/// The developer tools of debug mode that run in Python, when any is asked for.
pub fn developer_tools(config: &Config) -> Option<DeveloperTools> {
    let tools = &config.developer_tools;
    (debug_mode(config) && tools.in_python()).then(|| DeveloperTools {
        post_mortem: tools.post_mortem,
        debugger_startup: tools.debugger_startup,
        coverage_directory: tools.coverage_directory.clone(),
        profiler_directory: tools.profiler_directory.clone(),
        recorder_directory: tools.recorder_directory.clone(),
    })
}

fn debug_mode(config: &Config) -> bool {
    config.processes.mode == OperatingMode::Debug
}

/// `--request-timeout` with `--interrupt-timeout`: in daemon mode alone, as mod_wsgi
/// applies them (embedded mode has no request timeout).
fn interrupt_settings(config: &Config) -> Option<InterruptSettings> {
    let processes = &config.processes;
    if processes.mode != OperatingMode::Daemon {
        return None;
    }
    Some(InterruptSettings {
        request_timeout: processes.request_timeout?,
        interrupt_timeout: processes.daemon_details.interrupt_timeout?,
    })
}

/// The access-control scripts this process runs before the application.
fn access_scripts(config: &Config) -> AccessScripts {
    let access = &config.access;
    AccessScripts {
        host_access_script: access.host_access_script.clone(),
        user_script: access.user_script.as_ref().map(|user| user.script.clone()),
        group_script: access.group_script.clone(),
    }
}

/// The per-process facts the environ template is built from, for either mode.
fn process_facts(config: &Config) -> ProcessFacts {
    // mod_wsgi-express names its daemon process group after the host and port.
    let process_group = match config.processes.mode {
        OperatingMode::Embedded | OperatingMode::Debug => String::new(),
        OperatingMode::Daemon => {
            config
                .python_settings
                .process_group
                .clone()
                .unwrap_or_else(|| {
                    format!(
                        "{}:{}",
                        config.server.host.as_deref().unwrap_or("localhost"),
                        config.server.port
                    )
                })
        }
    };
    ProcessFacts {
        n_processes: config.processes.n_processes,
        n_threads: config.processes.n_threads,
        multiprocess: config.processes.multiprocess,
        // A daemon's parent is the supervisor, whose front end took the connection.
        server_pid: match config.processes.mode {
            OperatingMode::Daemon => std::os::unix::process::parent_id(),
            OperatingMode::Embedded | OperatingMode::Debug => std::process::id(),
        },
        // Apache's name for the address of the Listen directive mod_wsgi-express writes.
        listener_host: config.server.host.clone().unwrap_or_default(),
        process_group,
        application_group: String::new(),
        server_metrics: config.server.operations.server_metrics,
        slow_requests: config.server.operations.slow_requests,
        callable_object: config.application.callable_object.clone(),
        script_filename: match &config.application.target {
            ApplicationTarget::Module(name) => name.clone(),
            target => target
                .path()
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        script_name: config.server.site.mount_point.clone(),
        request_environ: config.application.request_environ.clone(),
        default_server_name: config.server.server_name.clone(),
        server_software: format!("ferrule/{}", env!("CARGO_PKG_VERSION")),
        document_root: config
            .server
            .site
            .document_root
            .clone()
            .unwrap_or_else(|| config.server.server_root.join("htdocs"))
            .to_string_lossy()
            .into_owned(),
    }
}

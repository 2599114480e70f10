//! One managed-service process (`--service-script NAME SCRIPT`): runs SCRIPT as
//! mod_wsgi-express runs a service's import script in its daemon process of one thread,
//! then stays until SIGTERM, so that the threads the script started keep running (a task
//! queue worker, a scheduler). The supervisor starts it (`FERRULE_SERVICE=NAME`), starts it
//! again when it dies, and stops it with the server.
//!
//! It has the processes' Python set-up (locale, warnings, egg cache, envvars script: from
//! the supervisor's environment; home directory and `--python-path` on `sys.path`), and
//! its `print()` goes to the error log, or to `--service-log-file`.

use pyo3::prelude::*;

use crate::cli::{Config, ExitStatus};
use crate::logs::{Level, error_log};
use crate::process;
use crate::wsgi::{AppSource, AppSpec};

/// Runs the service `name` of `config` until SIGTERM.
pub fn run(py: Python<'_>, config: &Config, name: &str) -> ExitStatus {
    let Some(service) = config.services.iter().find(|service| service.name == name) else {
        crate::logs::write_terminal(&format!(
            "ferrule: error: no --service-script named '{name}'\n"
        ));
        return ExitStatus::InternalError;
    };
    // SAFETY: setting a signal disposition has no memory-safety preconditions. Ctrl-C in a
    // terminal reaches the whole process group; the supervisor decides how to stop.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    match &service.log_file {
        Some(file) => {
            let mut own_log = config.clone();
            own_log.logs.error_log.clone_from(file);
            own_log.logs.log_to_terminal = false;
            process::open_error_log(&own_log);
        }
        None => process::open_error_log(config),
    }
    let application = &config.application;
    if let Err(error) = std::env::set_current_dir(&application.working_directory) {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "service '{name}': cannot change to --working-directory '{}': {error}",
                application.working_directory.display()
            ),
        );
        return ExitStatus::Failure;
    }
    let spec = AppSpec {
        source: AppSource::Script(service.script.clone()),
        callable_object: application.callable_object.clone(),
        home: application.working_directory.clone(),
        launch_directory: None,
        python_home_site: application.python_home_site.clone(),
        python_paths: application.python_paths.clone(),
        handler_scripts: Vec::new(),
        developer_tools: None,
    };
    error_log::log(
        Level::Info,
        "ferrule",
        &format!(
            "service '{name}' (pid {}) runs '{}'",
            std::process::id(),
            service.script.display()
        ),
    );
    if let Err(error) = crate::wsgi::run_service_script(py, &spec, &service.script) {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!("service '{name}' failed: {error}"),
        );
        return ExitStatus::Failure;
    }
    py.detach(wait_for_sigterm)
}

/// Waits, with Python free to run the script's threads, until the supervisor says stop.
fn wait_for_sigterm() -> ExitStatus {
    let runtime = match process::new_runtime("service's") {
        Ok(runtime) => runtime,
        Err(status) => return status,
    };
    let waited = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        terminate.recv().await;
        Ok::<(), std::io::Error>(())
    });
    match waited {
        Ok(()) => ExitStatus::Success,
        Err(error) => {
            error_log::log(
                Level::Crit,
                "ferrule",
                &format!("a service process cannot wait for SIGTERM: {error}"),
            );
            ExitStatus::InternalError
        }
    }
}

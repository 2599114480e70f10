//! The start-up summary mod_wsgi-express prints, with our values.

use crate::cli::{Config, OperatingMode};

/// The start-up summary mod_wsgi-express prints, with our values.
/// `control_script` is shown by `setup-server`, as mod_wsgi-express shows it.
pub(super) fn banner(config: &Config, control_script: Option<&std::path::Path>) -> String {
    let mut lines: Vec<(&str, String)> = vec![("Server URL", config.server_url())];
    if let Some(https_url) = config.https_url() {
        lines.push(("Server URL (HTTPS)", https_url));
    }
    lines.push((
        "Server Root",
        config.server.server_root.display().to_string(),
    ));
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
    let tools = &config.developer_tools;
    if let Some(path) = &tools.coverage_directory {
        lines.push((
            "Coverage Output",
            path.join("index.html").display().to_string(),
        ));
    }
    if let Some(path) = &tools.profiler_directory {
        lines.push(("Profiler Output", path.display().to_string()));
    }
    if let Some(path) = &tools.recorder_directory {
        lines.push(("Recorder Output", path.display().to_string()));
    }
    let processes = config.processes.n_processes;
    let threads = config.processes.n_threads;
    if let Some(path) = &config.python_settings.envvars_script {
        lines.push(("Environ Variables", path.display().to_string()));
    }
    if let Some(path) = control_script {
        lines.push(("Control Script", path.display().to_string()));
    }
    let mode = match config.processes.mode {
        OperatingMode::Embedded => "embedded",
        OperatingMode::Daemon => "daemon",
        OperatingMode::Debug => "debug",
    };
    lines.push(("Operating Mode", mode.to_owned()));
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
    if config.processes.mode == OperatingMode::Daemon {
        let processes = &config.processes;
        lines.push((
            "Request Timeout",
            format!(
                "{} (seconds)",
                processes
                    .request_timeout
                    .map_or(0, |timeout| timeout.as_secs())
            ),
        ));
        lines.push((
            "Startup Timeout",
            format!("{} (seconds)", processes.startup_timeout.as_secs()),
        ));
        lines.push((
            "Queue Backlog",
            format!("{} (connections)", processes.daemon_backlog),
        ));
        lines.push((
            "Queue Timeout",
            format!("{} (seconds)", processes.queue_timeout.as_secs()),
        ));
    }
    lines.push((
        "Server Backlog",
        format!("{} (connections)", config.server.server_backlog),
    ));
    lines.push((
        "Python Executable",
        config.python.executable.display().to_string(),
    ));
    lines.push(("Python Version", config.python.version.clone()));
    // Debug mode runs the application in this process, whose locale is the shell's.
    if config.processes.mode != OperatingMode::Debug {
        lines.push(("Locale Setting", config.python_settings.locale.clone()));
    }
    let mut text = String::new();
    for (label, value) in lines {
        text.push_str(&format!("{label:<19}: {value}\n"));
    }
    text
}

//! The `ferrule` command line: `start-server` with mod_wsgi-express's options, parsed and
//! validated into one [`Config`]. Nothing after this module reads raw arguments.
//!
//! `args` mirrors mod_wsgi-express (names, defaults, grouping) and checks single values;
//! `config` does the checks that need the file system and derives the rest.

mod access;
mod apache_only;
mod args;
mod config;
mod daemon_details;
mod developer_tools;
mod environment;
mod front_door_options;
mod gateways;
mod identity;
#[cfg(test)]
mod options_doc;
mod proxy_options;
mod python_settings;
mod services;

use clap::{CommandFactory, FromArgMatches};

pub use access::{AccessConfig, AuthScheme, UserAuthentication};
pub use apache_only::ApacheOnly;
pub use config::{
    Action, ApplicationConfig, ApplicationTarget, Config, ConfigError, LogConfig, OperatingMode,
    OperationsConfig, PipedLog, ProcessConfig, RotateLogsPipe, SERVER_STATUS_PATH, ServerConfig,
};
pub use daemon_details::DaemonDetails;
pub use developer_tools::DeveloperTools;
pub use environment::{
    CONTRACT_VARIABLES, CONTROL_SCRIPT_ENV, DAEMON_SOCKET_ENV, LISTENER_FD_ENV, PROCESS_INDEX_ENV,
    ProcessRole, SERVICE_ENV, TLS_LISTENER_FD_ENV, UNDER_GDB_ENV,
};
pub use front_door_options::HttpsConfig;
pub use gateways::GatewayConfig;
pub use identity::RunAs;
pub use python_settings::PythonSettings;
pub use services::Service;

/// Exit codes, distinct per kind of failure so scripts can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Success = 0,
    /// The server ran and failed: a process could not be started, a port was taken.
    Failure = 1,
    /// The command line was wrong: a bad value, a missing file, a refused option.
    UsageError = 2,
    /// The WSGI application could not be loaded; restarting would not help.
    AppLoadFailed = 3,
    /// A server process left because the application's code changed
    /// (`--reload-on-changes`); the supervisor starts a new one at once.
    CodeChanged = 4,
    /// A bug or an environment Ferrule cannot work in.
    InternalError = 70,
}

/// Facts about the Python interpreter Ferrule runs in, read once at start-up.
#[derive(Clone, Debug)]
pub struct PythonRuntime {
    /// `sys.executable`: server processes are started with it, so a virtualenv just works.
    pub executable: std::path::PathBuf,
    /// `sys.version` without the build details, for the banner.
    pub version: String,
    /// A free-threaded build (`sysconfig`'s `Py_GIL_DISABLED`).
    pub gil_disabled: bool,
}

impl PythonRuntime {
    /// "3.11" for Python 3.11.7.
    pub fn major_minor(&self) -> String {
        self.version
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Reads what this process is from the `FERRULE_*` variables; on a bad value, prints
/// every problem, each naming its variable, and returns the exit status instead.
pub fn read_environment() -> Result<ProcessRole, ExitStatus> {
    environment::read_role(|name| std::env::var_os(name)).map_err(|problems| {
        report(&problems);
        ExitStatus::UsageError
    })
}

/// Parses `argv` (without the program name) for a process of `role`. On `--help`,
/// `--version` or errors, prints what the user needs and returns the exit status instead.
pub fn parse(
    argv: Vec<String>,
    python: &PythonRuntime,
    role: &ProcessRole,
) -> Result<Config, ExitStatus> {
    let command = args::Cli::command();
    let matches =
        match command.try_get_matches_from(std::iter::once("ferrule".to_owned()).chain(argv)) {
            Ok(matches) => matches,
            Err(error) => {
                let _ = error.print();
                return Err(if error.use_stderr() {
                    ExitStatus::UsageError
                } else {
                    ExitStatus::Success
                });
            }
        };
    let cli = match args::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return Err(ExitStatus::UsageError);
        }
    };
    let (start_server, action) = match cli.command {
        args::Command::StartServer(options) => (options, Action::Serve),
        args::Command::SetupServer(options) => (options, Action::Setup),
        args::Command::ConfigTest(options) => (options, Action::ConfigTest),
    };
    match Config::from_args(start_server, action, python, role) {
        Ok(config) => Ok(config),
        Err(problems) => {
            report(&problems);
            Err(ExitStatus::UsageError)
        }
    }
}

/// Prints every problem at once, so a user fixes them in one go.
fn report(problems: &[impl std::fmt::Display]) {
    let mut text = String::new();
    for problem in problems {
        text.push_str(&format!("ferrule: error: {problem}\n"));
    }
    crate::logs::write_terminal(&text);
}

//! [`Config`]: the validated configuration, built once from the command line.
//!
//! `Config::from_args` checks what needs the file system (the script exists, directories
//! exist), derives values (absolute paths, the server root, the operating mode) and
//! reports every problem at once, each naming its option. Each subsystem gets its own part.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client_timeouts::{ClientTimeouts, ReadTimeout};

use super::PythonRuntime;
use super::access::{self, AccessArgs, AccessConfig};
use super::apache_only::{self, ApacheOnly};
use super::args::StartServerArgs;
use super::daemon_details::{self, DaemonDetails};
use super::developer_tools::{self, DeveloperTools};
use super::environment::ProcessRole;
use super::python_settings::{self, PythonSettings};
use super::services::{self, Service};
use crate::logs::Level;
use crate::logs::access_format::AccessFormat;
use crate::logs::error_format::ErrorFormat;

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `start-server`: write the server root and serve.
    Serve,
    /// `setup-server` or `--setup-only`: write the server root and its control script.
    Setup,
    /// The control script's `configtest`: validate and say so.
    ConfigTest,
}

/// Everything `start-server` was asked to do, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub action: Action,
    /// Started by the control script (`apachectl start`), which makes SIGWINCH a graceful
    /// stop, as for Apache; on a terminal a window resize must not stop the server.
    pub under_control_script: bool,
    pub server: ServerConfig,
    pub application: ApplicationConfig,
    pub processes: ProcessConfig,
    pub logs: LogConfig,
    pub python: PythonRuntime,
    /// Who may make requests: the host access and authentication scripts.
    pub access: AccessConfig,
    /// How Python is set up in the processes that run the application.
    pub python_settings: PythonSettings,
    /// What is left of the options that configure Apache (`--shell-executable`).
    pub apache_only: ApacheOnly,
    /// The developer tools of debug mode (`--enable-debugger`, ...).
    pub developer_tools: DeveloperTools,
    /// The managed services (`--service-script`); none run in debug mode.
    pub services: Vec<Service>,
    /// One line per option accepted and ignored, said at start-up.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to bind; `None` means every interface.
    pub host: Option<String>,
    pub port: u16,
    /// Directory for generated files and logs.
    pub server_root: PathBuf,
    /// Where the supervisor writes its pid (`--pid-file`).
    pub pid_file: PathBuf,
    /// The supervisor's process name (`--process-name`).
    pub process_name: Option<String>,
    pub server_backlog: u32,
    /// The client timeouts (`--header-timeout`, `--body-timeout`, `--keep-alive-timeout`,
    /// `--socket-timeout` and their companions).
    pub client_timeouts: ClientTimeouts,
    /// `--limit-request-body`; `None` when 0 (any size).
    pub limit_request_body: Option<u64>,
    /// `--request-buffer-size`: body bytes read before a thread takes the request.
    pub request_buffer_size: usize,
    /// `--response-buffer-size`, the default put in for 0.
    pub response_buffer_size: usize,
    /// `--max-clients` as mod_wsgi-express computes it (daemon mode only).
    pub max_clients: usize,
    /// `--reactor-threads`, the machine's choice put in for 0 (daemon mode only).
    pub reactor_threads: usize,
    /// The name the server answers to when a request has no Host header.
    pub server_name: String,
    /// `--url-alias` pairs (URL path, absolute file or directory).
    pub url_aliases: Vec<(String, PathBuf)>,
    /// `--application-type static`: the directory served as the whole site.
    pub static_site: Option<PathBuf>,
    /// `--document-root`, `--directory-index` and `--mount-point`.
    pub site: SiteConfig,
    /// `--with-php5` and `--with-cgi`.
    pub gateways: super::GatewayConfig,
    /// `--error-document` pairs: an error status (400 to 599) and a URL path.
    pub error_documents: Vec<(u16, String)>,
    /// `--error-override`.
    pub error_override: bool,
    /// `--http2`: HTTP/2 by ALPN on the HTTPS port, and h2c with prior knowledge on the
    /// plain one.
    pub http2: bool,
    /// `--https-port` and its certificate; `None` when HTTPS is not served.
    pub https: Option<super::HttpsConfig>,
    /// Virtual hosts, `--https-only`, `--hsts-policy`, client certificates, trusted
    /// proxies.
    pub front_door: crate::front_door::FrontDoor,
    /// `--proxy-mount-point`, `--proxy-virtual-host`, `--proxy-timeout`; `None` when
    /// nothing is proxied.
    pub proxy: Option<crate::proxy::Proxy>,
    /// `--health-check-path`, `--metrics-path` and `--server-status`.
    pub operations: OperationsConfig,
    /// `--systemd`: write a systemd unit beside the control script.
    pub systemd_unit: bool,
    /// `--compress-responses`.
    pub compress_responses: bool,
    /// `--map-head-to-get`.
    pub map_head_to_get: HeadToGet,
}

/// `--map-head-to-get`: when the application gets GET for a HEAD request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadToGet {
    Off,
    On,
    /// When an output stage needs the whole response: `--compress-responses`.
    Auto,
}

impl ServerConfig {
    /// Whether a HEAD request reaches the application as GET.
    pub fn maps_head_to_get(&self) -> bool {
        match self.map_head_to_get {
            HeadToGet::On => true,
            HeadToGet::Off => false,
            HeadToGet::Auto => self.compress_responses,
        }
    }
}

/// The URL paths the front end answers for the people and machines that run the server
/// (`frontend/operations.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationsConfig {
    /// `--health-check-path`: a URL path without query, starting with `/`.
    pub health_check_path: Option<String>,
    /// `--metrics-path`: the same shape.
    pub metrics_path: Option<String>,
    /// `--server-status`: `/server-status`, to loopback clients.
    pub server_status: bool,
    /// `--server-metrics`: `mod_wsgi.server_metrics()` answers (read by the executor).
    pub server_metrics: bool,
    /// `--slow-requests`; `None` when 0 (read by the executor).
    pub slow_requests: Option<Duration>,
    /// `--enable-telemetry`: the dashboard's port and sampling interval.
    pub telemetry: Option<TelemetryConfig>,
}

/// `--enable-telemetry`, `--telemetry-ui-port`, `--telemetry-interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// On 127.0.0.1 only.
    pub port: u16,
    pub interval: Duration,
}

/// The site around the application: `--document-root`, `--directory-index`,
/// `--mount-point` (the front end's `Site` is built from it).
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Absolute, with symbolic links resolved.
    pub document_root: Option<PathBuf>,
    pub directory_index: Option<String>,
    /// As `SCRIPT_NAME`: a leading slash, no trailing one, empty for `/`.
    pub mount_point: String,
    /// `--directory-listing`.
    pub directory_listing: bool,
    /// `--mime-types`, read: (extension in lower case, content type).
    pub mime_types: Vec<(String, String)>,
    /// `--add-handler`: (extension in lower case with its dot, absolute script path).
    pub handlers: Vec<(String, PathBuf)>,
}

/// What is served, by `--application-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplicationTarget {
    /// A WSGI script file, absolute.
    Script(PathBuf),
    /// A dotted module name, imported from `sys.path`.
    Module(String),
    /// A PasteDeploy configuration file, absolute.
    Paste(PathBuf),
    /// A directory of static files, absolute; no Python application.
    Static(PathBuf),
}

impl ApplicationTarget {
    /// The file or directory the target names, if any (modules are found at run time).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Script(path) | Self::Paste(path) | Self::Static(path) => Some(path),
            Self::Module(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApplicationConfig {
    pub target: ApplicationTarget,
    /// The callable's name: `--callable-object`, or what follows `:` in `pkg.wsgi:app`.
    pub callable_object: String,
    /// Reload when the entry file (script, module source, .ini) changes, before the
    /// next request (on unless `--disable-reloading` or `--debug-mode`).
    pub reload_entry: bool,
    /// `--reload-on-changes`: restart the processes when any imported file changes.
    pub reload_on_changes: bool,
    /// The home directory: absolute and with symbolic links resolved; the processes
    /// `chdir` here and search it for modules first.
    pub working_directory: PathBuf,
    /// `--python-home`'s site-packages directory.
    pub python_home_site: Option<PathBuf>,
    pub python_paths: Vec<PathBuf>,
    /// `--setenv` pairs, then the `--passenv` variables that are set (latin-1, one
    /// character per byte of the value): added to every request's environ.
    pub request_environ: Vec<(String, String)>,
}

/// Where the application runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatingMode {
    /// The server processes run the application themselves.
    Embedded,
    /// The application runs in daemon processes behind the supervisor's front end.
    Daemon,
    /// One process, one thread, in the foreground with the terminal attached (`--debug-mode`).
    Debug,
}

#[derive(Clone, Debug)]
pub struct ProcessConfig {
    pub mode: OperatingMode,
    pub n_processes: usize,
    pub n_threads: usize,
    /// `wsgi.multiprocess`: more than one process, or in daemon mode `--processes` given
    /// at all (mod_wsgi-express then passes `processes=N` to its daemon group, which
    /// mod_wsgi takes as multiprocess even for 1).
    pub multiprocess: bool,
    /// Started by root with `--user`/`--group` naming someone else: who to become.
    pub run_as: Option<super::RunAs>,
    pub shutdown_timeout: Duration,
    /// Requests after which a daemon process is replaced; 0 for never.
    pub maximum_requests: u64,
    /// How long a request may wait for a free daemon thread.
    pub queue_timeout: Duration,
    /// How long a request may run in a daemon before it gets 504 and the daemon is
    /// replaced; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// How long a new daemon may take to load the application.
    pub startup_timeout: Duration,
    /// Idle time after which a daemon that served requests is replaced; `None`: never.
    pub inactivity_timeout: Option<Duration>,
    /// How long a retiring daemon may take to finish its requests.
    pub graceful_timeout: Duration,
    /// The same, for a daemon replaced after a restart signal (`--eviction-timeout`);
    /// `None`: the graceful timeout.
    pub eviction_timeout: Option<Duration>,
    /// Lifetime after which a daemon is replaced; `None`: never.
    pub restart_interval: Option<Duration>,
    /// CPU seconds after which a daemon asks to be replaced; 0: no limit.
    pub cpu_time_limit: u64,
    /// Resident bytes above which a daemon asks to be replaced; 0: no limit.
    pub memory_limit: u64,
    pub daemon_backlog: u32,
    /// `--deadlock-timeout`, `--ignore-activity`, `--socket-prefix`, the socket buffers.
    pub daemon_details: DaemonDetails,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub level: Level,
    pub log_to_terminal: bool,
    /// The error log file; unused with `--log-to-terminal`.
    pub error_log: PathBuf,
    /// The access log file, when `--access-log` is on and the log goes to a file.
    pub access_log: Option<PathBuf>,
    /// Access logging is on.
    pub access_log_enabled: bool,
    /// Where start-up messages are copied, with `--startup-log`.
    pub startup_log: Option<PathBuf>,
    /// Size at which the log files are rotated natively (`--rotate-logs`,
    /// `--max-log-size`); `None` with a rotatelogs program.
    pub rotate_at: Option<u64>,
    /// `--error-log-format`; `None`: Apache's default shape.
    pub error_log_format: Option<ErrorFormat>,
    /// `--verbose-debugging`: each request's way through the server at level debug.
    pub verbose_debugging: bool,
    /// `--rotate-logs --rotatelogs-executable`: the program the logs are piped through.
    pub rotatelogs: Option<RotateLogsPipe>,
    /// What an access log line holds (`--access-log-format`).
    pub access_log_format: AccessFormat,
    /// Where the log files are (`--log-directory`, else the server root); the
    /// supervisor makes it when missing.
    pub log_directory: PathBuf,
}

/// The program that rotates the logs and what it reads.
#[derive(Clone, Debug)]
pub struct RotateLogsPipe {
    pub executable: PathBuf,
    pub max_log_size_mb: u64,
    pub logs: Vec<PipedLog>,
}

/// One log piped through the program: every process writes `fifo`; the program writes
/// `target.%Y-%m-%d-%H_%M_%S`.
#[derive(Clone, Debug)]
pub struct PipedLog {
    pub fifo: PathBuf,
    pub target: PathBuf,
}

/// A problem with the command line, naming the option and the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no WSGI script file given\nhint: ferrule start-server path/to/app.wsgi")]
    NoScript,
    #[error("no {what} given\nhint: give it as the argument or with --entry-point")]
    NoTarget { what: &'static str },
    #[error("the {what} '{path}' does not exist")]
    ScriptMissing { what: &'static str, path: PathBuf },
    #[error("the {what} '{path}' is not a regular file")]
    ScriptNotAFile { what: &'static str, path: PathBuf },
    #[error(
        "--directory-index '{name}' is not a file name\nhint: name a file looked for in each directory, such as index.html"
    )]
    BadDirectoryIndex { name: String },
    #[error(
        "--allow-override is not supported: .htaccess files are an Apache feature with no equivalent here\nhint: give the settings as ferrule options instead"
    )]
    AllowOverride,
    #[error("--error-document {status} '{url_path}': {reason}")]
    BadErrorDocument {
        status: String,
        url_path: String,
        reason: &'static str,
    },
    #[error("--{option} '{url_path}': {reason}")]
    BadOperationsPath {
        option: &'static str,
        url_path: String,
        reason: &'static str,
    },
    #[error("--{option} '{name}': an environ key must be a non-empty name without '='")]
    BadEnvironName { option: &'static str, name: String },
    #[error("--add-handler {extension} '{path}': {reason}")]
    BadHandler {
        extension: String,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("--add-handler: {reason}")]
    HandlerWithoutSite { reason: &'static str },
    #[error("--url-alias {url_path} '{path}': {reason}")]
    BadUrlAlias {
        url_path: String,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("the static files directory '{path}' is not an existing directory")]
    StaticNotADirectory { path: PathBuf },
    #[error(
        "'{target}' is not a module name (dotted Python identifiers, optionally :callable)\nhint: --application-type module takes a name such as mysite.wsgi or app:app"
    )]
    BadModuleName { target: String },
    #[error("--{option} '{path}' is not an existing directory")]
    NotADirectory { option: &'static str, path: PathBuf },
    #[error(
        "--python-home '{path}' is not a Python {version} installation or virtualenv (it has no lib/python{version}/site-packages)"
    )]
    NotAPythonHome { path: PathBuf, version: String },
    #[error("{message}")]
    Identity { message: String },
    #[error(
        "--user {user} / --group {group}: only a server started by root can run as another user\nhint: start ferrule as root, or leave out --user and --group"
    )]
    NeedsRoot { user: String, group: String },
    #[error(
        "the server root '{path}' {reason}\nhint: the control script (run by root) and the server's files live there: only the user starting the server may be able to change it; fix it or choose another --server-root"
    )]
    UnsafeServerRoot { path: PathBuf, reason: String },
    #[error("--{option} '{path}' is not an existing file")]
    NotAFile { option: &'static str, path: PathBuf },
    #[error("--{option} '{path}' is not an executable file")]
    NotAProgram { option: &'static str, path: PathBuf },
    #[error(
        "--with-php5 needs php-fpm, which is not on PATH nor in /usr/sbin\nhint: install it (Debian: apt-get install php-fpm) or name it with --php-executable"
    )]
    PhpFpmMissing,
    #[error("--auth-type '{value}' is not an authentication scheme\nhint: use Basic or Digest")]
    BadAuthType { value: String },
    #[error(
        "--auth-group-script needs --auth-user-script: groups are checked for an authenticated user"
    )]
    GroupWithoutUser,
    #[error(
        "{option} with --auth-user-script or --host-access-script is not supported yet: static files are served without Python, so the scripts would not protect them\nhint: serve those files from the application, or leave out the scripts"
    )]
    StaticFilesWithAccessScripts { option: &'static str },
    #[error("--access-log-format: {error}\nhint: docs/logs.md lists the directives ferrule writes")]
    AccessLogFormat {
        error: crate::logs::access_format::FormatError,
    },
    #[error("--error-log-format: {error}\nhint: docs/logs.md lists the directives ferrule writes")]
    ErrorLogFormat {
        error: crate::logs::error_format::ErrorFormatError,
    },
    #[error("--{option} cannot be used: {reason}\nhint: {instead}")]
    ApacheOnly {
        option: &'static str,
        reason: &'static str,
        instead: &'static str,
    },
    #[error("--{option} {name} {reason}")]
    Service {
        option: &'static str,
        name: String,
        reason: String,
    },
    #[error("--{option} '{path}' is not a URL path\nhint: a URL path starts with /")]
    NotAUrlPath { option: &'static str, path: String },
    #[error("--{option} '{program}' was not found, or is not executable\nhint: {hint}")]
    ProgramMissing {
        option: &'static str,
        program: PathBuf,
        hint: &'static str,
    },
    #[error("--{option} is not supported: {reason}\nhint: {instead}")]
    Refused {
        option: &'static str,
        reason: &'static str,
        instead: &'static str,
    },
    #[error("--{option} '{path}' is not an executable file")]
    NotAnExecutable { option: &'static str, path: PathBuf },
    #[error(
        "--application-group '{group}' is not supported: ferrule runs the application in the main interpreter of each process (%{{GLOBAL}}), one interpreter per process\nhint: leave the option out, or give %{{GLOBAL}}"
    )]
    NamedApplicationGroup { group: String },
    #[error(
        "--free-threading needs a free-threaded Python build, and Python {version} here has a GIL (sysconfig's Py_GIL_DISABLED is not set)\nhint: run ferrule with a free-threaded build such as python3.13t, or leave out the option"
    )]
    FreeThreadingNeedsBuild { version: String },
    #[error(
        "--envvars-script '{path}' {reason}, and root would run it\nhint: make it root's and writable by root alone, or choose another file"
    )]
    UnsafeEnvvarsScript { path: PathBuf, reason: String },
    #[error("--{option} must not be empty")]
    EmptyValue { option: &'static str },
    #[error(
        "--python-warnings '{spec}': {reason}\nhint: give a filter as python -W takes it, such as error::DeprecationWarning"
    )]
    BadWarningsSpec { spec: String, reason: &'static str },
    #[error("--locale '{name}' is not a locale this machine has\nhint: `locale -a` lists them")]
    UnknownLocale { name: String },
    #[error("{error}")]
    Tls { error: crate::tls::TlsError },
    #[error("{option} needs {needs}")]
    Needs {
        option: &'static str,
        needs: &'static str,
    },
    #[error("{first} and {second} disagree: {reason}")]
    Conflict {
        first: &'static str,
        second: &'static str,
        reason: &'static str,
    },
    #[error("{option} '{value}': {reason}")]
    BadValue {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot determine the current directory: {source}")]
    NoCurrentDirectory { source: std::io::Error },
}

impl Config {
    /// Validates `args`; on failure returns every problem found, not just the first.
    pub(super) fn from_args(
        args: StartServerArgs,
        action: Action,
        python: &PythonRuntime,
        role: &ProcessRole,
    ) -> Result<Self, Vec<ConfigError>> {
        // Destructured in full so that a new option cannot be silently ignored.
        let StartServerArgs {
            script,
            application_type,
            entry_point,
            url_aliases,
            document_root,
            directory_index,
            mount_point,
            error_documents,
            error_override,
            directory_listing,
            mime_types,
            setenv,
            passenv,
            add_handler,
            with_php5,
            php_executable,
            with_cgi,
            map_head_to_get,
            compress_responses,
            // Sendfile is always on where it can be.
            enable_sendfile: _,
            allow_override,
            disable_reloading,
            reload_on_changes,
            port,
            host,
            http2,
            https_port,
            ssl_port,
            ssl_certificate_file,
            ssl_certificate_key_file,
            ssl_certificate,
            ssl_ca_certificate_file,
            ssl_verify_client,
            ssl_certificate_chain_file,
            ssl_environment,
            https_only,
            hsts_policy,
            server_name,
            server_aliases,
            allow_localhost,
            trust_proxy_headers,
            trust_proxies,
            proxy_mount_points,
            proxy_url_aliases,
            proxy_virtual_hosts,
            proxy_timeout,
            processes,
            threads,
            embedded_mode,
            debug_mode,
            user,
            group,
            callable_object,
            working_directory,
            python_paths,
            python_home,
            server_root,
            shutdown_timeout,
            maximum_requests,
            queue_timeout,
            request_timeout,
            startup_timeout,
            inactivity_timeout,
            graceful_timeout,
            eviction_timeout,
            restart_interval,
            cpu_time_limit,
            memory_limit,
            daemon_backlog,
            header_timeout,
            header_max_timeout,
            header_min_rate,
            body_timeout,
            body_max_timeout,
            body_min_rate,
            keep_alive_timeout,
            socket_timeout,
            response_socket_timeout,
            server_backlog,
            limit_request_body,
            request_buffer_size,
            response_buffer_size,
            max_clients,
            reactor_threads,
            health_check_path,
            metrics_path,
            server_status,
            server_metrics,
            slow_requests,
            enable_telemetry,
            telemetry_ui_port,
            telemetry_interval,
            telemetry_service,
            telemetry_options,
            systemd,
            chunked_request: _,
            log_to_terminal,
            log_level,
            access_log,
            setup_only,
            process_name,
            pid_file,
            startup_log,
            log_directory,
            error_log_name,
            access_log_name,
            startup_log_name,
            access_log_format,
            rotate_logs,
            max_log_size,
            rotatelogs_executable,
            verbose_debugging,
            error_log_format,
            host_access_script,
            auth_user_script,
            auth_type,
            auth_group_script,
            auth_group,
            auth_nonce_lifetime,
            apache_only,
            python_settings,
            developer_tools,
            daemon_details,
            services,
        } = args;
        let action = if setup_only && action == Action::Serve {
            Action::Setup
        } else {
            action
        };
        let mut problems = Vec::new();
        let current_directory = match std::env::current_dir() {
            Ok(directory) => directory,
            Err(source) => return Err(vec![ConfigError::NoCurrentDirectory { source }]),
        };
        let absolute = |path: &Path| current_directory.join(path);

        let (target, callable_object) = application_target(
            &mut problems,
            &application_type,
            entry_point.or(script),
            callable_object,
            &absolute,
        );
        let url_aliases: Vec<(String, PathBuf)> = url_aliases
            .chunks(2)
            .filter_map(|pair| match pair {
                [url_path, path] => Some((url_path.clone(), absolute(Path::new(path)))),
                _ => None,
            })
            .collect();
        for (url_path, path) in &url_aliases {
            if !url_path.starts_with('/') {
                problems.push(ConfigError::BadUrlAlias {
                    url_path: url_path.clone(),
                    path: path.clone(),
                    reason: "the URL path must start with /",
                });
            } else if !path.exists() {
                problems.push(ConfigError::BadUrlAlias {
                    url_path: url_path.clone(),
                    path: path.clone(),
                    reason: "the file or directory does not exist",
                });
            }
        }
        let access = access::resolve(
            &mut problems,
            AccessArgs {
                host_access_script,
                auth_user_script,
                auth_type,
                auth_group_script,
                auth_group,
                auth_nonce_lifetime,
            },
            host.as_deref(),
            port,
            &absolute,
        );
        let (front_door, https) = super::front_door_options::resolve(
            &mut problems,
            super::front_door_options::FrontDoorArgs {
                https_port,
                ssl_port,
                ssl_certificate_file,
                ssl_certificate_key_file,
                ssl_certificate,
                ssl_ca_certificate_file,
                ssl_verify_client,
                ssl_certificate_chain_file,
                ssl_environment,
                https_only,
                hsts_policy,
                server_name,
                server_aliases,
                allow_localhost,
                trust_proxy_headers,
                trust_proxies,
            },
            port,
            &absolute,
            // Only the process the user started checks the certificate files: a daemon
            // process never serves TLS, and with --user may not read the key at all.
            matches!(role, ProcessRole::Supervisor { .. }),
        );
        // A request without Host is named after --server-name, else --host.
        let default_server_name = front_door
            .virtual_host
            .as_ref()
            .map(|virtual_host| virtual_host.server_name.clone())
            .or_else(|| host.clone())
            .unwrap_or_else(|| "localhost".to_owned());
        let proxy = super::proxy_options::resolve(
            &mut problems,
            super::proxy_options::ProxyArgs {
                mount_points: proxy_mount_points,
                url_aliases: proxy_url_aliases,
                virtual_hosts: proxy_virtual_hosts,
                timeout: proxy_timeout,
                socket_timeout,
            },
            &default_server_name,
        );
        if proxy.is_some() && access.is_enabled() {
            // The scripts run in the processes that run the application, which a proxied
            // request never reaches: it would pass unchecked.
            problems.push(ConfigError::Conflict {
                first: "--proxy-mount-point/--proxy-virtual-host",
                second: "--host-access-script/--auth-user-script",
                reason: "proxied requests would not be checked by the access-control scripts, which run in the application's processes",
            });
        }
        let error_documents = error_documents_of(&mut problems, &error_documents);
        let operations = operations_of(
            &mut problems,
            OperationsConfig {
                health_check_path,
                metrics_path,
                server_status,
                server_metrics,
                slow_requests: Duration::try_from_secs_f64(slow_requests)
                    .ok()
                    .filter(|threshold| !threshold.is_zero()),
                telemetry: enable_telemetry.then(|| TelemetryConfig {
                    port: telemetry_ui_port,
                    interval: Duration::from_secs_f64(telemetry_interval),
                }),
            },
        );
        refuse_telemetry_service(
            &mut problems,
            telemetry_service.as_deref(),
            &telemetry_options,
        );
        if enable_telemetry && (embedded_mode || debug_mode) {
            problems.push(ConfigError::Conflict {
                first: "--enable-telemetry",
                second: if debug_mode { "--debug-mode" } else { "--embedded-mode" },
                reason: "the dashboard is drawn by the daemon-mode front end, which sees every request and daemon process; each embedded process counts only its own",
            });
        }
        let request_environ = request_environ(&mut problems, &setenv, &passenv);
        if !allow_override.is_empty() {
            problems.push(ConfigError::AllowOverride);
        }
        let mut site = site(
            &mut problems,
            document_root.map(|path| absolute(&path)),
            directory_index,
            &mount_point,
        );
        site.directory_listing = directory_listing;
        site.handlers = handlers_of(&mut problems, &add_handler, &absolute);
        if !site.handlers.is_empty() {
            if site.document_root.is_none() {
                problems.push(ConfigError::HandlerWithoutSite {
                    reason: "it serves files of the document root; give --document-root",
                });
            } else if matches!(target, ApplicationTarget::Static(_)) {
                problems.push(ConfigError::HandlerWithoutSite {
                    reason: "a static site runs no Python to call the handler script in",
                });
            }
        }
        let gateways = super::gateways::gateways_of(
            &mut problems,
            with_php5,
            php_executable.map(|path| absolute(&path)),
            with_cgi,
            site.document_root.as_deref(),
        );
        if let Some(path) = mime_types.map(|path| absolute(&path)) {
            match fs_err::read_to_string(&path) {
                Ok(text) => site.mime_types = parse_mime_types(&text),
                Err(_) => problems.push(ConfigError::NotAFile {
                    option: "mime-types",
                    path,
                }),
            }
        }
        let static_site = match &target {
            ApplicationTarget::Static(directory) => Some(directory.clone()),
            _ => None,
        };
        if access.is_enabled()
            && (!url_aliases.is_empty() || site.document_root.is_some() || static_site.is_some())
        {
            problems.push(ConfigError::StaticFilesWithAccessScripts {
                option: if matches!(target, ApplicationTarget::Static(_)) {
                    "--application-type static"
                } else if site.document_root.is_some() {
                    "--document-root"
                } else {
                    "--url-alias"
                },
            });
        }
        let working_directory =
            working_directory.map_or_else(|| current_directory.clone(), |path| absolute(&path));
        require_directory(&mut problems, "working-directory", &working_directory);
        // The real path, so that sys.path names the directory itself (mod_wsgi 4.3.0).
        let working_directory =
            fs_err::canonicalize(&working_directory).unwrap_or(working_directory);
        let python_paths: Vec<PathBuf> = python_paths.iter().map(|path| absolute(path)).collect();
        for path in &python_paths {
            require_directory(&mut problems, "python-path", path);
        }
        let python_home_site = python_home.map(|home| {
            let home = absolute(&home);
            let site_packages = home
                .join("lib")
                .join(format!("python{}", python.major_minor()))
                .join("site-packages");
            if !site_packages.is_dir() {
                problems.push(ConfigError::NotAPythonHome {
                    path: home,
                    version: python.major_minor(),
                });
            }
            site_packages
        });

        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let run_as = if user.is_some() || group.is_some() {
            let user = user.unwrap_or_else(super::identity::current_user);
            match super::identity::resolve(&user, group.as_deref()) {
                Ok(run_as) if run_as.uid == uid && run_as.gid == current_gid() => None,
                Ok(run_as) if uid != 0 => {
                    problems.push(ConfigError::NeedsRoot {
                        user: run_as.user,
                        group: run_as.group,
                    });
                    None
                }
                Ok(run_as) => Some(run_as),
                Err(message) => {
                    problems.push(ConfigError::Identity { message });
                    None
                }
            }
        } else {
            None
        };
        let server_root = server_root.map_or_else(
            || {
                let tmpdir = std::env::var("TMPDIR").ok();
                default_server_root(tmpdir.as_deref(), host.as_deref(), port, uid)
            },
            |path| absolute(&path),
        );
        let (apache_only, mut warnings) =
            apache_only::resolve(&mut problems, apache_only, &absolute);
        let (tools_want_debug_mode, developer_tools) = developer_tools::resolve(
            &mut problems,
            &mut warnings,
            developer_tools,
            &server_root,
            &absolute,
        );
        let daemon_details = daemon_details::resolve(
            &mut problems,
            &mut warnings,
            daemon_details,
            port,
            &absolute,
        );
        // Each developer tool runs in debug mode, and asks for it (as in mod_wsgi-express).
        let debug_mode = debug_mode || tools_want_debug_mode;
        let python_settings = python_settings::resolve(
            &mut problems,
            python_settings,
            python,
            &server_root,
            &absolute,
        );
        // Only the supervisor answers to the control script's signals, and checks the
        // server root: the processes it starts (with --user, no longer its owner) trust it.
        let under_control_script = match role {
            ProcessRole::Supervisor {
                under_control_script,
                ..
            } => {
                check_server_root(&mut problems, &server_root);
                *under_control_script
            }
            ProcessRole::EmbeddedServer { .. }
            | ProcessRole::Daemon { .. }
            | ProcessRole::Service { .. } => false,
        };
        let level = log_level.parse::<Level>().unwrap_or(Level::Warn);
        let n_processes = if debug_mode {
            1
        } else {
            processes.map_or(1, |count| count as usize)
        };
        let threads = if debug_mode { 1 } else { threads };
        // An explicit --log-directory wins over --log-to-terminal (mod_wsgi-express's
        // rule); debug mode keeps the terminal all the same, for pdb.
        let log_to_terminal = (log_to_terminal && log_directory.is_none()) || debug_mode;
        let log_directory =
            log_directory.map_or_else(|| server_root.clone(), |path| absolute(&path));
        let identity = services::ServerIdentity {
            user: run_as
                .as_ref()
                .map_or_else(super::identity::current_user, |run_as| run_as.user.clone()),
            group: run_as.as_ref().map_or_else(
                || super::identity::group_name(current_gid()),
                |run_as| run_as.group.clone(),
            ),
        };
        let services = services::resolve(
            &mut problems,
            services,
            &identity,
            &log_directory,
            &absolute,
        );
        let error_log_format = error_log_format.and_then(|format| {
            ErrorFormat::parse(&format)
                .map_err(|error| problems.push(ConfigError::ErrorLogFormat { error }))
                .ok()
        });
        let access_log_format =
            match AccessFormat::parse(access_log_format.as_deref().unwrap_or("common")) {
                Ok(format) => format,
                Err(error) => {
                    problems.push(ConfigError::AccessLogFormat { error });
                    AccessFormat::parse("common").unwrap_or_else(|_| unreachable!("common parses"))
                }
            };

        if !problems.is_empty() {
            return Err(problems);
        }
        // --rotatelogs-executable: the logs are FIFOs in the server root that the program
        // reads (supervisor/piped_logs.rs); every process opens them by those names.
        // mod_wsgi-express: logging to the terminal turns rotation off.
        let rotate_logs = rotate_logs && !log_to_terminal;
        let mut error_log = log_directory.join(&error_log_name);
        let mut access_log_path =
            (access_log && !log_to_terminal).then(|| log_directory.join(&access_log_name));
        let piped = match rotatelogs_executable {
            Some(executable) if rotate_logs => {
                let mut logs = vec![PipedLog {
                    fifo: server_root.join(format!("{error_log_name}.fifo")),
                    target: error_log.clone(),
                }];
                error_log.clone_from(&logs[0].fifo);
                if let Some(path) = &mut access_log_path {
                    let fifo = server_root.join(format!("{access_log_name}.fifo"));
                    logs.push(PipedLog {
                        fifo: fifo.clone(),
                        target: std::mem::replace(path, fifo),
                    });
                }
                Some(RotateLogsPipe {
                    executable: absolute(&executable),
                    max_log_size_mb: max_log_size,
                    logs,
                })
            }
            _ => None,
        };
        let logs = LogConfig {
            level,
            log_to_terminal,
            error_log,
            access_log: access_log_path,
            access_log_enabled: access_log,
            access_log_format,
            rotate_at: (rotate_logs && piped.is_none())
                .then(|| max_log_size.saturating_mul(1024 * 1024)),
            rotatelogs: piped,
            verbose_debugging,
            error_log_format,
            startup_log: startup_log.then(|| log_directory.join(&startup_log_name)),
            log_directory,
        };
        Ok(Self {
            action,
            under_control_script,
            server: ServerConfig {
                http2,
                https,
                front_door,
                proxy,
                url_aliases,
                static_site,
                site,
                gateways,
                error_documents,
                error_override,
                operations,
                systemd_unit: systemd,
                compress_responses,
                map_head_to_get: match map_head_to_get.to_ascii_lowercase().as_str() {
                    "on" => HeadToGet::On,
                    "off" => HeadToGet::Off,
                    _ => HeadToGet::Auto,
                },
                process_name,
                pid_file: pid_file
                    .map_or_else(|| server_root.join("httpd.pid"), |path| absolute(&path)),
                server_name: default_server_name,
                host,
                port,
                server_root,
                server_backlog,
                client_timeouts: ClientTimeouts {
                    header: read_timeout(header_timeout, header_max_timeout, header_min_rate),
                    body: read_timeout(body_timeout, body_max_timeout, body_min_rate),
                    keep_alive: seconds_unless_zero(keep_alive_timeout),
                    write: seconds_unless_zero(if response_socket_timeout > 0 {
                        response_socket_timeout
                    } else {
                        socket_timeout
                    }),
                },
                limit_request_body: (limit_request_body > 0).then_some(limit_request_body),
                request_buffer_size: usize::try_from(request_buffer_size).unwrap_or(usize::MAX),
                max_clients: max_clients_for(max_clients, n_processes, threads),
                reactor_threads: reactor_threads_for(reactor_threads),
                response_buffer_size: usize::try_from(if response_buffer_size > 0 {
                    response_buffer_size
                } else {
                    super::args::DEFAULT_RESPONSE_BUFFER_SIZE
                })
                .unwrap_or(usize::MAX),
            },
            application: ApplicationConfig {
                reload_entry: !disable_reloading && !debug_mode,
                reload_on_changes: reload_on_changes && !disable_reloading && !debug_mode,
                target,
                callable_object,
                working_directory,
                python_home_site,
                python_paths,
                request_environ,
            },
            processes: ProcessConfig {
                mode: if debug_mode {
                    OperatingMode::Debug
                } else if embedded_mode {
                    OperatingMode::Embedded
                } else {
                    OperatingMode::Daemon
                },
                n_processes,
                n_threads: threads,
                multiprocess: n_processes > 1
                    || (processes.is_some() && !embedded_mode && !debug_mode),
                run_as,
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
                maximum_requests,
                queue_timeout: Duration::from_secs(queue_timeout),
                request_timeout: (request_timeout > 0)
                    .then(|| Duration::from_secs(request_timeout)),
                startup_timeout: Duration::from_secs(startup_timeout),
                inactivity_timeout: (inactivity_timeout > 0)
                    .then(|| Duration::from_secs(inactivity_timeout)),
                graceful_timeout: Duration::from_secs(graceful_timeout),
                eviction_timeout: (eviction_timeout > 0)
                    .then(|| Duration::from_secs(eviction_timeout)),
                restart_interval: (restart_interval > 0)
                    .then(|| Duration::from_secs(restart_interval)),
                cpu_time_limit,
                memory_limit,
                daemon_backlog,
                daemon_details,
            },
            logs,
            python: python.clone(),
            access,
            python_settings,
            apache_only,
            developer_tools,
            services,
            warnings,
        })
    }

    /// The URL the banner shows: `http://localhost:8000/` (named after `--server-name`
    /// when given, as mod_wsgi-express does).
    pub fn server_url(&self) -> String {
        url("http", self.banner_host(), self.server.port, 80)
    }

    /// The HTTPS URL the banner shows, when HTTPS is served.
    pub fn https_url(&self) -> Option<String> {
        let https = self.server.https.as_ref()?;
        Some(url("https", self.banner_host(), https.port, 443))
    }

    fn banner_host(&self) -> &str {
        self.server
            .front_door
            .virtual_host
            .as_ref()
            .map(|virtual_host| virtual_host.server_name.as_str())
            .or(self.server.host.as_deref())
            .unwrap_or("localhost")
    }
}

fn url(scheme: &str, host: &str, port: u16, default_port: u16) -> String {
    if port == default_port {
        format!("{scheme}://{host}/")
    } else {
        format!("{scheme}://{host}:{port}/")
    }
}

/// Reads TARGET by `--application-type`; for modules, splits off `:callable`.
fn application_target(
    problems: &mut Vec<ConfigError>,
    application_type: &str,
    target: Option<String>,
    callable_object: String,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> (ApplicationTarget, String) {
    let what = if application_type == "paste" {
        "PasteDeploy configuration file"
    } else {
        "WSGI script file"
    };
    let Some(target) = target else {
        problems.push(match application_type {
            "script" => ConfigError::NoScript,
            "module" => ConfigError::NoTarget {
                what: "module name",
            },
            "static" => ConfigError::NoTarget {
                what: "static files directory",
            },
            _ => ConfigError::NoTarget { what },
        });
        return (ApplicationTarget::Module(String::new()), callable_object);
    };
    match application_type {
        "module" => {
            let (module, callable) = match target.split_once(':') {
                Some((module, callable)) => (module.to_owned(), callable.to_owned()),
                None => (target.clone(), callable_object),
            };
            let dotted_identifiers = |text: &str| {
                !text.is_empty()
                    && text.split('.').all(|part| {
                        part.chars()
                            .next()
                            .is_some_and(|first| first == '_' || first.is_alphabetic())
                            && part.chars().all(|c| c == '_' || c.is_alphanumeric())
                    })
            };
            if !dotted_identifiers(&module) || !dotted_identifiers(&callable) {
                problems.push(ConfigError::BadModuleName { target });
            }
            (ApplicationTarget::Module(module), callable)
        }
        "static" => {
            let directory = absolute(Path::new(&target));
            if !directory.is_dir() {
                problems.push(ConfigError::StaticNotADirectory {
                    path: directory.clone(),
                });
            }
            (ApplicationTarget::Static(directory), callable_object)
        }
        _ => {
            let path = absolute(Path::new(&target));
            match fs_err::metadata(&path) {
                Err(_) => problems.push(ConfigError::ScriptMissing {
                    what,
                    path: path.clone(),
                }),
                Ok(metadata) if !metadata.is_file() => {
                    problems.push(ConfigError::ScriptNotAFile {
                        what,
                        path: path.clone(),
                    });
                }
                Ok(_) => {}
            }
            let target = if application_type == "paste" {
                ApplicationTarget::Paste(path)
            } else {
                ApplicationTarget::Script(path)
            };
            (target, callable_object)
        }
    }
}

fn current_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

fn require_directory(problems: &mut Vec<ConfigError>, option: &'static str, path: &Path) {
    if !path.is_dir() {
        problems.push(ConfigError::NotADirectory {
            option,
            path: path.to_owned(),
        });
    }
}

/// Refuses a server root that anyone but the user starting the server could change: the
/// control script there is run by root (`apachectl start`) and sources `envvars`, and the
/// server writes its pid file, logs and daemon socket there. So the server root, if it
/// exists, must be a directory of ours that only we (and our own group) can write, with
/// an `envvars` to match; and no folder above it may let someone else rename it away
/// (owned by us or root; writable by others only with the sticky bit, as /tmp is).
fn check_server_root(problems: &mut Vec<ConfigError>, server_root: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut refuse = |reason: String| {
        problems.push(ConfigError::UnsafeServerRoot {
            path: server_root.to_owned(),
            reason,
        });
    };
    let writable_by_others = |metadata: &std::fs::Metadata| {
        metadata.mode() & 0o002 != 0 || (metadata.mode() & 0o020 != 0 && metadata.gid() != gid)
    };
    // The nearest folder that exists: the server root itself, or where it will be made.
    let Some(existing) = server_root.ancestors().find(|path| path.exists()) else {
        return;
    };
    let Ok(real) = fs_err::canonicalize(existing) else {
        return;
    };
    let mut above = vec![existing, real.as_path()];
    if existing == server_root {
        let Ok(metadata) = fs_err::metadata(&real) else {
            return;
        };
        if !metadata.is_dir() {
            refuse("is not a directory".to_owned());
            return;
        }
        if metadata.uid() != uid {
            refuse(format!(
                "belongs to user {} (uid {}), not to {} (uid {uid}) who starts the server",
                super::identity::user_name(metadata.uid()),
                metadata.uid(),
                super::identity::user_name(uid),
            ));
        } else if writable_by_others(&metadata) {
            refuse(format!(
                "can be written by others (mode {:04o})",
                metadata.mode() & 0o7777
            ));
        }
        let envvars = real.join("envvars");
        if let Ok(metadata) = fs_err::metadata(&envvars) {
            if metadata.uid() != uid || writable_by_others(&metadata) {
                refuse(format!(
                    "holds '{}', which the control script sources, and which someone else can change (owner uid {}, mode {:04o})",
                    envvars.display(),
                    metadata.uid(),
                    metadata.mode() & 0o7777
                ));
            }
        }
        above = [existing.parent(), real.parent()]
            .into_iter()
            .flatten()
            .collect();
        if existing != real {
            // A symbolic link: checked like the folders above.
            above.push(existing);
        }
    }
    // Both the path as given and the real one: a symbolic link on the way is only as
    // trustworthy as its owner.
    let mut seen = std::collections::HashSet::new();
    for folder in above.into_iter().flat_map(Path::ancestors) {
        if !seen.insert(folder) {
            continue;
        }
        let Ok(metadata) = fs_err::symlink_metadata(folder) else {
            continue;
        };
        if metadata.uid() != uid && metadata.uid() != 0 {
            refuse(format!(
                "is inside '{}', which belongs to user {} (uid {})",
                folder.display(),
                super::identity::user_name(metadata.uid()),
                metadata.uid()
            ));
        } else if metadata.is_dir()
            && writable_by_others(&metadata)
            && metadata.mode() & 0o1000 == 0
        {
            refuse(format!(
                "is inside '{}', which others can write (mode {:04o}, without the sticky bit)",
                folder.display(),
                metadata.mode() & 0o7777
            ));
        }
    }
}

/// mod_wsgi-express's `$TMPDIR/mod_wsgi-HOST:PORT:UID` (`/tmp` without TMPDIR), with our
/// own name so that both servers can run side by side.
fn default_server_root(tmpdir: Option<&str>, host: Option<&str>, port: u16, uid: u32) -> PathBuf {
    let tmpdir = match tmpdir.map(|directory| directory.trim_end_matches('/')) {
        None | Some("") => "/tmp",
        Some(directory) => directory,
    };
    PathBuf::from(format!(
        "{tmpdir}/ferrule-{}:{port}:{uid}",
        host.unwrap_or("localhost")
    ))
}

/// `Some(seconds)`, or `None` for 0 (mod_wsgi-express's "off").
fn seconds_unless_zero(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// One of `mod_reqtimeout`'s rules as mod_wsgi-express writes it from three options: none
/// when the timeout is 0; the maximum and the rate only when above 0.
fn read_timeout(timeout: u64, max_timeout: u64, min_rate: u64) -> Option<ReadTimeout> {
    Some(ReadTimeout {
        base: seconds_unless_zero(timeout)?,
        max: seconds_unless_zero(max_timeout),
        min_rate: (min_rate > 0).then_some(min_rate),
    })
}

/// `--reactor-threads`: as given, or one per two CPUs (at least one) for 0.
/// Checks the operations paths: each an absolute URL path with no query or fragment, and
/// no two the same (`/server-status` included when it is on).
fn operations_of(
    problems: &mut Vec<ConfigError>,
    operations: OperationsConfig,
) -> OperationsConfig {
    let mut seen: Vec<&str> = Vec::new();
    if operations.server_status {
        seen.push(SERVER_STATUS_PATH);
    }
    for (option, path) in [
        ("health-check-path", &operations.health_check_path),
        ("metrics-path", &operations.metrics_path),
    ] {
        let Some(path) = path else { continue };
        let reason = if !path.starts_with('/') {
            Some("the URL path must start with /")
        } else if path.contains(['?', '#']) || path.bytes().any(|byte| byte <= b' ' || byte == 0x7f)
        {
            Some("the URL path must not hold a query, a fragment, spaces or control characters")
        } else if seen.contains(&path.as_str()) {
            Some(
                "another operations path (--health-check-path, --metrics-path, --server-status) is the same",
            )
        } else {
            None
        };
        match reason {
            Some(reason) => problems.push(ConfigError::BadOperationsPath {
                option,
                url_path: path.clone(),
                reason,
            }),
            None => seen.push(path),
        }
    }
    operations
}

/// `--telemetry-service` and `--telemetry-options`: mod_wsgi's datagrams are a binary
/// type-length-value encoding that its documentation describes by content, not by bytes
/// (the tags and layout are only in its C source and its ingester), so they are refused
/// rather than guessed.
fn refuse_telemetry_service(
    problems: &mut Vec<ConfigError>,
    service: Option<&str>,
    options: &[String],
) {
    const REASON: &str = "mod_wsgi's telemetry datagrams have no documented byte format (only their content is described; the encoding is defined by mod_wsgi's source), so ferrule does not send them";
    const INSTEAD: &str = "use --enable-telemetry for the dashboard, --metrics-path for Prometheus, or --slow-requests for slow requests";
    if service.is_some() {
        problems.push(ConfigError::Refused {
            option: "telemetry-service",
            reason: REASON,
            instead: INSTEAD,
        });
    }
    if !options.is_empty() {
        problems.push(ConfigError::Refused {
            option: "telemetry-options",
            reason: "it chooses fields of the --telemetry-service datagrams, which ferrule does not send",
            instead: INSTEAD,
        });
    }
}

/// Where `--server-status` serves Apache's status page (mod_wsgi-express's `<Location>`).
pub const SERVER_STATUS_PATH: &str = "/server-status";

fn reactor_threads_for(given: u64) -> usize {
    if given > 0 {
        return usize::try_from(given).unwrap_or(usize::MAX);
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cpus / 2).max(1)
}

/// mod_wsgi-express's `--max-clients`: at least processes x threads; by default
/// 10 + max(10, 1.5 x processes x threads).
fn max_clients_for(given: Option<u64>, n_processes: usize, n_threads: usize) -> usize {
    let threads = n_processes.saturating_mul(n_threads);
    match given {
        Some(given) => usize::try_from(given).unwrap_or(usize::MAX).max(threads),
        None => 10 + (threads.saturating_mul(3) / 2).max(10),
    }
}

/// Apache's mime.types format: a content type, then the extensions that have it; `#`
/// starts a comment.
fn parse_mime_types(text: &str) -> Vec<(String, String)> {
    let mut types = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(content_type) = words.next() else {
            continue;
        };
        for extension in words {
            types.push((extension.to_ascii_lowercase(), content_type.to_owned()));
        }
    }
    types
}

/// `--error-document STATUS URL-PATH` pairs, each checked: Apache takes an error status,
/// and a local URL path (Ferrule does not take its full URLs or quoted messages).
fn error_documents_of(problems: &mut Vec<ConfigError>, values: &[String]) -> Vec<(u16, String)> {
    values
        .chunks(2)
        .filter_map(|pair| {
            let [status, url_path] = pair else {
                return None;
            };
            let problem = |reason| ConfigError::BadErrorDocument {
                status: status.clone(),
                url_path: url_path.clone(),
                reason,
            };
            let Some(code) = status
                .parse::<u16>()
                .ok()
                .filter(|code| (400..=599).contains(code))
            else {
                problems.push(problem("the status must be an error (400 to 599)"));
                return None;
            };
            if !url_path.starts_with('/') || url_path.parse::<http::Uri>().is_err() {
                problems.push(problem("the URL path must start with /"));
                return None;
            }
            Some((code, url_path.clone()))
        })
        .collect()
}

/// The site around the application, as mod_wsgi-express reads its options: the mount
/// point gains a leading slash (and here loses a trailing one, as `SCRIPT_NAME` has none).
/// `--setenv` and `--passenv` as the environ keys they add, in the order given: Apache's
/// `SetEnv` and `PassEnv`, whose variables mod_wsgi copies into each request's environ.
/// A `--passenv` variable missing from the server's environment is left out, as Apache
/// leaves it out.
fn request_environ(
    problems: &mut Vec<ConfigError>,
    setenv: &[String],
    passenv: &[String],
) -> Vec<(String, String)> {
    let well_formed = |name: &str| !name.is_empty() && !name.contains(['=', '\0']);
    let mut environ = Vec::new();
    for pair in setenv.chunks(2) {
        if let [name, value] = pair {
            if well_formed(name) {
                environ.push((name.clone(), latin1(value.as_bytes())));
            } else {
                problems.push(ConfigError::BadEnvironName {
                    option: "setenv",
                    name: name.clone(),
                });
            }
        }
    }
    for name in passenv {
        if !well_formed(name) {
            problems.push(ConfigError::BadEnvironName {
                option: "passenv",
                name: name.clone(),
            });
            continue;
        }
        if let Some(value) = std::env::var_os(name) {
            use std::os::unix::ffi::OsStrExt;
            environ.push((name.clone(), latin1(value.as_bytes())));
        }
    }
    environ
}

/// A value as the environ holds it: one character per byte (PEP 3333, as mod_wsgi
/// decodes every value), so UTF-8 text arrives as its bytes.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

/// `--add-handler` pairs: the extension lower-cased with its leading dot (Apache's
/// `AddHandler` takes it with or without, and matches it in any case), the script
/// absolute; a script that is not a file is refused.
fn handlers_of(
    problems: &mut Vec<ConfigError>,
    pairs: &[String],
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Vec<(String, PathBuf)> {
    let mut handlers: Vec<(String, PathBuf)> = Vec::new();
    for pair in pairs.chunks(2) {
        let [extension, script] = pair else { continue };
        let path = absolute(Path::new(script));
        let bare = extension.trim_start_matches('.');
        let reason = if bare.is_empty() || bare.contains(['/', '.', '\0']) {
            Some("the extension must be a name such as .py")
        } else if !path.is_file() {
            Some("the handler script is not an existing file")
        } else if handlers.len() >= usize::from(u16::MAX) {
            Some("too many handlers")
        } else {
            None
        };
        if let Some(reason) = reason {
            problems.push(ConfigError::BadHandler {
                extension: extension.clone(),
                path,
                reason,
            });
            continue;
        }
        let extension = format!(".{}", bare.to_lowercase());
        // A later one for the same extension replaces it, as a later AddHandler does.
        match handlers.iter_mut().find(|(known, _)| *known == extension) {
            Some(known) => known.1 = path,
            None => handlers.push((extension, path)),
        }
    }
    handlers
}

fn site(
    problems: &mut Vec<ConfigError>,
    document_root: Option<PathBuf>,
    directory_index: Option<String>,
    mount_point: &str,
) -> SiteConfig {
    let document_root = document_root.and_then(|path| match fs_err::canonicalize(&path) {
        Ok(real) if real.is_dir() => Some(real),
        _ => {
            problems.push(ConfigError::NotADirectory {
                option: "document-root",
                path,
            });
            None
        }
    });
    if let Some(name) = &directory_index {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            problems.push(ConfigError::BadDirectoryIndex { name: name.clone() });
        }
    }
    SiteConfig {
        directory_listing: false,
        mime_types: Vec::new(),
        handlers: Vec::new(),
        document_root,
        directory_index,
        mount_point: format!("/{}", mount_point.trim_matches('/'))
            .trim_end_matches('/')
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_clients_follows_mod_wsgi_express() {
        // processes 1, threads 5 (mod_wsgi-express's defaults): 10 + max(10, 7).
        assert_eq!(super::max_clients_for(None, 1, 5), 20);
        assert_eq!(super::max_clients_for(None, 4, 10), 70);
        // Never below the threads that can run requests.
        assert_eq!(super::max_clients_for(Some(3), 2, 5), 10);
        assert_eq!(super::max_clients_for(Some(100), 2, 5), 100);
    }

    #[test]
    fn default_server_root_names_host_port_and_user() {
        assert_eq!(
            default_server_root(None, None, 8000, 1000),
            PathBuf::from("/tmp/ferrule-localhost:8000:1000")
        );
        assert_eq!(
            default_server_root(Some("/var/tmp/"), Some("127.0.0.1"), 8123, 0),
            PathBuf::from("/var/tmp/ferrule-127.0.0.1:8123:0")
        );
    }

    #[test]
    fn mount_points_read_as_mod_wsgi_express_reads_them() {
        let mount = |text: &str| {
            let mut problems = Vec::new();
            let site = site(&mut problems, None, None, text);
            assert!(problems.is_empty());
            site.mount_point
        };
        assert_eq!(mount("/"), "");
        assert_eq!(mount("/app"), "/app");
        assert_eq!(mount("app/"), "/app");
        assert_eq!(mount("/a/b/"), "/a/b");
    }

    #[test]
    fn a_directory_index_is_a_file_name() {
        for name in ["", "a/index.html", "..", "."] {
            let mut problems = Vec::new();
            site(&mut problems, None, Some(name.to_owned()), "/");
            assert!(
                matches!(problems[..], [ConfigError::BadDirectoryIndex { .. }]),
                "{name:?}"
            );
        }
        let mut problems = Vec::new();
        site(&mut problems, None, Some("index.html".to_owned()), "/");
        assert!(problems.is_empty());
    }

    #[test]
    fn mime_types_files_read_as_apache_reads_them() {
        let types = parse_mime_types(
            "# comment\ntext/x-a\ta  B # trailing comment\n\napplication/x-none\n",
        );
        assert_eq!(
            types,
            [
                ("a".to_owned(), "text/x-a".to_owned()),
                ("b".to_owned(), "text/x-a".to_owned())
            ]
        );
    }
}

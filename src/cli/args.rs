//! The command line as mod_wsgi-express defines it: option names, defaults and grouping
//! match `mod_wsgi-express start-server`, so a user switches by changing one word. This
//! layer only checks single values; [`super::config`] does the rest.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mod_wsgi-express's default port.
pub(super) const DEFAULT_PORT: u16 = 8000;
/// mod_wsgi-express's default number of request threads per process.
pub(super) const DEFAULT_THREADS: usize = 5;
/// mod_wsgi-express's default name of the WSGI callable in the script.
pub(super) const DEFAULT_CALLABLE_OBJECT: &str = "application";
/// mod_wsgi-express's default error log level (Apache's `LogLevel`).
pub(super) const DEFAULT_LOG_LEVEL: &str = "warn";

/// mod_wsgi-express's file names in the log directory (`--error-log-name`,
/// `--access-log-name`, `--startup-log-name`).
pub(super) const DEFAULT_ERROR_LOG_NAME: &str = "error_log";
pub(super) const DEFAULT_ACCESS_LOG_NAME: &str = "access_log";
pub(super) const DEFAULT_STARTUP_LOG_NAME: &str = "startup_log";

/// mod_wsgi-express's `--max-log-size`, in megabytes.
pub(super) const DEFAULT_MAX_LOG_SIZE: u64 = 5;
/// Seconds the server waits for requests in progress when stopping (mod_wsgi-express's
/// `--shutdown-timeout`).
pub(super) const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 5;
/// Seconds a client may take to send a request head (Apache's `RequestReadTimeout`
/// header stage in mod_wsgi-express's configuration).
pub(super) const DEFAULT_HEADER_TIMEOUT: u64 = 15;
/// mod_wsgi-express's other request read timeouts (`mod_reqtimeout` rules): the header
/// stage grows to 30 s at 500 bytes a second; the body stage starts at 15 s and grows
/// without bound at 500 bytes a second.
pub(super) const DEFAULT_HEADER_MAX_TIMEOUT: u64 = 30;
pub(super) const DEFAULT_HEADER_MIN_RATE: u64 = 500;
pub(super) const DEFAULT_BODY_TIMEOUT: u64 = 15;
pub(super) const DEFAULT_BODY_MAX_TIMEOUT: u64 = 0;
pub(super) const DEFAULT_BODY_MIN_RATE: u64 = 500;
/// Seconds an idle keep-alive connection stays open (mod_wsgi-express's
/// `--keep-alive-timeout`, Apache's `KeepAliveTimeout`).
pub(super) const DEFAULT_KEEP_ALIVE_TIMEOUT: u64 = 2;
/// Seconds one read or write on a socket may wait (mod_wsgi-express's `--socket-timeout`,
/// Apache's `Timeout`).
pub(super) const DEFAULT_SOCKET_TIMEOUT: u64 = 60;
/// Pending connections the kernel keeps for the listener (mod_wsgi-express's
/// `--server-backlog`).
pub(super) const DEFAULT_SERVER_BACKLOG: u32 = 500;
/// Seconds a request may wait for a free daemon thread (mod_wsgi-express's
/// `--queue-timeout`).
pub(super) const DEFAULT_QUEUE_TIMEOUT: u64 = 45;
/// mod_wsgi-express's defaults for the daemon processes' timeouts, in seconds.
pub(super) const DEFAULT_REQUEST_TIMEOUT: u64 = 60;
pub(super) const DEFAULT_STARTUP_TIMEOUT: u64 = 15;
pub(super) const DEFAULT_GRACEFUL_TIMEOUT: u64 = 15;
/// Largest request body accepted, in bytes (mod_wsgi-express's `--limit-request-body`,
/// Apache's `LimitRequestBody` in its configuration: 10 MiB).
pub(super) const DEFAULT_LIMIT_REQUEST_BODY: u64 = 10_485_760;
/// Request body bytes the front end reads before an application thread takes the request
/// (our own `--request-buffer-size`): a slow client then holds memory, not a thread.
pub(super) const DEFAULT_REQUEST_BUFFER_SIZE: u64 = 1024 * 1024;
/// What `--response-buffer-size 0` stands for. mod_wsgi-express's 8 MB bounds a buffer in
/// Apache's filter chain; here it is memory a slow reader may hold per connection.
pub(super) const DEFAULT_RESPONSE_BUFFER_SIZE: u64 = 1024 * 1024;
/// mod_wsgi-express's default `--auth-type`.
pub(super) const DEFAULT_AUTH_TYPE: &str = "Basic";
/// mod_wsgi-express's default `--auth-group` (its `Require wsgi-group`).
pub(super) const DEFAULT_AUTH_GROUP: &str = "wsgi";
/// Seconds a Digest nonce is good for (our `--auth-nonce-lifetime`; Apache's
/// `AuthDigestNonceLifetime` default, which mod_wsgi-express leaves alone).
pub(super) const DEFAULT_AUTH_NONCE_LIFETIME: u64 = 300;
/// Connections the daemon socket queues before daemon threads accept them
/// (mod_wsgi-express's `--daemon-backlog`).
pub(super) const DEFAULT_DAEMON_BACKLOG: u32 = 100;

#[derive(Debug, Parser)]
#[command(
    name = "ferrule",
    version,
    about = "Serve a Python WSGI application in production: mod_wsgi-express's command line, without Apache.",
    propagate_version = true,
    max_term_width = 100
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Serve a WSGI application in the foreground.
    StartServer(StartServerArgs),
    /// Write the server root and its control script (`apachectl`: start, stop, restart,
    /// graceful, graceful-stop, configtest) without starting the server.
    SetupServer(StartServerArgs),
    /// Check the options and files of a server without starting it (the control
    /// script's `configtest`).
    #[command(hide = true)]
    ConfigTest(StartServerArgs),
}

/// The `start-server` options that Ferrule builds.
#[derive(Debug, Args)]
#[allow(clippy::struct_field_names)]
pub(super) struct StartServerArgs {
    /// What to serve: a WSGI script file by default; see --application-type.
    #[arg(value_name = "TARGET")]
    pub(super) script: Option<String>,

    /// How TARGET names the application: script (a WSGI script file), module (a module
    /// to import; `pkg.wsgi:app` also names the callable), paste (a PasteDeploy .ini file)
    /// or static (a directory of files, no Python).
    #[arg(long, default_value = "script", value_name = "TYPE",
          value_parser = clap::builder::PossibleValuesParser::new(["script", "module", "paste", "static"]),
          help_heading = "Application")]
    pub(super) application_type: String,

    /// TARGET given as an option instead; it wins over the positional argument.
    #[arg(long, value_name = "FILE-PATH|MODULE", help_heading = "Application")]
    pub(super) entry_point: Option<String>,

    /// Port to listen on for HTTP.
    #[arg(long, default_value_t = DEFAULT_PORT, value_name = "NUMBER", help_heading = "Server")]
    pub(super) port: u16,

    /// Address or host name to listen on; all interfaces when not given.
    #[arg(long, value_name = "IP-ADDRESS", help_heading = "Server")]
    pub(super) host: Option<String>,

    /// Also speak HTTP/2: offered by ALPN (h2 before http/1.1) on the HTTPS port, and in
    /// the clear on --port to clients that start with the HTTP/2 preface (h2c with prior
    /// knowledge; `Upgrade: h2c` is not supported).
    #[arg(long, help_heading = "Server")]
    pub(super) http2: bool,

    /// Port to listen on for HTTPS, beside --port; needs a certificate and its key
    /// (--ssl-certificate, or --ssl-certificate-file and --ssl-certificate-key-file).
    #[arg(long, value_name = "NUMBER", help_heading = "TLS")]
    pub(super) https_port: Option<u16>,

    /// The older name of --https-port (mod_wsgi 4.3.0).
    #[arg(long, value_name = "NUMBER", help_heading = "TLS")]
    pub(super) ssl_port: Option<u16>,

    /// PEM file holding the server's certificate (and any intermediates after it).
    #[arg(long, value_name = "FILE-PATH", help_heading = "TLS")]
    pub(super) ssl_certificate_file: Option<PathBuf>,

    /// PEM file holding the certificate's private key (PKCS#8, PKCS#1 or SEC1, not
    /// encrypted).
    #[arg(long, value_name = "FILE-PATH", help_heading = "TLS")]
    pub(super) ssl_certificate_key_file: Option<PathBuf>,

    /// Path without extension of a certificate and key pair: STUB.crt and STUB.key.
    #[arg(long, value_name = "FILE-PATH", help_heading = "TLS")]
    pub(super) ssl_certificate: Option<PathBuf>,

    /// PEM file of the certificate authorities client certificates must come from;
    /// alone, it asks every HTTPS request for a client certificate (see
    /// --ssl-verify-client).
    #[arg(long, value_name = "FILE-PATH", help_heading = "TLS")]
    pub(super) ssl_ca_certificate_file: Option<PathBuf>,

    /// URL path below which requests need a client certificate from
    /// --ssl-ca-certificate-file (403 without one). May be given more than once.
    #[arg(long = "ssl-verify-client", action = clap::ArgAction::Append, value_name = "URL-PATH", help_heading = "TLS")]
    pub(super) ssl_verify_client: Vec<String>,

    /// PEM file of intermediate certificates sent after the server's own.
    #[arg(long, value_name = "FILE-PATH", help_heading = "TLS")]
    pub(super) ssl_certificate_chain_file: Option<PathBuf>,

    /// Put the TLS connection's details (`SSL_PROTOCOL`, `SSL_CIPHER`, `SSL_CLIENT_S_DN`,
    /// ..., as Apache's `mod_ssl` names them) into the environ of HTTPS requests.
    #[arg(long, help_heading = "TLS")]
    pub(super) ssl_environment: bool,

    /// Redirect plain HTTP requests to the same URL over HTTPS (302).
    #[arg(long, help_heading = "TLS")]
    pub(super) https_only: bool,

    /// Value of the Strict-Transport-Security header added to HTTPS responses
    /// (for example max-age=31536000).
    #[arg(long, value_name = "PARAMS", help_heading = "TLS")]
    pub(super) hsts_policy: Option<String>,

    /// Host name of the site: requests for other names get 403. A name starting with
    /// www. also answers its parent domain with a redirect to the www. name.
    #[arg(long, value_name = "HOSTNAME", help_heading = "Virtual hosts")]
    pub(super) server_name: Option<String>,

    /// Another host name the site answers to (wildcards * and ? allowed, as in
    /// *.example.com). May be given more than once.
    #[arg(long = "server-alias", action = clap::ArgAction::Append, value_name = "HOSTNAME", help_heading = "Virtual hosts")]
    pub(super) server_aliases: Vec<String>,

    /// With --server-name, still serve requests that come from this machine (a loopback
    /// address), whatever host name they ask for.
    #[arg(long, help_heading = "Virtual hosts")]
    pub(super) allow_localhost: bool,

    /// Header from a trusted proxy that gives the client's details (X-Forwarded-For,
    /// X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP, ...). May be given more than once.
    #[arg(long = "trust-proxy-header", action = clap::ArgAction::Append, value_name = "HEADER-NAME", help_heading = "Proxying")]
    pub(super) trust_proxy_headers: Vec<String>,

    /// Address or subnet of a proxy whose --trust-proxy-header headers are believed;
    /// with none given, every peer is. May be given more than once.
    #[arg(long = "trust-proxy", action = clap::ArgAction::Append, value_name = "IP-ADDRESS/SUBNET", help_heading = "Proxying")]
    pub(super) trust_proxies: Vec<String>,

    /// Forward requests below a URL path to another HTTP server (URL: scheme http, a host,
    /// a port, a base path): URL-PATH/REST goes to URL/REST, URL-PATH itself is redirected
    /// to URL-PATH/. May be given more than once; the longest URL path that matches wins.
    #[arg(long = "proxy-mount-point", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["URL-PATH", "URL"], help_heading = "Proxying")]
    pub(super) proxy_mount_points: Vec<String>,

    /// Older name of --proxy-mount-point.
    #[arg(long = "proxy-url-alias", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["URL-PATH", "URL"], help_heading = "Proxying")]
    pub(super) proxy_url_aliases: Vec<String>,

    /// Forward every request whose Host header names HOSTNAME to another HTTP server (URL:
    /// scheme http, a host, a port, a base path). May be given more than once.
    #[arg(long = "proxy-virtual-host", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["HOSTNAME", "URL"], help_heading = "Proxying")]
    pub(super) proxy_virtual_hosts: Vec<String>,

    /// Number of server processes; more than one makes wsgi.multiprocess true, and so does
    /// giving it at all in daemon mode (as mod_wsgi-express).
    #[arg(long, value_name = "NUMBER", value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Processes")]
    pub(super) processes: Option<u32>,

    /// Number of threads per process that run the application.
    #[arg(long, default_value_t = DEFAULT_THREADS, value_name = "NUMBER", value_parser = parse_thread_count, help_heading = "Processes")]
    pub(super) threads: usize,

    /// User the application's processes (and the front end, once its sockets are open)
    /// run as when ferrule is started by root; by default the user who started it.
    #[arg(long, value_name = "USERNAME", help_heading = "Processes")]
    pub(super) user: Option<String>,

    /// Group they run as; by default the --user's primary group.
    #[arg(long, value_name = "GROUP", help_heading = "Processes")]
    pub(super) group: Option<String>,

    /// Run the application inside the server processes instead of separate daemon
    /// processes: no extra hop, no isolation.
    #[arg(long, help_heading = "Processes")]
    pub(super) embedded_mode: bool,

    /// Run one process with one thread in the foreground, attached to the terminal, so that
    /// `import pdb; pdb.set_trace()` in the application stops at a prompt. Ctrl-C stops it.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) debug_mode: bool,

    /// Never reload the application when its files change.
    #[arg(long, help_heading = "Application")]
    pub(super) disable_reloading: bool,

    /// Restart the application's processes when any Python file it imported changes
    /// (checked every second), not only its entry file (script, module, .ini).
    #[arg(long, help_heading = "Application")]
    pub(super) reload_on_changes: bool,

    /// Serve a file, or a directory of files, at a URL path, from the front end without
    /// Python (a Django site's static files, say). May be given more than once.
    #[arg(long = "url-alias", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["URL-PATH", "FILE-PATH|DIRECTORY-PATH"], help_heading = "URLs and files")]
    pub(super) url_aliases: Vec<String>,

    /// Directory of static files served ahead of the application: a request naming a file
    /// in it gets the file from the front end; below --mount-point, anything else goes to
    /// the application.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "URLs and files")]
    pub(super) document_root: Option<PathBuf>,

    /// File served for a directory of the document root, such as index.html; a directory
    /// without it is then refused (403) rather than handed to the application.
    #[arg(long, value_name = "FILE-NAME", help_heading = "URLs and files")]
    pub(super) directory_index: Option<String>,

    /// URL path the application is mounted at (its `SCRIPT_NAME`); requests outside it that
    /// name no file of the document root get 404.
    #[arg(
        long,
        default_value = "/",
        value_name = "URL-PATH",
        help_heading = "URLs and files"
    )]
    pub(super) mount_point: String,

    /// URL path whose content answers an error the server makes (404 of the document root,
    /// 413, 503, the 500 of a failing application, ...), with the error's status. May be
    /// given more than once.
    #[arg(long = "error-document", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["STATUS", "URL-PATH"], help_heading = "URLs and files")]
    pub(super) error_documents: Vec<String>,

    /// Also replace the application's own error responses with --error-document ones.
    #[arg(long, help_heading = "URLs and files")]
    pub(super) error_override: bool,

    /// List a directory of the document root that has no --directory-index file (and
    /// that is not handed to the application) as an HTML page.
    #[arg(long, help_heading = "URLs and files")]
    pub(super) directory_listing: bool,

    /// File mapping file extensions to content types for static files, in the format of
    /// Apache's mime.types (a type, then its extensions); it comes before the built-in
    /// types.
    #[arg(long, value_name = "FILE-PATH", help_heading = "URLs and files")]
    pub(super) mime_types: Option<PathBuf>,

    /// Whether the application gets GET for a HEAD request: On always, Off never, Auto
    /// when an output stage needs the whole response (--compress-responses). The client
    /// gets the headers of the GET and no body either way.
    #[arg(long, default_value = "Auto", value_name = "OFF|ON|AUTO", ignore_case = true,
          value_parser = clap::builder::PossibleValuesParser::new(["Off", "On", "Auto"]),
          help_heading = "Server")]
    pub(super) map_head_to_get: String,

    /// Compress text responses (HTML, CSS, JavaScript, XML, JSON, plain text) of 1 KiB or
    /// more with gzip, or brotli when the client prefers it, for clients that accept it;
    /// streamed responses are compressed as they stream.
    #[arg(long, help_heading = "Server")]
    pub(super) compress_responses: bool,

    /// Accepted for compatibility: files (static files, `wsgi.file_wrapper`) are always
    /// sent with the kernel's sendfile where the connection allows it.
    #[arg(long, help_heading = "Server")]
    pub(super) enable_sendfile: bool,

    /// Refused: `.htaccess` files are an Apache feature with no equivalent in Ferrule.
    #[arg(long, action = clap::ArgAction::Append, value_name = "DIRECTIVE-TYPE",
          help_heading = "URLs and files")]
    pub(super) allow_override: Vec<String>,

    /// Serve the files of the document root whose names end with EXTENSION (such as
    /// .py) through the WSGI script SCRIPT-PATH: its `handle_request` callable (else its
    /// `application`) answers, with the file in `SCRIPT_FILENAME`. May be given more than
    /// once.
    #[arg(long = "add-handler", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["EXTENSION", "SCRIPT-PATH"], help_heading = "URLs and files")]
    pub(super) add_handler: Vec<String>,

    /// Serve the `.php` files of the document root (and `index.php` as a directory's
    /// index) through a php-fpm pool that the server starts, watches and stops, over
    /// FastCGI. Needs --document-root. `--with-php` is the same.
    #[arg(
        long = "with-php5",
        visible_alias = "with-php",
        help_heading = "URLs and files"
    )]
    pub(super) with_php5: bool,

    /// The php-fpm program for --with-php5 (ours); found on PATH as php-fpm, or as
    /// Debian's /usr/sbin/php-fpmX.Y, without it.
    #[arg(long, value_name = "FILE-PATH", help_heading = "URLs and files")]
    pub(super) php_executable: Option<PathBuf>,

    /// Run the executable `.cgi` files of the document root as CGI scripts (no shell;
    /// killed after --request-timeout). Needs --document-root.
    #[arg(long, help_heading = "URLs and files")]
    pub(super) with_cgi: bool,

    /// Add KEY with VALUE to every request's WSGI environ (not to `os.environ`, as in
    /// mod_wsgi). May be given more than once.
    #[arg(long = "setenv", num_args = 2, action = clap::ArgAction::Append,
          value_names = ["KEY", "VALUE"], help_heading = "URLs and files")]
    pub(super) setenv: Vec<String>,

    /// Copy the server's environment variable KEY into every request's WSGI environ;
    /// left out when the server was started without it. May be given more than once.
    #[arg(long = "passenv", action = clap::ArgAction::Append, value_name = "KEY",
          help_heading = "URLs and files")]
    pub(super) passenv: Vec<String>,

    /// Name of the WSGI callable defined by the script.
    #[arg(long, default_value = DEFAULT_CALLABLE_OBJECT, value_name = "NAME", help_heading = "Application")]
    pub(super) callable_object: String,

    /// Directory the application runs in; searched for modules first (by its real path).
    /// Defaults to the current directory. `--home` is another name for it.
    #[arg(
        long,
        visible_alias = "home",
        value_name = "DIRECTORY-PATH",
        help_heading = "Application"
    )]
    pub(super) working_directory: Option<PathBuf>,

    /// A virtualenv (or Python installation) of the same Python version whose packages the
    /// application imports, searched before those of the Python that runs ferrule.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "Application")]
    pub(super) python_home: Option<PathBuf>,

    /// Directory to add to the module search path (sys.path); .pth files in it are read.
    /// May be given more than once.
    #[arg(
        long = "python-path",
        value_name = "DIRECTORY-PATH",
        help_heading = "Application"
    )]
    pub(super) python_paths: Vec<PathBuf>,

    /// Directory for the server's generated files and logs; by default a directory in
    /// /tmp named after the host, port and user.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "Server")]
    pub(super) server_root: Option<PathBuf>,

    /// Seconds requests in progress get to finish when the server stops.
    #[arg(long, default_value_t = DEFAULT_SHUTDOWN_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) shutdown_timeout: u64,

    /// Replace a daemon process with a fresh one after it has served this many requests
    /// (one process at a time, no request lost); 0 never does.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NUMBER",
        help_heading = "Processes"
    )]
    pub(super) maximum_requests: u64,

    /// Seconds a request may wait for a free daemon thread before it is answered with 503.
    #[arg(long, default_value_t = DEFAULT_QUEUE_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) queue_timeout: u64,

    /// Seconds a request may run in a daemon process; past it the client gets 504 and the
    /// process is replaced (its other requests get --graceful-timeout to finish).
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) request_timeout: u64,

    /// Seconds a new daemon process may take to load the application before it is
    /// killed and started again.
    #[arg(long, default_value_t = DEFAULT_STARTUP_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) startup_timeout: u64,

    /// Replace a daemon process that served requests and then had none for this many
    /// seconds, giving back its memory; 0 never does.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) inactivity_timeout: u64,

    /// Seconds a daemon process being replaced (recycling, restart, timeouts) gets to
    /// finish its requests before it is killed.
    #[arg(long, default_value_t = DEFAULT_GRACEFUL_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) graceful_timeout: u64,

    /// Seconds a daemon process replaced after a restart signal (SIGHUP, SIGUSR1,
    /// `apachectl restart` or `graceful`) has to finish its requests before it is killed;
    /// 0 (the default) means --graceful-timeout's.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) eviction_timeout: u64,

    /// Replace each daemon process gracefully after it has run this many seconds; 0 never
    /// does.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) restart_interval: u64,

    /// Replace a daemon process gracefully once it has used this many seconds of CPU
    /// time; 0 for no limit.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) cpu_time_limit: u64,

    /// Replace a daemon process gracefully once its resident memory exceeds this many
    /// bytes (checked every second); 0 for no limit.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "BYTES",
        help_heading = "Processes"
    )]
    pub(super) memory_limit: u64,

    /// Length of the queue of daemon connections waiting to be accepted by the front end.
    #[arg(long, alias = "listener-backlog", default_value_t = DEFAULT_DAEMON_BACKLOG, value_name = "NUMBER", help_heading = "Processes")]
    pub(super) daemon_backlog: u32,

    /// Seconds a client may take to send a request head, counted from the connection (or,
    /// on a keep-alive connection, from the request's first byte); a client that sent part
    /// of a head gets 408. Grows by a second per --header-min-rate bytes received, up to
    /// --header-max-timeout. 0 turns it off.
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) header_timeout: u64,

    /// Most seconds --header-timeout may grow to, however fast the client sends; 0 for no
    /// bound.
    #[arg(long, default_value_t = DEFAULT_HEADER_MAX_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) header_max_timeout: u64,

    /// Bytes of request head that earn the client one more second of --header-timeout; 0
    /// for none.
    #[arg(long, default_value_t = DEFAULT_HEADER_MIN_RATE, value_name = "BYTES", help_heading = "Timeouts")]
    pub(super) header_min_rate: u64,

    /// Seconds a client may spend sending a request body (time the application takes to
    /// ask for it does not count); then its read fails, or the client gets 408 if the
    /// application has not run yet. Grows by a second per --body-min-rate bytes received,
    /// up to --body-max-timeout. 0 turns it off.
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) body_timeout: u64,

    /// Most seconds --body-timeout may grow to; 0 for no bound.
    #[arg(long, default_value_t = DEFAULT_BODY_MAX_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) body_max_timeout: u64,

    /// Bytes of request body that earn the client one more second of --body-timeout; 0 for
    /// none.
    #[arg(long, default_value_t = DEFAULT_BODY_MIN_RATE, value_name = "BYTES", help_heading = "Timeouts")]
    pub(super) body_min_rate: u64,

    /// Seconds an idle keep-alive connection waits for its next request before it is
    /// closed; 0 turns keep-alive off (every response closes its connection).
    #[arg(long, default_value_t = DEFAULT_KEEP_ALIVE_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) keep_alive_timeout: u64,

    /// Seconds one write of a response may wait for a client that takes no bytes, before
    /// the connection is closed (also the default of --response-socket-timeout).
    #[arg(long, default_value_t = DEFAULT_SOCKET_TIMEOUT, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) socket_timeout: u64,

    /// Seconds a proxied request waits for its upstream: to connect, then for each step
    /// of the exchange (504 past it). Defaults to --socket-timeout.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Timeouts")]
    pub(super) proxy_timeout: Option<u64>,

    /// Seconds one write of a response body may wait for the client; 0 uses
    /// --socket-timeout.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) response_socket_timeout: u64,

    /// Length of the kernel's queue of connections not yet accepted.
    #[arg(long, default_value_t = DEFAULT_SERVER_BACKLOG, value_name = "NUMBER", help_heading = "Server")]
    pub(super) server_backlog: u32,

    /// Largest request body accepted, in bytes; 0 accepts any size. A request that declares
    /// a larger Content-Length gets 413 before the application runs; a chunked body that
    /// grows past it fails the application's read of wsgi.input and closes the connection.
    #[arg(long, default_value_t = DEFAULT_LIMIT_REQUEST_BODY, value_name = "NUMBER", help_heading = "Server")]
    pub(super) limit_request_body: u64,

    /// Bytes of a request body the front end reads before an application thread takes the
    /// request, so that a client sending its body slowly holds memory, not a thread; a
    /// larger body streams to the application as it arrives. 0 reads nothing ahead.
    #[arg(long, default_value_t = DEFAULT_REQUEST_BUFFER_SIZE, value_name = "BYTES", help_heading = "Server")]
    pub(super) request_buffer_size: u64,

    /// Most requests handed to the application at once (waiting for a thread or running,
    /// until the response head); beyond it, new connections wait in the kernel's queue.
    /// Clients sending or reading slowly do not count. Defaults to 10 + max(10, 1.5 x
    /// processes x threads), as mod_wsgi-express; never below processes x threads. In
    /// embedded mode each process admits its share.
    #[arg(long, value_name = "NUMBER", help_heading = "Processes")]
    pub(super) max_clients: Option<u64>,

    /// Threads running the daemon-mode front end (each a reactor of its own on the same
    /// listener); 0 picks one per two CPUs, at least one (a daemon-mode request spends
    /// about half of its CPU in the front end). Embedded mode has one per process.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NUMBER",
        help_heading = "Processes"
    )]
    pub(super) reactor_threads: u64,

    /// Bytes of a response the front end takes from the application ahead of a client
    /// that reads slowly, so that the application's thread is free once a response that
    /// fits was produced; 0 uses the default of 1 MiB.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NUMBER",
        help_heading = "Server"
    )]
    pub(super) response_buffer_size: u64,

    /// Accept request bodies sent with chunked transfer coding. Always on here: the option
    /// is accepted so that mod_wsgi-express command lines work unchanged.
    #[arg(long, help_heading = "Server")]
    pub(super) chunked_request: bool,

    /// Write the error log (and the access log, if on) to the terminal instead of files
    /// in the server root.
    #[arg(long, help_heading = "Logging")]
    pub(super) log_to_terminal: bool,

    /// Least severe error log messages to record.
    #[arg(long, default_value = DEFAULT_LOG_LEVEL, value_name = "NAME",
          value_parser = clap::builder::PossibleValuesParser::new(crate::logs::Level::NAMES),
          help_heading = "Logging")]
    pub(super) log_level: String,

    /// Record every request in an access log (Apache's common format).
    #[arg(long, help_heading = "Logging")]
    pub(super) access_log: bool,

    /// URL path the front end answers itself, without Python, for load balancers and
    /// orchestrators: 200 while the application is loaded and the server is not stopping
    /// (also when every application thread is busy), 503 otherwise (docs/operations.md).
    #[arg(
        long,
        value_name = "URL-PATH",
        help_heading = "Debugging and monitoring"
    )]
    pub(super) health_check_path: Option<String>,

    /// URL path where the front end serves the server's counters in Prometheus's text
    /// format, without Python: requests, latency, bytes, threads, queue, processes
    /// (docs/operations.md).
    #[arg(
        long,
        value_name = "URL-PATH",
        help_heading = "Debugging and monitoring"
    )]
    pub(super) metrics_path: Option<String>,

    /// Serve Apache's status page at /server-status (HTML; `?auto` for machines), to
    /// clients on this machine only: workers busy and idle, each thread's request.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) server_status: bool,

    /// Let the application read the server's state: `mod_wsgi.server_metrics()` returns
    /// each process's view of its threads instead of None (docs/python.md).
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) server_metrics: bool,

    /// Log a request still running after this many seconds (fractions allowed), once,
    /// with its request id, method, target, thread and Python stack; 0, the default,
    /// never does (docs/operations.md).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS", value_parser = parse_slow_requests,
          help_heading = "Debugging and monitoring")]
    pub(super) slow_requests: f64,

    /// Serve a live dashboard of the server (request rate, latency, status classes,
    /// threads, queue, memory and CPU per process, restarts, the slowest recent requests)
    /// on 127.0.0.1 at --telemetry-ui-port; daemon mode (docs/operations.md).
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_telemetry: bool,

    /// Port of the --enable-telemetry dashboard, on 127.0.0.1 only.
    #[arg(long, default_value_t = DEFAULT_TELEMETRY_UI_PORT, value_name = "NUMBER",
          value_parser = clap::value_parser!(u16).range(1..), help_heading = "Debugging and monitoring")]
    pub(super) telemetry_ui_port: u16,

    /// Seconds between the dashboard's samples (fractions allowed, more than 0).
    #[arg(long, default_value_t = DEFAULT_TELEMETRY_INTERVAL, value_name = "SECONDS",
          value_parser = parse_telemetry_interval, help_heading = "Debugging and monitoring")]
    pub(super) telemetry_interval: f64,

    /// mod_wsgi's telemetry datagrams to a UNIX socket (`unix:PATH`): refused, their
    /// binary format is not documented (docs/operations.md); use --enable-telemetry.
    #[arg(long, value_name = "TARGET", help_heading = "Debugging and monitoring")]
    pub(super) telemetry_service: Option<String>,

    /// Fields of the --telemetry-service datagrams (`+CaptureUserAgent`): refused with it.
    #[arg(long, value_name = "ARGS", help_heading = "Debugging and monitoring")]
    pub(super) telemetry_options: Vec<String>,

    /// Name the server process shows in `ps`, `top` and `pgrep` (at most 15 bytes are
    /// kept), for process managers that look for a given name.
    #[arg(long, value_name = "NAME", help_heading = "Server")]
    pub(super) process_name: Option<String>,

    /// Also write a systemd unit, `SERVER_ROOT/ferrule.service`, beside the control script:
    /// it runs the server in the foreground, stops it with SIGTERM (draining) and reloads it
    /// with SIGUSR1 (docs/operations.md).
    #[arg(long, help_heading = "Server")]
    pub(super) systemd: bool,

    /// Only write the server root and its control script, as `setup-server` does.
    #[arg(long, help_heading = "Server")]
    pub(super) setup_only: bool,

    /// File the server writes its process id to; `httpd.pid` in the server root by
    /// default, as mod_wsgi-express names it.
    #[arg(long, value_name = "FILE-PATH", help_heading = "Server")]
    pub(super) pid_file: Option<PathBuf>,

    /// Write the messages of server start-up to a log file in the log directory as well.
    #[arg(long, help_heading = "Logging")]
    pub(super) startup_log: bool,

    /// Directory for the log files; the server root by default. Given, it also wins over
    /// --log-to-terminal, as in mod_wsgi-express.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "Logging")]
    pub(super) log_directory: Option<PathBuf>,

    /// File name of the error log in the log directory.
    #[arg(long, default_value = DEFAULT_ERROR_LOG_NAME, value_name = "FILE-NAME", help_heading = "Logging")]
    pub(super) error_log_name: String,

    /// File name of the access log in the log directory.
    #[arg(long, default_value = DEFAULT_ACCESS_LOG_NAME, value_name = "FILE-NAME", help_heading = "Logging")]
    pub(super) access_log_name: String,

    /// File name of the start-up log in the log directory.
    #[arg(long, default_value = DEFAULT_STARTUP_LOG_NAME, value_name = "FILE-NAME", help_heading = "Logging")]
    pub(super) startup_log_name: String,

    /// Rotate the error and access logs when they reach --max-log-size: the full file is
    /// renamed NAME.YYYY-mm-dd-HH_MM_SS and a new one started (docs/logs.md).
    #[arg(long, help_heading = "Logging")]
    pub(super) rotate_logs: bool,

    /// Size in megabytes at which --rotate-logs rotates a log file.
    #[arg(long, default_value_t = DEFAULT_MAX_LOG_SIZE, value_name = "MB",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Logging")]
    pub(super) max_log_size: u64,

    /// Shape of error log lines: an Apache `ErrorLogFormat` string of %t %{u}t %l %m %P %T
    /// %a %M (docs/logs.md); Apache's usual shape by default.
    #[arg(long, value_name = "FORMAT", help_heading = "Logging")]
    pub(super) error_log_format: Option<String>,

    /// Log each request's way through the server (accepted, received, handed to which
    /// daemon process, answered) at level debug, whatever --log-level says.
    #[arg(long, help_heading = "Logging")]
    pub(super) verbose_debugging: bool,

    /// With --rotate-logs, pipe the logs through this program instead of rotating them
    /// natively, as mod_wsgi-express does: `PROGRAM FILE.%Y-%m-%d-%H_%M_%S NM` (Apache's
    /// rotatelogs, from Debian's apache2-utils).
    #[arg(long, value_name = "FILE-PATH", help_heading = "Logging")]
    pub(super) rotatelogs_executable: Option<PathBuf>,

    /// Format of access log lines: `common` (the default), `combined`, or an Apache
    /// `LogFormat` string of %h %a %l %u %t %r %s %>s %b %B %D %T %m %U %q %H %P %L
    /// %{Header}i %{Header}o %{VAR}e (docs/logs.md).
    #[arg(long, value_name = "FORMAT", help_heading = "Logging")]
    pub(super) access_log_format: Option<String>,

    /// Python script whose `allow_access(environ, host)` decides, before anything else,
    /// whether the client's host may make the request (403 when it returns False).
    #[arg(long, value_name = "SCRIPT-PATH", help_heading = "Access control")]
    pub(super) host_access_script: Option<PathBuf>,

    /// Python script that authenticates users for the whole site: `check_password(environ,
    /// user, password)` for Basic, `get_realm_hash(environ, user, realm)` for Digest.
    #[arg(long, value_name = "SCRIPT-PATH", help_heading = "Access control")]
    pub(super) auth_user_script: Option<PathBuf>,

    /// HTTP authentication scheme of --auth-user-script: Basic or Digest.
    #[arg(long, default_value = DEFAULT_AUTH_TYPE, value_name = "TYPE", help_heading = "Access control")]
    pub(super) auth_type: String,

    /// Python script whose `groups_for_user(environ, user)` gives the groups of an
    /// authenticated user; one outside --auth-group gets 403.
    #[arg(long, value_name = "SCRIPT-PATH", help_heading = "Access control")]
    pub(super) auth_group_script: Option<PathBuf>,

    /// Group a user must belong to when --auth-group-script is given.
    #[arg(long, default_value = DEFAULT_AUTH_GROUP, value_name = "NAME", help_heading = "Access control")]
    pub(super) auth_group: String,

    /// Seconds a Digest nonce is good for; a client then gets `stale=true` and retries
    /// with a new one without asking its user again.
    #[arg(long, default_value_t = DEFAULT_AUTH_NONCE_LIFETIME, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Access control")]
    pub(super) auth_nonce_lifetime: u64,

    #[command(flatten)]
    pub(super) apache_only: super::apache_only::ApacheOnlyArgs,

    #[command(flatten)]
    pub(super) python_settings: super::python_settings::PythonSettingsArgs,

    #[command(flatten)]
    pub(super) developer_tools: super::developer_tools::DeveloperToolsArgs,

    #[command(flatten)]
    pub(super) daemon_details: super::daemon_details::DaemonDetailsArgs,

    #[command(flatten)]
    pub(super) services: super::services::ServicesArgs,
}

fn parse_thread_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count @ 1..=1024) => Ok(count),
        _ => Err(format!("'{text}' is not a thread count between 1 and 1024")),
    }
}

/// mod_wsgi-express's `--telemetry-ui-port` default.
const DEFAULT_TELEMETRY_UI_PORT: u16 = 8888;
/// mod_wsgi-express's `--telemetry-interval` default, in seconds.
const DEFAULT_TELEMETRY_INTERVAL: f64 = 1.0;

/// `--telemetry-interval`: seconds, more than 0.
fn parse_telemetry_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && std::time::Duration::try_from_secs_f64(seconds).is_ok() => {
            Ok(seconds)
        }
        _ => Err(format!("'{text}' is not a number of seconds above 0")),
    }
}

/// `--slow-requests`: seconds, 0 or more.
fn parse_slow_requests(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if std::time::Duration::try_from_secs_f64(seconds).is_ok() => Ok(seconds),
        _ => Err(format!("'{text}' is not a number of seconds (0 or more)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<StartServerArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("ferrule").chain(argv.iter().copied()))?;
        let (Command::StartServer(start_server)
        | Command::SetupServer(start_server)
        | Command::ConfigTest(start_server)) = cli.command;
        Ok(start_server)
    }

    #[test]
    fn defaults_match_mod_wsgi_express() {
        let args = parse(&["start-server", "app.wsgi"]).unwrap();
        assert_eq!(args.port, 8000);
        assert_eq!(args.threads, 5);
        assert_eq!(args.processes, None);
        assert_eq!(args.callable_object, "application");
        assert_eq!(args.log_level, "warn");
        assert!(!args.embedded_mode);
        assert!(args.python_paths.is_empty());
    }

    #[test]
    fn built_options_parse() {
        let args = parse(&[
            "start-server",
            "app.wsgi",
            "--port",
            "8123",
            "--host",
            "127.0.0.1",
            "--processes",
            "2",
            "--threads",
            "3",
            "--embedded-mode",
            "--callable-object",
            "app",
            "--python-path",
            "/a",
            "--python-path",
            "/b",
            "--log-to-terminal",
            "--log-level",
            "debug",
            "--access-log",
        ])
        .unwrap();
        assert_eq!(args.port, 8123);
        assert_eq!(args.processes, Some(2));
        assert_eq!(args.threads, 3);
        assert!(args.embedded_mode && args.log_to_terminal && args.access_log);
        assert_eq!(
            args.python_paths,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["start-server", "--threads", "0"]).is_err());
        assert!(parse(&["start-server", "--port", "70000"]).is_err());
        assert!(parse(&["start-server", "--log-level", "loud"]).is_err());
        assert!(parse(&["start-server", "--processes", "0"]).is_err());
    }
}

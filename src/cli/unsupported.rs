//! mod_wsgi-express options that Ferrule recognises but does not build yet.
//!
//! Each is declared with its real name and shape, shows in `--help` under its heading, and
//! is refused by name at start-up (exit code 2): never silently ignored. When an option is
//! built it moves from this table to `args.rs`.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// How an option takes values.
#[derive(Clone, Copy)]
enum Shape {
    /// `--flag`
    Flag,
    /// `--option VALUE`
    Value,
    /// `--option VALUE`, repeatable.
    Repeated,
    /// `--option A B`, repeatable, with that many values per use.
    Tuple(usize),
}

struct Unsupported {
    name: &'static str,
    shape: Shape,
    heading: &'static str,
    value_name: &'static str,
    help: &'static str,
}

const fn option(
    name: &'static str,
    shape: Shape,
    heading: &'static str,
    value_name: &'static str,
    help: &'static str,
) -> Unsupported {
    Unsupported {
        name,
        shape,
        heading,
        value_name,
        help,
    }
}

use Shape::{Flag, Repeated, Tuple, Value};

// The `--help` headings; `args.rs` uses the same names for the options it builds.
const SERVER: &str = "Server";
const PROCESSES: &str = "Processes";
const TIMEOUTS: &str = "Timeouts";
const URLS: &str = "URLs and files";
const PROXYING: &str = "Proxying";
const DEBUGGING: &str = "Debugging and monitoring";

/// Every mod_wsgi-express `start-server` option (mod_wsgi 6.1) not built yet, in
/// mod_wsgi-express's order. Names and shapes are theirs; the descriptions are ours.
#[rustfmt::skip]
const UNSUPPORTED: &[Unsupported] = &[
    option("deadlock-timeout",           Value,    TIMEOUTS,      "SECONDS",               "Restart a daemon process whose Python interpreter is stuck this long."),
    option("ignore-activity",            Repeated, TIMEOUTS,      "URL-PATH",              "URL path whose requests do not count as activity for --inactivity-timeout."),
    option("interrupt-timeout",          Value,    TIMEOUTS,      "SECONDS",               "Seconds given to requests in progress when a timeout restarts a process."),
    option("proxy-timeout",              Value,    TIMEOUTS,      "SECONDS",               "Seconds to wait for a proxied back end."),
    option("send-buffer-size",           Value,    SERVER,        "NUMBER",                "Size of the kernel send buffer of connections to daemon processes."),
    option("receive-buffer-size",        Value,    SERVER,        "NUMBER",                "Size of the kernel receive buffer of connections to daemon processes."),
    option("response-flush-delay",       Value,    TIMEOUTS,      "MILLISECONDS",          "Milliseconds before buffered response data is flushed to the client."),
    option("proxy-mount-point",          Tuple(2), PROXYING,      "URL-PATH URL",          "Forward requests below a URL path to another server."),
    option("proxy-url-alias",            Tuple(2), PROXYING,      "URL-PATH URL",          "Older name of --proxy-mount-point."),
    option("proxy-virtual-host",         Tuple(2), PROXYING,      "HOSTNAME URL",          "Forward requests for a host name to another server."),
    option("server-metrics",             Flag,     DEBUGGING,     "",                      "Collect server metrics for the application to read."),
    option("telemetry-service",          Value,    DEBUGGING,     "TARGET",                "Where telemetry is sent."),
    option("enable-telemetry",           Flag,     DEBUGGING,     "",                      "Collect telemetry about requests and processes."),
    option("telemetry-ui-port",          Value,    DEBUGGING,     "NUMBER",                "Port of the telemetry dashboard."),
    option("telemetry-interval",         Value,    DEBUGGING,     "SECONDS",               "Seconds between telemetry reports."),
    option("slow-requests",              Value,    DEBUGGING,     "SECONDS",               "Report requests slower than this many seconds."),
    option("telemetry-options",          Repeated, DEBUGGING,     "ARGS",                  "Extra options of the telemetry service."),
    option("socket-prefix",              Value,    PROCESSES,     "DIRECTORY-PATH",        "Directory and name prefix of the UNIX sockets to daemon processes."),
    option("with-php5",                  Flag,     URLS,          "",                      "Also serve PHP files through php-fpm."),
    option("with-cgi",                   Flag,     URLS,          "",                      "Also run CGI scripts from the document root."),
    option("service-script",             Tuple(2), PROCESSES,     "SERVICE SCRIPT-PATH",   "Run a Python script as a managed background service."),
    option("service-user",               Tuple(2), PROCESSES,     "SERVICE USERNAME",      "User a managed service runs as."),
    option("service-group",              Tuple(2), PROCESSES,     "SERVICE GROUP",         "Group a managed service runs as."),
    option("service-log-file",           Tuple(2), PROCESSES,     "SERVICE FILE-NAME",     "Log file of a managed service."),
    option("enable-debugger",            Flag,     DEBUGGING,     "",                      "Start pdb when the application raises (with --debug-mode)."),
    option("debugger-startup",           Flag,     DEBUGGING,     "",                      "Start pdb when the application is loaded (with --debug-mode)."),
    option("enable-coverage",            Flag,     DEBUGGING,     "",                      "Measure code coverage of the application."),
    option("coverage-directory",         Value,    DEBUGGING,     "DIRECTORY-PATH",        "Where the coverage report is written."),
    option("enable-profiler",            Flag,     DEBUGGING,     "",                      "Profile each request."),
    option("profiler-directory",         Value,    DEBUGGING,     "DIRECTORY-PATH",        "Where the profiles are written."),
    option("enable-recorder",            Flag,     DEBUGGING,     "",                      "Record each request and response."),
    option("recorder-directory",         Value,    DEBUGGING,     "DIRECTORY-PATH",        "Where recorded requests and responses are written."),
    option("enable-gdb",                 Flag,     DEBUGGING,     "",                      "Run the server under gdb."),
    option("gdb-executable",             Value,    DEBUGGING,     "FILE-PATH",             "The gdb program for --enable-gdb."),
];

/// Adds every unsupported option to the `start-server` subcommand.
pub(super) fn add_to(command: Command) -> Command {
    ["start-server", "setup-server", "config-test"]
        .into_iter()
        .fold(command, |command, name| {
            command.mut_subcommand(name, add_unsupported)
        })
}

fn add_unsupported(mut start_server: Command) -> Command {
    {
        for entry in UNSUPPORTED {
            let mut arg = Arg::new(entry.name)
                .long(entry.name)
                .help(format!("{} [not supported yet]", entry.help))
                .help_heading(entry.heading);
            arg = match entry.shape {
                Flag => arg.action(ArgAction::SetTrue),
                Value => arg.action(ArgAction::Set).value_name(entry.value_name),
                Repeated => arg.action(ArgAction::Append).value_name(entry.value_name),
                Tuple(count) => arg
                    .action(ArgAction::Append)
                    .num_args(count)
                    .value_names(entry.value_name.split(' ')),
            };
            start_server = start_server.arg(arg);
        }
        start_server
    }
}

/// The unsupported options the user gave, as `--name`.
pub(super) fn given(matches: &ArgMatches) -> Vec<String> {
    UNSUPPORTED
        .iter()
        .filter(|entry| matches.value_source(entry.name) == Some(ValueSource::CommandLine))
        .map(|entry| format!("--{}", entry.name))
        .collect()
}

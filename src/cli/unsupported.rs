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

use Shape::{Flag, Tuple, Value};

// The `--help` headings; `args.rs` uses the same names for the options it builds.
const SERVER: &str = "Server";
const TIMEOUTS: &str = "Timeouts";
const PROXYING: &str = "Proxying";

/// Every mod_wsgi-express `start-server` option (mod_wsgi 6.1) not built yet, in
/// mod_wsgi-express's order. Names and shapes are theirs; the descriptions are ours.
#[rustfmt::skip]
const UNSUPPORTED: &[Unsupported] = &[
    option("http2",                      Flag,     SERVER,        "",                      "Also speak HTTP/2."),
    option("proxy-timeout",              Value,    TIMEOUTS,      "SECONDS",               "Seconds to wait for a proxied back end."),
    option("proxy-mount-point",          Tuple(2), PROXYING,      "URL-PATH URL",          "Forward requests below a URL path to another server."),
    option("proxy-url-alias",            Tuple(2), PROXYING,      "URL-PATH URL",          "Older name of --proxy-mount-point."),
    option("proxy-virtual-host",         Tuple(2), PROXYING,      "HOSTNAME URL",          "Forward requests for a host name to another server."),
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

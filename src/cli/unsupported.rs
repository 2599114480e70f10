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
}

struct Unsupported {
    name: &'static str,
    shape: Shape,
    heading: &'static str,
    help: &'static str,
}

const fn option(
    name: &'static str,
    shape: Shape,
    heading: &'static str,
    help: &'static str,
) -> Unsupported {
    Unsupported {
        name,
        shape,
        heading,
        help,
    }
}

use Shape::Flag;

// The `--help` headings; `args.rs` uses the same names for the options it builds.
const SERVER: &str = "Server";

/// Every mod_wsgi-express `start-server` option (mod_wsgi 6.1) not built yet, in
/// mod_wsgi-express's order. Names and shapes are theirs; the descriptions are ours.
#[rustfmt::skip]
const UNSUPPORTED: &[Unsupported] = &[
    option("http2",                      Flag,     SERVER,        "Also speak HTTP/2."),
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

//! mod_wsgi-express options that Ferrule recognises but does not build yet.
//!
//! Each is declared with its real name and shape, shows in `--help` under its heading, and
//! is refused by name at start-up (exit code 2): never silently ignored. When an option is
//! built it moves from this table to `args.rs`.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// How an option takes values.
#[derive(Clone, Copy)]
#[allow(dead_code)] // Every shape is used once the table lists all options.
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

use Shape::{Flag, Repeated, Tuple, Value};

const UNSUPPORTED: &[Unsupported] = &[option(
    "ssl-port",
    Value,
    "Server",
    "Port to listen on for HTTPS.",
)];

/// Adds every unsupported option to the `start-server` subcommand.
pub(super) fn add_to(command: Command) -> Command {
    command.mut_subcommand("start-server", |mut start_server| {
        for entry in UNSUPPORTED {
            let mut arg = Arg::new(entry.name)
                .long(entry.name)
                .help(format!("{} [not supported yet]", entry.help))
                .help_heading(entry.heading);
            arg = match entry.shape {
                Flag => arg.action(ArgAction::SetTrue),
                Value => arg.action(ArgAction::Set).value_name("VALUE"),
                Repeated => arg.action(ArgAction::Append).value_name("VALUE"),
                Tuple(count) => arg
                    .action(ArgAction::Append)
                    .num_args(count)
                    .value_name("VALUE"),
            };
            start_server = start_server.arg(arg);
        }
        start_server
    })
}

/// The unsupported options the user gave, as `--name`.
pub(super) fn given(matches: &ArgMatches) -> Vec<String> {
    UNSUPPORTED
        .iter()
        .filter(|entry| matches.value_source(entry.name) == Some(ValueSource::CommandLine))
        .map(|entry| format!("--{}", entry.name))
        .collect()
}

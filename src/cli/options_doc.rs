//! `docs/options.md`, generated from the command line definition so that the reference
//! can never drift from `--help`. A unit test fails when the file is stale; run
//! `FERRULE_UPDATE_DOCS=1 cargo test options_doc` to rewrite it.

use clap::CommandFactory;

use super::args;

/// The options reference as Markdown, grouped by `--help` heading.
pub(super) fn render() -> String {
    let command = args::Cli::command();
    let Some(start_server) = command.find_subcommand("start-server") else {
        return String::new();
    };
    let mut headings: Vec<String> = Vec::new();
    for arg in start_server.get_arguments() {
        let heading = arg.get_help_heading().unwrap_or("General").to_owned();
        if arg.get_long().is_some() && !headings.contains(&heading) {
            headings.push(heading);
        }
    }
    let mut text = String::from(
        "# `ferrule start-server` options\n\n\
         Generated from the command line definition (`src/cli/`); do not edit by hand.\n\
         Option names, value shapes and defaults are mod_wsgi-express's: every one of its\n\
         `start-server` options is here. Options that only configure Apache say so: *Ignored here* ones are accepted with a\n\
         warning at start-up (on the terminal and in the error log), *Refused* ones stop\n\
         start-up (exit status 2); each gives its reason.\n\n\
         Usage: `ferrule start-server [OPTIONS] [SCRIPT]`\n",
    );
    for heading in headings {
        text.push_str(&format!(
            "\n## {heading}\n\n| option | default | description |\n|---|---|---|\n"
        ));
        for arg in start_server.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.get_help_heading().unwrap_or("General") != heading {
                continue;
            }
            // A flag (`--embedded-mode`) takes no value, whatever name clap gives it.
            let values = arg
                .get_value_names()
                .filter(|_| arg.get_action().takes_values())
                .map(|names| {
                    names
                        .iter()
                        .map(|name| format!(" {name}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let default = if default.is_empty() || default == "false" {
                String::new()
            } else {
                format!("`{default}`")
            };
            // A `|` inside a table cell would end the cell.
            let values = values.replace('|', "\\|");
            text.push_str(&format!("| `--{long}{values}` | {default} | {help} |\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn options_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/options.md");
        let rendered = super::render();
        if std::env::var_os("FERRULE_UPDATE_DOCS").is_some() {
            fs_err::write(path, &rendered).unwrap();
        }
        let current = fs_err::read_to_string(path).unwrap_or_default();
        assert!(
            current == rendered,
            "docs/options.md is stale: run FERRULE_UPDATE_DOCS=1 cargo test options_doc"
        );
    }
}

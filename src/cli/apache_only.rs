//! mod_wsgi-express's options that configure Apache itself (and Apache's side of
//! mod_wsgi's daemon sockets). There is no Apache here, so
//! each is either accepted with a warning, when leaving it out changes nothing a client
//! or the application sees, or refused with the reason and what to do instead, when
//! dropping it would silently lose something the user asked for (access rules, rewrites).
//! `--shell-executable` is the exception: it names the shell of the control script,
//! which Ferrule writes too, so it is built.

use std::path::{Path, PathBuf};

use clap::Args;

use super::config::ConfigError;

const APACHE: &str = "Apache compatibility";

/// The shells that run `apachectl` when `--shell-executable` is not given, the first
/// that exists (mod_wsgi-express prefers bash too).
const DEFAULT_SHELLS: [&str; 2] = ["/bin/bash", "/bin/sh"];

#[derive(Debug, Args)]
pub(super) struct ApacheOnlyArgs {
    /// Ignored here, with a warning: mod_wsgi-express serves its own manual at
    /// `/__wsgi__/docs`; Ferrule ships none, and that path goes to the application.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_docs: bool,

    /// Refused: an Apache configuration file has no meaning without Apache, and dropping
    /// it could drop access rules. Give its settings as ferrule options instead.
    #[arg(long = "include-file", action = clap::ArgAction::Append, value_name = "FILE-PATH",
          help_heading = APACHE)]
    pub(super) include_files: Vec<PathBuf>,

    /// Refused: a file of Apache `mod_rewrite` rules has no meaning without Apache. Rewrite
    /// URLs in the application, or in a proxy in front of the server.
    #[arg(long, value_name = "FILE-PATH", help_heading = APACHE)]
    pub(super) rewrite_rules: Option<PathBuf>,

    /// Ignored here, with a warning: it picks Apache's processing model (event, worker,
    /// prefork); Ferrule's front end is its own, sized by --processes and --threads.
    #[arg(long = "server-mpm", action = clap::ArgAction::Append, value_name = "NAME",
          help_heading = APACHE)]
    pub(super) server_mpm: Vec<String>,

    /// Shell named on the first line (#!) of the control script `SERVER_ROOT/apachectl`;
    /// the script is plain POSIX shell, so any POSIX shell works. /bin/bash by default, or
    /// /bin/sh where there is no bash.
    #[arg(long, value_name = "FILE-PATH", help_heading = APACHE)]
    pub(super) shell_executable: Option<PathBuf>,

    /// Ignored here, with a warning: no Apache executable is run.
    #[arg(long, value_name = "FILE-PATH", help_heading = APACHE)]
    pub(super) httpd_executable: Option<PathBuf>,

    /// Ignored here, with a warning: no Apache modules are loaded.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = APACHE)]
    pub(super) modules_directory: Option<PathBuf>,

    /// Ignored here, with a warning: each of Ferrule's processes is a Python program that
    /// ends as Python programs do, and one that does not end in time is killed.
    #[arg(long, help_heading = "Python")]
    pub(super) orphan_interpreter: bool,

    /// Ignored here, with a warning: it sizes Apache's pool of workers (0 to 1 of
    /// --max-clients); Ferrule's front end has no workers to start or keep spare.
    #[arg(long, value_name = "NUMBER", value_parser = parse_share, help_heading = "Processes")]
    pub(super) initial_workers: Option<f64>,

    /// Ignored here, with a warning: as --initial-workers.
    #[arg(long, value_name = "NUMBER", value_parser = parse_share, help_heading = "Processes")]
    pub(super) minimum_spare_workers: Option<f64>,

    /// Ignored here, with a warning: as --initial-workers.
    #[arg(long, value_name = "NUMBER", value_parser = parse_share, help_heading = "Processes")]
    pub(super) maximum_spare_workers: Option<f64>,

    /// Ignored here, with a warning: the front end keeps its connections to the daemon
    /// processes open, and a request waits for a free daemon thread up to --queue-timeout.
    #[arg(long, value_name = "SECONDS", help_heading = "Timeouts")]
    pub(super) connect_timeout: Option<u64>,

    /// Ignored here, with a warning: a response head crosses the daemon socket as one
    /// frame, read whole whatever its size.
    #[arg(long, value_name = "NUMBER", help_heading = "Server")]
    pub(super) header_buffer_size: Option<u64>,
}

/// mod_wsgi-express's check of the worker shares: a number from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("'{text}' is not a number from 0 to 1")),
    }
}

/// What the Apache-only options leave for the rest of the server.
#[derive(Clone, Debug)]
pub struct ApacheOnly {
    /// `--shell-executable`, absolute.
    pub shell_executable: PathBuf,
}

/// Checks the Apache-only options: refusals go to `problems`, the warnings for the
/// options ignored are returned with it.
pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: ApacheOnlyArgs,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> (ApacheOnly, Vec<String>) {
    let ApacheOnlyArgs {
        enable_docs,
        include_files,
        rewrite_rules,
        server_mpm,
        shell_executable,
        httpd_executable,
        modules_directory,
        orphan_interpreter,
        initial_workers,
        minimum_spare_workers,
        maximum_spare_workers,
        connect_timeout,
        header_buffer_size,
    } = args;
    if !include_files.is_empty() {
        problems.push(ConfigError::ApacheOnly {
            option: "include-file",
            reason: "it includes an Apache configuration file, which means nothing without Apache",
            instead: "give the settings it holds as ferrule options (docs/options.md)",
        });
    }
    if rewrite_rules.is_some() {
        problems.push(ConfigError::ApacheOnly {
            option: "rewrite-rules",
            reason: "it names Apache mod_rewrite rules, which mean nothing without Apache",
            instead: "rewrite URLs in the application, or in a proxy in front of ferrule",
        });
    }
    let mut warnings = Vec::new();
    let mut ignore = |given: bool, option: &str, why: &str| {
        if given {
            warnings.push(format!("--{option} is ignored: {why}"));
        }
    };
    ignore(
        enable_docs,
        "enable-docs",
        "ferrule has no mod_wsgi manual to serve; /__wsgi__/docs goes to the application",
    );
    ignore(
        !server_mpm.is_empty(),
        "server-mpm",
        "there is no Apache processing model to choose; --processes and --threads size the server",
    );
    ignore(
        httpd_executable.is_some(),
        "httpd-executable",
        "ferrule runs no Apache executable",
    );
    ignore(
        modules_directory.is_some(),
        "modules-directory",
        "ferrule loads no Apache modules",
    );
    ignore(
        orphan_interpreter,
        "orphan-interpreter",
        "each process ends as a Python program does, and is killed if it does not end in time",
    );
    for (value, option) in [
        (initial_workers, "initial-workers"),
        (minimum_spare_workers, "minimum-spare-workers"),
        (maximum_spare_workers, "maximum-spare-workers"),
    ] {
        ignore(
            value.is_some(),
            option,
            "the front end serves each connection on a task of its own: it has no Apache workers to start or keep spare",
        );
    }
    ignore(
        connect_timeout.is_some(),
        "connect-timeout",
        "the front end keeps its daemon connections open; a request waits for a daemon thread up to --queue-timeout",
    );
    ignore(
        header_buffer_size.is_some(),
        "header-buffer-size",
        "a response head crosses the daemon socket as one frame, read whole",
    );
    let shell_executable = match shell_executable {
        Some(path) => {
            let path = absolute(&path);
            if !is_executable_file(&path) {
                problems.push(ConfigError::NotAnExecutable {
                    option: "shell-executable",
                    path: path.clone(),
                });
            }
            path
        }
        None => PathBuf::from(
            DEFAULT_SHELLS
                .into_iter()
                .find(|shell| is_executable_file(Path::new(shell)))
                .unwrap_or("/bin/sh"),
        ),
    };
    (ApacheOnly { shell_executable }, warnings)
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

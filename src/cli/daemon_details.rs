//! The finer options of the daemon processes, as mod_wsgi's `WSGIDaemonProcess` has them:
//! `--deadlock-timeout`, `--ignore-activity`, `--socket-prefix`, `--send-buffer-size`,
//! `--receive-buffer-size`, `--interrupt-timeout`; and the one that has nothing to act on
//! here and is accepted with a warning saying why: `--response-flush-delay`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::config::ConfigError;

/// mod_wsgi-express's `--deadlock-timeout` default, in seconds (its option list; the
/// `WSGIDaemonProcess` directive alone defaults to 300).
pub(super) const DEFAULT_DEADLOCK_TIMEOUT: u64 = 60;

#[derive(Debug, Args)]
pub(super) struct DaemonDetailsArgs {
    /// Seconds a daemon process may go without any thread getting Python's GIL (a C
    /// extension holding it) before the process is stopped and replaced.
    #[arg(long, default_value_t = DEFAULT_DEADLOCK_TIMEOUT, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Timeouts")]
    pub(super) deadlock_timeout: u64,

    /// URL path whose requests do not count as activity for --inactivity-timeout (a
    /// health check, say); matched as a prefix of the path, as Apache's `<Location>`. May
    /// be given more than once.
    #[arg(long, action = clap::ArgAction::Append, value_name = "URL-PATH",
          help_heading = "Timeouts")]
    pub(super) ignore_activity: Vec<String>,

    /// Seconds a request past --request-timeout is given to unwind once a `RequestTimeout`
    /// exception has been raised in the daemon thread running it (it then gets 504 and the
    /// process goes on); a request still running after that has its process replaced. 0,
    /// the default: no exception, the process is replaced at once. Daemon mode only.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        help_heading = "Timeouts"
    )]
    pub(super) interrupt_timeout: u64,

    /// Directory where the daemon processes' UNIX socket is made (in a folder
    /// ferrule-PORT of it); the server root's `run` folder by default. For a server root
    /// whose path is too long for a UNIX socket, or on a file system without sockets.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "Processes")]
    pub(super) socket_prefix: Option<PathBuf>,

    /// Kernel send buffer (`SO_SNDBUF`), in bytes, of the daemon processes' connections to
    /// the front end, which carry responses; 0 for the system's default.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NUMBER",
        help_heading = "Server"
    )]
    pub(super) send_buffer_size: u32,

    /// Kernel receive buffer (`SO_RCVBUF`), in bytes, of the daemon processes'
    /// connections to the front end, which carry requests; 0 for the system's default.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "NUMBER",
        help_heading = "Server"
    )]
    pub(super) receive_buffer_size: u32,

    /// Accepted, with a warning: the front end sends each piece of a response as soon as
    /// a daemon process delivers it, so there is no delayed flush to tune.
    #[arg(long, value_name = "MILLISECONDS", help_heading = "Timeouts")]
    pub(super) response_flush_delay: Option<u64>,
}

/// The finer settings of the daemon processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonDetails {
    /// `--deadlock-timeout`.
    pub deadlock_timeout: Duration,
    /// `--ignore-activity` paths.
    pub ignore_activity: Vec<String>,
    /// The folder of the daemon socket: `--socket-prefix`/ferrule-PORT, else `None` (the
    /// server root's `run`).
    pub socket_directory: Option<PathBuf>,
    /// `--send-buffer-size`; 0: the system's.
    pub send_buffer_size: u32,
    /// `--receive-buffer-size`; 0: the system's.
    pub receive_buffer_size: u32,
    /// `--interrupt-timeout`; `None` for 0 (no exception raised in the request's thread).
    pub interrupt_timeout: Option<Duration>,
}

pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
    args: DaemonDetailsArgs,
    port: u16,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> DaemonDetails {
    let DaemonDetailsArgs {
        deadlock_timeout,
        ignore_activity,
        interrupt_timeout,
        socket_prefix,
        send_buffer_size,
        receive_buffer_size,
        response_flush_delay,
    } = args;
    if response_flush_delay.is_some() {
        warnings.push(
            "--response-flush-delay is ignored: the front end sends each piece of a response as soon as it arrives from the daemon process, with no delayed flush".to_owned(),
        );
    }
    for path in &ignore_activity {
        if !path.starts_with('/') {
            problems.push(ConfigError::NotAUrlPath {
                option: "ignore-activity",
                path: path.clone(),
            });
        }
    }
    let socket_directory = socket_prefix.map(|directory| {
        let directory = absolute(&directory);
        if !directory.is_dir() {
            problems.push(ConfigError::NotADirectory {
                option: "socket-prefix",
                path: directory.clone(),
            });
        }
        directory.join(format!("ferrule-{port}"))
    });
    DaemonDetails {
        deadlock_timeout: Duration::from_secs(deadlock_timeout),
        ignore_activity,
        socket_directory,
        send_buffer_size,
        receive_buffer_size,
        interrupt_timeout: (interrupt_timeout > 0).then(|| Duration::from_secs(interrupt_timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DaemonDetailsArgs {
        DaemonDetailsArgs {
            deadlock_timeout: DEFAULT_DEADLOCK_TIMEOUT,
            ignore_activity: Vec::new(),
            interrupt_timeout: 0,
            socket_prefix: None,
            send_buffer_size: 0,
            receive_buffer_size: 0,
            response_flush_delay: None,
        }
    }

    fn resolved(args: DaemonDetailsArgs) -> (DaemonDetails, Vec<String>, usize) {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let details = resolve(&mut problems, &mut warnings, args, 8000, &|path| {
            Path::new("/").join(path)
        });
        (details, warnings, problems.len())
    }

    #[test]
    fn a_path_without_its_slash_is_refused() {
        let (_, _, problems) = resolved(DaemonDetailsArgs {
            ignore_activity: vec!["health".to_owned()],
            ..args()
        });
        assert_eq!(problems, 1);
    }

    #[test]
    fn the_socket_folder_is_named_after_the_port() {
        let (details, _, problems) = resolved(DaemonDetailsArgs {
            socket_prefix: Some(PathBuf::from("tmp")),
            ..args()
        });
        assert_eq!(problems, 0);
        assert_eq!(
            details.socket_directory.as_deref(),
            Some(Path::new("/tmp/ferrule-8000"))
        );
    }

    #[test]
    fn flush_delay_is_accepted_with_a_warning() {
        let (_, warnings, problems) = resolved(DaemonDetailsArgs {
            response_flush_delay: Some(5),
            ..args()
        });
        assert_eq!(problems, 0);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("--response-flush-delay is ignored"));
    }

    #[test]
    fn interrupt_timeout_zero_means_no_interruption() {
        let (details, warnings, _) = resolved(args());
        assert_eq!(details.interrupt_timeout, None);
        assert!(warnings.is_empty());
        let (details, warnings, _) = resolved(DaemonDetailsArgs {
            interrupt_timeout: 5,
            ..args()
        });
        assert_eq!(details.interrupt_timeout, Some(Duration::from_secs(5)));
        assert!(warnings.is_empty());
    }
}

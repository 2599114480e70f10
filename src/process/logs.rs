//! The logs of a process, opened from the configuration: the error log (the terminal or
//! `error_log` in the server root) and the access log (`--access-log`).

use crate::cli::Config;
use crate::logs::Level;
use crate::logs::access_log::AccessLog;
use crate::logs::error_log::{self, Destination};
use crate::logs::rotate::LogFile;

/// Opens this process's error log: the terminal, or `error_log` in the server root.
pub fn open_error_log(config: &Config) {
    let destination = if config.logs.log_to_terminal {
        Destination::Stderr
    } else {
        match LogFile::open(&config.logs.error_log, config.logs.rotate_at) {
            Ok(file) => Destination::File(file),
            Err(error) => {
                crate::logs::write_terminal(&format!(
                    "ferrule: warning: cannot open the error log, using the terminal: {error}\n"
                ));
                Destination::Stderr
            }
        }
    };
    error_log::init(
        config.logs.level,
        destination,
        config.logs.error_log_format.clone(),
    );
    error_log::set_verbose(config.logs.verbose_debugging);
}

/// Opens the access log when `--access-log` is on: stdout, or the file configured.
pub fn open_access_log(config: &Config) -> Option<AccessLog> {
    if !config.logs.access_log_enabled {
        return None;
    }
    match &config.logs.access_log {
        None => Some(AccessLog::new(
            crate::logs::Destination::Stdout,
            config.logs.access_log_format.clone(),
        )),
        Some(path) => match LogFile::open(path, config.logs.rotate_at) {
            Ok(file) => Some(AccessLog::new(
                crate::logs::Destination::File(file),
                config.logs.access_log_format.clone(),
            )),
            Err(error) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!("cannot open the access log: {error}"),
                );
                None
            }
        },
    }
}

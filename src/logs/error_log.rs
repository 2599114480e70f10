//! The error log: Apache's line format, its severity levels, one sink per process.
//!
//! Lines look like Apache's so that existing tools and habits keep working:
//! `[Wed Nov 25 05:43:55.123456 2026] [wsgi:error] [pid 42:tid 43] message`.
//! Every line of a multi-line message (a traceback) becomes its own entry, as mod_wsgi does.

use std::io::Write;
use std::str::FromStr;
use std::sync::OnceLock;

use super::error_format::{ErrorFormat, Piece as FormatPiece};
use super::time::LocalTime;
use super::writer::{self, LogId};

/// Apache's severity levels, most severe first; `--log-level` picks the least severe logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub const NAMES: [&'static str; 8] = [
        "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        const ALL: [Level; 8] = [
            Level::Emerg,
            Level::Alert,
            Level::Crit,
            Level::Error,
            Level::Warn,
            Level::Notice,
            Level::Info,
            Level::Debug,
        ];
        ALL.into_iter()
            .find(|level| level.name() == name)
            .ok_or_else(|| format!("unknown log level '{name}'"))
    }
}

pub use super::writer::Destination;

struct ErrorLog {
    level: Level,
    /// `--error-log-format`; `None`: Apache's default shape (the module doc's).
    format: Option<ErrorFormat>,
    /// Lines from the reactor go through the log writer thread, so that it never waits on
    /// the disk; other threads write theirs directly.
    sink: LogId,
}

static ERROR_LOG: OnceLock<ErrorLog> = OnceLock::new();

/// Sets this process's error log. Later calls are ignored: one process, one error log.
pub fn init(level: Level, destination: Destination, format: Option<ErrorFormat>) {
    if ERROR_LOG.get().is_some() {
        return;
    }
    let _ = ERROR_LOG.set(ErrorLog {
        level,
        format,
        sink: writer::register(destination, "error log"),
    });
}

/// `--verbose-debugging`: each request's way through the server is logged.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns `--verbose-debugging` on for this process.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// True with `--verbose-debugging`: callers test it before formatting a trace line.
pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A `--verbose-debugging` line: written at level debug whatever `--log-level` says (the
/// option asks for them), through the log writer like every line of the reactor.
pub fn trace(remote: Option<&str>, message: &str) {
    if verbose() {
        write_line(Level::Debug, "ferrule", remote, message);
    }
}

/// True when a message of `level` would be written.
pub fn enabled(level: Level) -> bool {
    level <= ERROR_LOG.get().map_or(Level::Warn, |log| log.level)
}

/// Writes `message` under `module` (`wsgi`, `ferrule`, ...) at `level`.
pub fn log(level: Level, module: &str, message: &str) {
    log_with_context(level, module, None, message);
}

/// As [`log`], adding `[remote ADDR]` for messages that belong to a request.
pub fn log_with_context(level: Level, module: &str, remote: Option<&str>, message: &str) {
    if !enabled(level) {
        return;
    }
    write_line(level, module, remote, message);
}

fn write_line(level: Level, module: &str, remote: Option<&str>, message: &str) {
    let now = LocalTime::now();
    let pid = std::process::id();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    if let Some(format) = ERROR_LOG.get().and_then(|log| log.format.as_ref()) {
        let mut text = String::with_capacity(message.len() + 96);
        let message = message.strip_suffix('\n').unwrap_or(message);
        for line in message.split('\n') {
            for piece in &format.pieces {
                match piece {
                    FormatPiece::Text(literal) => text.push_str(literal),
                    FormatPiece::Time { micros: true } => text.push_str(&now.error_log_stamp()),
                    FormatPiece::Time { micros: false } => {
                        text.push_str(&now.error_log_stamp_seconds());
                    }
                    FormatPiece::Level => text.push_str(level.name()),
                    FormatPiece::Module => text.push_str(module),
                    FormatPiece::Pid => text.push_str(&pid.to_string()),
                    FormatPiece::Tid => text.push_str(&tid.to_string()),
                    FormatPiece::Client => text.push_str(remote.unwrap_or("-")),
                    FormatPiece::Message => text.push_str(line),
                }
            }
            text.push('\n');
        }
        write_raw(text.as_bytes());
        return;
    }
    let stamp = now.error_log_stamp();
    let remote = remote
        .map(|addr| format!(" [remote {addr}]"))
        .unwrap_or_default();
    let mut text = String::with_capacity(message.len() + 96);
    let message = message.strip_suffix('\n').unwrap_or(message);
    for line in message.split('\n') {
        text.push_str(&format!(
            "[{stamp}] [{module}:{}] [pid {pid}:tid {tid}]{remote} {line}\n",
            level.name()
        ));
    }
    write_raw(text.as_bytes());
}

fn write_raw(bytes: &[u8]) {
    match ERROR_LOG.get() {
        Some(log) => writer::write(log.sink, bytes),
        None => {
            let _ = std::io::stderr().write_all(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order_like_apache() {
        assert_eq!("warn".parse::<Level>(), Ok(Level::Warn));
        assert!(Level::Error < Level::Info);
        assert!("verbose".parse::<Level>().is_err());
        for name in Level::NAMES {
            assert_eq!(name.parse::<Level>().unwrap().name(), name);
        }
    }
}

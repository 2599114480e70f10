//! Logs in the formats Apache users' tools read: the error log (start-up messages, request
//! failures, whatever the application prints) and the access log (one line per response).
//!
//! Both are process-wide sinks set up once at start-up; the rest of the crate only calls
//! [`error_log::log`] and [`access_log::AccessLog::record`]. Both hand their lines to one
//! writer thread per process (`writer`), so no caller waits on a disk; a process holds a
//! [`FlushOnExit`] so that none is lost when it stops. Nothing here knows about Python.

pub mod access_format;
pub mod access_log;
pub mod error_format;
pub mod error_log;
pub mod rotate;
mod time;
mod writer;

pub use writer::{CLOSE_TIMEOUT, Destination, FlushOnExit, close};

pub use error_log::Level;

/// Writes text meant for the person at the terminal (errors before logging starts).
pub fn write_terminal(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Writes the start-up banner and other output that belongs on standard output.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

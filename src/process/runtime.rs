//! The tokio runtime every process runs its I/O on, and the way out of a process whose
//! application threads do not finish.

use crate::cli::ExitStatus;
use crate::logs::{Level, error_log};

/// The single-threaded tokio runtime every process runs its I/O on.
pub fn new_runtime(purpose: &str) -> Result<tokio::runtime::Runtime, ExitStatus> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            error_log::log(
                Level::Crit,
                "ferrule",
                &format!("cannot start the {purpose} runtime: {error}"),
            );
            ExitStatus::InternalError
        })
}

/// Returns `status` when every application thread finished; otherwise ends the process
/// at once with it, since a thread stuck in the application would keep Python's
/// finalisation waiting forever.
pub fn exit_now_if_stuck(all_finished: bool, status: ExitStatus) -> ExitStatus {
    if !all_finished {
        error_log::log(
            Level::Warn,
            "ferrule",
            "requests still running when the process stopped; exiting anyway",
        );
        crate::logs::close(crate::logs::CLOSE_TIMEOUT);
        // SAFETY: _exit ends the process at once, which is the point (see above).
        unsafe { libc::_exit(status as i32) };
    }
    status
}

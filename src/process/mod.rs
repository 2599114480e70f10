//! What every process of the server shares, whatever its mode: the bottom layer that
//! embedded mode, daemon mode and the supervisor build on, so that no mode borrows from
//! another.
//! - `runtime`: the tokio runtime of a process, and the exit of a process whose
//!   application threads are stuck.
//! - `logs`: the error log and the access log opened from the configuration.
//! - `executor`: the WSGI executor started from the configuration (the Python side).

mod executor;
mod logs;
mod runtime;

pub use executor::{developer_tools, start_executor};
pub use logs::{open_access_log, open_error_log};
pub use runtime::{exit_now_if_stuck, new_runtime};

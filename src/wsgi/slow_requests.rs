//! `--slow-requests SECONDS`: a watcher thread per process that writes to the error log,
//! once per request, each request still running past SECONDS: its request id, method and
//! target, the application thread running it, and that thread's Python stack (read with
//! `sys._current_frames()`, so the request goes on undisturbed).
//!
//! It reads the executor's [`ThreadActivity`]; the request path pays nothing for it but
//! the request line the activity board keeps while it is on.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::handoff::activity::{ThreadActivity, ThreadState};
use crate::logs::{Level, error_log};

/// The watcher; dropping it stops the thread (without waiting for it).
pub(crate) struct SlowRequestWatch {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl SlowRequestWatch {
    /// Starts watching `activity` for requests running longer than `threshold`.
    pub(crate) fn start(
        threshold: Duration,
        activity: Arc<ThreadActivity>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("ferrule-slow-requests".to_owned())
            .spawn(move || watch(threshold, &activity, &stopped))?;
        Ok(Self { stop })
    }
}

impl Drop for SlowRequestWatch {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_one();
    }
}

/// How often the board is read: often enough that a request is reported within a quarter
/// of the threshold after crossing it, never more than 100 times a second.
fn period(threshold: Duration) -> Duration {
    (threshold / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

fn watch(threshold: Duration, activity: &ThreadActivity, stop: &(Mutex<bool>, Condvar)) {
    // Per thread, the request count at the last report: a thread's requests are numbered
    // by its count, so each is reported once.
    let mut reported: Vec<u64> = Vec::new();
    let (stopped, wake) = stop;
    loop {
        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, period(threshold), |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard {
            return;
        }
        drop(guard);
        let threads = activity.threads();
        reported.resize(threads.len(), 0);
        let slow: Vec<(usize, ThreadState)> = threads
            .into_iter()
            .enumerate()
            .filter(|(index, thread)| {
                thread.busy_for.is_some_and(|busy| busy >= threshold)
                    && reported[*index] != thread.requests
            })
            .collect();
        if slow.is_empty() {
            continue;
        }
        let stacks = Python::attach(|py| {
            slow.iter()
                .map(|(_, thread)| python_stack(py, thread.python_thread))
                .collect::<Vec<_>>()
        });
        for ((index, thread), stack) in slow.into_iter().zip(stacks) {
            reported[index] = thread.requests;
            let running = thread.busy_for.unwrap_or_default().as_secs_f64();
            error_log::log(
                Level::Warn,
                "wsgi",
                &format!(
                    "slow request {} '{}' still running after {running:.1} s (--slow-requests {}) on thread ferrule-wsgi-{index}; its Python stack, most recent call last:\n{stack}",
                    thread.request_id,
                    thread.request,
                    threshold.as_secs_f64(),
                ),
            );
        }
    }
}

/// The formatted stack of the Python thread `ident`, or why there is none.
fn python_stack(py: Python<'_>, ident: u64) -> String {
    let stack = (|| -> PyResult<Option<String>> {
        let frames = py.import("sys")?.call_method0("_current_frames")?;
        let frames = frames.cast::<PyDict>()?;
        let Some(frame) = frames.get_item(ident)? else {
            return Ok(None);
        };
        let lines: Vec<String> = py
            .import("traceback")?
            .call_method1("format_stack", (frame,))?
            .extract()?;
        Ok(Some(lines.concat()))
    })();
    match stack {
        Ok(Some(stack)) => stack,
        Ok(None) => "(the thread has no Python frame now)\n".to_owned(),
        Err(error) => format!("(the stack could not be read: {error})\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_is_read_four_times_per_threshold_within_bounds() {
        assert_eq!(period(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(period(Duration::from_millis(1)), Duration::from_millis(10));
        assert_eq!(period(Duration::from_secs(60)), Duration::from_secs(1));
    }
}

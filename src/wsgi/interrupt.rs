//! `--interrupt-timeout` in a daemon process, as mod_wsgi 6 has it: a request that runs
//! past `--request-timeout` gets [`RequestTimeout`] raised in the application thread
//! running it (`PyThreadState_SetAsyncExc`), so that pure Python code unwinds, the client
//! gets 504 and the thread serves again. The front end gives the request
//! `--interrupt-timeout` more seconds; a request still running then (stuck in a C call,
//! or one that swallowed the exception) has its process replaced, as without the option.
//!
//! This module owns the table of the requests the threads run and the thread that
//! watches it. The exception is raised and a pending one cleared only under the table's
//! lock, with the thread's request known to be the one that ran too long: it never lands
//! in the next request.

use std::ffi::{c_long, c_ulong};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::RequestId;
use crate::logs::{Level, error_log};

pyo3::create_exception!(
    ferrule,
    RequestTimeout,
    pyo3::exceptions::PyBaseException,
    "Raised in the thread of a request that ran past --request-timeout (with \
     --interrupt-timeout). Derived from BaseException so that `except Exception` does \
     not catch it; code that catches it for clean-up should raise it again."
);

/// The two timeouts, when both are set.
#[derive(Clone, Copy, Debug)]
pub struct InterruptSettings {
    pub request_timeout: Duration,
    pub interrupt_timeout: Duration,
}

/// A request one application thread runs.
pub(crate) struct Running {
    pub(crate) request_id: RequestId,
    /// `METHOD target`.
    pub(crate) description: String,
    started: Instant,
    /// `threading.get_ident()` of the thread.
    ident: c_ulong,
    /// `RequestTimeout` was raised in it.
    pub(crate) interrupted: bool,
}

/// The requests the application threads run, by thread index.
pub(crate) struct RunningRequests {
    settings: InterruptSettings,
    threads: Mutex<Vec<Option<Running>>>,
}

impl RunningRequests {
    fn new(settings: InterruptSettings, n_threads: usize) -> Self {
        Self {
            settings,
            threads: Mutex::new((0..n_threads).map(|_| None).collect()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Running>>> {
        self.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Thread `index` (the calling thread, attached) starts `request`.
    pub(crate) fn begin(&self, index: usize, request_id: RequestId, description: String) {
        // SAFETY: no precondition; the calling thread's id as `threading.get_ident()`.
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        if let Some(slot) = self.lock().get_mut(index) {
            *slot = Some(Running {
                request_id,
                description,
                started: Instant::now(),
                ident,
                interrupted: false,
            });
        }
    }

    /// Thread `index` (the calling thread, attached) is done with its request, `close()`
    /// included: an exception raised too late to be seen is withdrawn, so that it cannot
    /// land in what the thread runs next.
    pub(crate) fn end(&self, _py: Python<'_>, index: usize) -> Option<Running> {
        let mut threads = self.lock();
        let running = threads.get_mut(index)?.take()?;
        if running.interrupted {
            // SAFETY: the GIL is held (`_py`); a null exception clears a pending one.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    ident_arg(running.ident),
                    std::ptr::null_mut(),
                );
            }
        }
        Some(running)
    }

    fn anything_overdue(&self) -> bool {
        let limit = self.settings.request_timeout;
        self.lock()
            .iter()
            .flatten()
            .any(|running| !running.interrupted && running.started.elapsed() >= limit)
    }

    /// Raises `RequestTimeout` in each thread whose request ran past the timeout; returns
    /// what to log.
    fn interrupt_overdue(&self, py: Python<'_>) -> Vec<String> {
        let limit = self.settings.request_timeout;
        let exception = py.get_type::<RequestTimeout>();
        let mut said = Vec::new();
        for (index, slot) in self.lock().iter_mut().enumerate() {
            let Some(running) = slot else { continue };
            if running.interrupted || running.started.elapsed() < limit {
                continue;
            }
            // SAFETY: the GIL is held; the exception type outlives the call (a new
            // reference is taken by the interpreter).
            let found = unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(ident_arg(running.ident), exception.as_ptr())
            };
            running.interrupted = true;
            said.push(format!(
                "request {} ({}) ran for longer than --request-timeout ({} s) on application thread {index} (thread id {}); {}",
                running.request_id.text().as_str(),
                running.description,
                limit.as_secs(),
                running.ident,
                if found == 1 {
                    format!(
                        "raised RequestTimeout in it, which has --interrupt-timeout ({} s) to unwind before its process is replaced",
                        self.settings.interrupt_timeout.as_secs()
                    )
                } else {
                    "could not raise RequestTimeout in it (thread not found)".to_owned()
                }
            ));
        }
        said
    }
}

fn ident_arg(ident: c_ulong) -> c_long {
    // CPython takes the `unsigned long` of `threading.get_ident()` as a `long`: the
    // same bits.
    c_long::from_ne_bytes(ident.to_ne_bytes())
}

/// The thread that raises `RequestTimeout` in overdue requests; dropping it stops it.
pub(crate) struct InterruptWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InterruptWatch {
    /// The table the application threads fill and the thread that watches it.
    pub(crate) fn start(
        settings: InterruptSettings,
        n_threads: usize,
    ) -> std::io::Result<(Arc<RunningRequests>, Self)> {
        let running = Arc::new(RunningRequests::new(settings, n_threads));
        let stop = Arc::new(AtomicBool::new(false));
        let tick = (settings.request_timeout / 10)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let thread = {
            let running = Arc::clone(&running);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("ferrule-interrupt-watch".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(tick);
                        // The GIL is taken only when some request is overdue.
                        if stop.load(Ordering::Acquire) || !running.anything_overdue() {
                            continue;
                        }
                        let said = Python::attach(|py| {
                            if stop.load(Ordering::Acquire) {
                                return Vec::new();
                            }
                            running.interrupt_overdue(py)
                        });
                        for line in said {
                            error_log::log(Level::Error, "ferrule", &line);
                        }
                    }
                })?
        };
        Ok((
            running,
            Self {
                stop,
                thread: Some(thread),
            },
        ))
    }

    /// Stops the thread and waits for it; call it detached from Python.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for InterruptWatch {
    fn drop(&mut self) {
        // Not joined here: the caller may hold the GIL the thread waits for.
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

//! What every application thread of a process shares (the application, the environ
//! template, the facts of the process) and the job each takes: a request with the way back
//! to its connection. The executor builds them; `run` uses them for one request.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::Request;
use super::app::{AppSpec, reload_application};
use super::environ::ProcessFacts;
use crate::handoff::reply::ReplySender;
use crate::logs::{Level, error_log};

/// A request waiting for an application thread, with the way back to its connection.
pub(crate) struct Job {
    pub(crate) request: Request,
    pub(crate) reply_tx: ReplySender,
    /// When the request was queued for a thread (its wait is counted from here).
    pub(crate) queued_at: std::time::Instant,
}

/// What every application thread of the process shares.
pub(crate) struct ThreadContext {
    /// The application; replaced in place when its file changed (embedded mode).
    app: std::sync::Mutex<Py<PyAny>>,
    pub(crate) environ_template: Py<PyDict>,
    pub(crate) facts: ProcessFacts,
    /// How the application was loaded, to load it again.
    spec: AppSpec,
    /// Set by [`ThreadContext::request_reload`].
    reload_pending: AtomicBool,
    /// The access-control scripts, run before the application.
    pub(crate) access: super::access::Scripts,
    /// The `--add-handler` scripts' callables, by `HandlerTarget::index`.
    pub(crate) handlers: Vec<Py<PyAny>>,
    /// The requests the threads run, when `--interrupt-timeout` applies (daemon mode).
    pub(crate) running: Option<std::sync::Arc<super::interrupt::RunningRequests>>,
}

impl ThreadContext {
    pub(crate) fn new(
        app: Py<PyAny>,
        handlers: Vec<Py<PyAny>>,
        environ_template: Py<PyDict>,
        facts: ProcessFacts,
        spec: AppSpec,
        access: super::access::Scripts,
        running: Option<std::sync::Arc<super::interrupt::RunningRequests>>,
    ) -> Self {
        Self {
            access,
            running,
            handlers,
            app: std::sync::Mutex::new(app),
            environ_template,
            facts,
            spec,
            reload_pending: AtomicBool::new(false),
        }
    }

    /// The `--add-handler` script number `index` and its callable.
    pub(crate) fn handler(
        &self,
        py: Python<'_>,
        index: u16,
    ) -> Option<(&std::path::Path, Py<PyAny>)> {
        let index = usize::from(index);
        let callable = self.handlers.get(index)?.clone_ref(py);
        Some((self.spec.handler_scripts.get(index)?.as_path(), callable))
    }

    /// Makes the next request load the application again first.
    pub(crate) fn request_reload(&self) {
        self.reload_pending.store(true, Ordering::Release);
    }

    /// The application to call for the next request, reloaded first if that was asked.
    pub(crate) fn application(&self, py: Python<'_>) -> Py<PyAny> {
        if self.reload_pending.swap(false, Ordering::AcqRel) {
            match reload_application(py, &self.spec) {
                Ok(app) => {
                    let previous = std::mem::replace(&mut *self.lock_app(), app);
                    // Dropped with the lock released: its finalizer may release the GIL,
                    // and a thread waiting for the lock while attached would then never
                    // give the GIL back.
                    drop(previous);
                    error_log::log(
                        Level::Info,
                        "wsgi",
                        "the application's file changed; reloaded it",
                    );
                }
                Err(error) => error_log::log(
                    Level::Error,
                    "wsgi",
                    &format!(
                        "the application's file changed but reloading it failed; still serving the previous code: {error}"
                    ),
                ),
            }
        }
        self.lock_app().clone_ref(py)
    }

    fn lock_app(&self) -> std::sync::MutexGuard<'_, Py<PyAny>> {
        self.app
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! The request events of the `mod_wsgi` module (`host_module.rs`): `request_started`,
//! `request_exception` and `request_finished`, with the payload keys mod_wsgi documents
//! that mean something here. Built only when someone subscribed: `run.rs` asks
//! [`RequestEvents::start`] only then.

use std::time::SystemTime;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::RequestId;
use super::environ::seconds_since_epoch;
use super::host_module::{Host, RequestScope, ResourceUsage, resource_usage};

/// The events of one request, from `request_started` to `request_finished`.
pub(crate) struct RequestEvents<'py> {
    host: &'static Host,
    /// The keys every event of the request carries, and those `request_finished`
    /// repeats from `request_started`.
    common: Bound<'py, PyDict>,
    application_start: SystemTime,
    cpu_at_start: ResourceUsage,
}

/// What `request_started` says about a request.
pub(crate) struct Started<'a, 'py> {
    pub(crate) request_id: RequestId,
    pub(crate) thread_index: usize,
    pub(crate) received_at: SystemTime,
    pub(crate) environ: &'a Bound<'py, PyDict>,
    pub(crate) scope: &'a RequestScope,
}

impl<'py> RequestEvents<'py> {
    /// Publishes `request_started` and returns the events with the application to call:
    /// `application`, or the one a subscriber put in its place.
    pub(crate) fn start(
        py: Python<'py>,
        host: &'static Host,
        started: &Started<'_, 'py>,
        application: Py<PyAny>,
    ) -> PyResult<(Self, Py<PyAny>)> {
        let application_start = SystemTime::now();
        let common = PyDict::new(py);
        common.set_item("request_id", started.request_id.to_string())?;
        // mod_wsgi counts its threads from 1.
        common.set_item("thread_id", started.thread_index + 1)?;
        common.set_item("request_data", started.scope.data(py))?;
        common.set_item("server_pid", std::process::id())?;
        common.set_item("request_start", seconds_since_epoch(started.received_at))?;
        // As the environ's mod_wsgi.queue_start and mod_wsgi.daemon_start say.
        common.set_item("queue_start", 0.0)?;
        common.set_item("daemon_start", 0.0)?;
        common.set_item("application_start", seconds_since_epoch(application_start))?;
        let event = common.copy()?;
        event.set_item("request_environ", started.environ)?;
        event.set_item("application_object", application)?;
        host.publish(py, "request_started", &event);
        let application = event
            .get_item("application_object")?
            .map_or_else(|| py.None(), Bound::unbind);
        let events = Self {
            host,
            common,
            application_start,
            cpu_at_start: resource_usage(libc::RUSAGE_THREAD),
        };
        Ok((events, application))
    }

    /// `request_exception`: the application raised `error`.
    pub(crate) fn exception(&self, py: Python<'py>, error: &PyErr) {
        let event = PyDict::new(py);
        let filled = (|| {
            event.set_item("request_id", self.common.get_item("request_id")?)?;
            event.set_item("request_data", self.common.get_item("request_data")?)?;
            let exception_info = (
                error.get_type(py),
                error.value(py),
                error
                    .traceback(py)
                    .map_or_else(|| py.None(), |tb| tb.into_any().unbind()),
            );
            event.set_item("exception_info", exception_info)
        })();
        if filled.is_ok() {
            self.host.publish(py, "request_exception", &event);
        }
    }

    /// `request_finished`, once the response is complete: `status` is the code the
    /// client got (0 if the application never called `start_response`).
    pub(crate) fn finish(self, py: Python<'py>, status: u16) {
        let application_finish = SystemTime::now();
        let cpu = resource_usage(libc::RUSAGE_THREAD);
        let user = cpu
            .user
            .saturating_sub(self.cpu_at_start.user)
            .as_secs_f64();
        let system = cpu
            .system
            .saturating_sub(self.cpu_at_start.system)
            .as_secs_f64();
        let application_time = application_finish
            .duration_since(self.application_start)
            .unwrap_or_default()
            .as_secs_f64();
        let event = self.common;
        let filled = (|| {
            event.set_item(
                "application_finish",
                seconds_since_epoch(application_finish),
            )?;
            event.set_item("application_time", application_time)?;
            event.set_item("status", status)?;
            event.set_item("cpu_user_time", user)?;
            event.set_item("cpu_system_time", system)?;
            event.set_item("cpu_time", user + system)
        })();
        if filled.is_ok() {
            self.host.publish(py, "request_finished", &event);
        }
    }
}

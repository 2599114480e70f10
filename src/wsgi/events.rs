//! The request events of the `mod_wsgi` module (`host_module.rs`): `request_started`,
//! `response_started`, `request_exception` and `request_finished`, with the payload keys
//! mod_wsgi documents that mean something here, and the request's entry in
//! `mod_wsgi.active_requests` from its start to its end. Built only when someone
//! subscribed: `run.rs` asks [`RequestEvents::start`] only then, which also turns on the
//! input and output counters (`meter.rs`) that `request_finished` reports.

use std::time::SystemTime;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::RequestId;
use super::environ::seconds_since_epoch;
use super::host_module::{Host, RequestScope, ResourceUsage, resource_usage};
use super::input::Input;
use super::start_response::StartResponse;

/// The events of one request, from `request_started` to `request_finished`.
pub(crate) struct RequestEvents<'py> {
    host: &'static Host,
    /// The keys every event of the request carries, and those `request_finished`
    /// repeats from `request_started`.
    common: Bound<'py, PyDict>,
    application_start: SystemTime,
    cpu_at_start: ResourceUsage,
    /// Where the counters of `request_finished` are kept.
    input: Bound<'py, Input>,
    responder: Bound<'py, StartResponse>,
    /// The request's key in `mod_wsgi.active_requests`.
    request_id: String,
}

/// What `request_started` says about a request.
pub(crate) struct Started<'a, 'py> {
    pub(crate) request_id: RequestId,
    pub(crate) thread_index: usize,
    pub(crate) received_at: SystemTime,
    pub(crate) daemon_start: Option<SystemTime>,
    pub(crate) environ: &'a Bound<'py, PyDict>,
    pub(crate) scope: &'a RequestScope,
    pub(crate) input: &'a Bound<'py, Input>,
    pub(crate) responder: &'a Bound<'py, StartResponse>,
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
        let request_id = started.request_id.to_string();
        let common = PyDict::new(py);
        common.set_item("request_id", &request_id)?;
        // mod_wsgi counts its threads from 1.
        common.set_item("thread_id", started.thread_index + 1)?;
        common.set_item("request_data", started.scope.data(py))?;
        common.set_item("server_pid", std::process::id())?;
        common.set_item("request_start", seconds_since_epoch(started.received_at))?;
        // As the environ's mod_wsgi.queue_start and mod_wsgi.daemon_start say: 0.0 in
        // embedded mode.
        let (queue_start, daemon_start) = match started.daemon_start {
            Some(daemon_start) => (
                seconds_since_epoch(started.received_at),
                seconds_since_epoch(daemon_start),
            ),
            None => (0.0, 0.0),
        };
        common.set_item("queue_start", queue_start)?;
        common.set_item("daemon_start", daemon_start)?;
        common.set_item("application_start", seconds_since_epoch(application_start))?;
        let event = common.copy()?;
        event.set_item("request_environ", started.environ)?;
        event.set_item("application_object", application)?;
        host.publish(py, "request_started", &event);
        let application = event
            .get_item("application_object")?
            .map_or_else(|| py.None(), Bound::unbind);
        host.active_requests(py).set_item(&request_id, &event)?;
        // Made at once, so that its Drop takes the entry out again on every path.
        let events = Self {
            host,
            common,
            application_start,
            cpu_at_start: resource_usage(libc::RUSAGE_THREAD),
            input: started.input.clone(),
            responder: started.responder.clone(),
            request_id,
        };
        events.input.get().start_metering(py);
        let response_keys = PyDict::new(py);
        response_keys.set_item("request_id", &events.request_id)?;
        response_keys.set_item("request_data", events.common.get_item("request_data")?)?;
        events
            .responder
            .get()
            .lock(py)
            .observe(response_keys.unbind());
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

    /// `request_finished`, once the response is complete; its `status` is the code
    /// the client got (0 if the application never called `start_response`).
    pub(crate) fn finish(self, py: Python<'py>) {
        let (status, output) = {
            let response = self.responder.get().lock(py);
            (response.status(), response.meter())
        };
        let input = self.input.get().meter(py);
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
        let event = self.common.clone();
        let filled = (|| {
            event.set_item("input_reads", input.calls)?;
            event.set_item("input_length", input.bytes)?;
            event.set_item("input_time", input.time.as_secs_f64())?;
            event.set_item("output_writes", output.calls)?;
            event.set_item("output_length", output.bytes)?;
            event.set_item("output_time", output.time.as_secs_f64())?;
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

impl Drop for RequestEvents<'_> {
    /// The request leaves `mod_wsgi.active_requests` on every path.
    fn drop(&mut self) {
        let py = self.common.py();
        let _ = self
            .host
            .active_requests(py)
            .del_item(self.request_id.as_str());
    }
}

/// `response_started`: the application called `start_response` with these arguments;
/// `observed` holds the request's `request_id` and `request_data`.
pub(crate) fn response_started(
    py: Python<'_>,
    observed: &Bound<'_, PyDict>,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    exc_info: Option<&Bound<'_, PyAny>>,
) {
    let Some(host) = super::host_module::host() else {
        return;
    };
    let event = PyDict::new(py);
    let filled = (|| {
        event.update(observed.as_mapping())?;
        event.set_item("response_status", status)?;
        event.set_item("response_headers", headers)?;
        event.set_item("exception_info", exc_info)
    })();
    if filled.is_ok() {
        host.publish(py, "response_started", &event);
    }
}

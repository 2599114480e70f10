//! The `mod_wsgi` module an application imports to learn about its host, as under
//! mod_wsgi: put into `sys.modules` before the application loads, so it wins over a
//! `mod_wsgi` package installed in the virtualenv (mod_wsgi-express's own, say).
//!
//! It holds the process's facts (`version`, `process_group`, `application_group`,
//! `maximum_processes`, `threads_per_process`), the metrics functions
//! (`process_metrics()` always, `server_metrics()` with `--server-metrics`, else `None`,
//! as mod_wsgi 4 does), the event subscriptions (`subscribe_events`,
//! `subscribe_shutdown`), `active_requests` and `request_data()`. The executor publishes the events
//! through [`Host`]; with nobody subscribed a request costs a list-length check.
//!
//! Each process reports itself: a daemon process does not see the front end or the
//! other daemons (the whole server is `--server-status` and `--metrics-path`).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule};

use super::environ::{ProcessFacts, seconds_since_epoch};
use crate::handoff::activity::ThreadActivity;
use crate::logs::{Level, error_log};

/// The mod_wsgi release whose behaviour Ferrule promises (the project's feature list is
/// mod_wsgi 4.3.0's): `mod_wsgi.version` and the environ's `mod_wsgi.version`.
pub(crate) const MOD_WSGI_VERSION: (u32, u32, u32) = (4, 3, 0);

/// The process's side of the module: what its functions read, and the subscribers.
pub(crate) struct Host {
    n_processes: usize,
    n_threads: usize,
    /// `--server-metrics`: whether `server_metrics()` answers.
    server_metrics: bool,
    activity: Arc<ThreadActivity>,
    started_at: SystemTime,
    /// `subscribe_events` callbacks, in the order they came.
    event_callbacks: Py<PyList>,
    /// `subscribe_shutdown` callbacks, in the order they came.
    shutdown_callbacks: Py<PyList>,
    /// `mod_wsgi.active_requests`: the `request_started` event of each request in
    /// progress, by `request_id`, while someone subscribed to the events.
    active_requests: Py<PyDict>,
}

/// The one host of this process, set when its executor starts.
static HOST: OnceLock<Host> = OnceLock::new();

/// Where the calling thread is, for `request_data()`.
enum ThreadRequest {
    /// Between requests (or not an application thread).
    Outside,
    /// Inside a request; its `request_data()` dict once someone asked for it.
    Inside(Option<Py<PyDict>>),
}

thread_local! {
    static REQUEST_DATA: RefCell<ThreadRequest> = const { RefCell::new(ThreadRequest::Outside) };
}

/// Builds the module and puts it into `sys.modules` (replacing any imported one).
pub(crate) fn install(
    py: Python<'_>,
    facts: &ProcessFacts,
    activity: Arc<ThreadActivity>,
) -> PyResult<()> {
    let host = HOST.get_or_init(|| Host {
        n_processes: facts.n_processes,
        n_threads: facts.n_threads,
        server_metrics: facts.server_metrics,
        activity,
        started_at: SystemTime::now(),
        event_callbacks: PyList::empty(py).unbind(),
        shutdown_callbacks: PyList::empty(py).unbind(),
        active_requests: PyDict::new(py).unbind(),
    });
    let module = PyModule::new(py, "mod_wsgi")?;
    module.add("version", MOD_WSGI_VERSION)?;
    module.add("process_group", &facts.process_group)?;
    module.add("application_group", &facts.application_group)?;
    module.add("maximum_processes", host.n_processes)?;
    module.add("threads_per_process", host.n_threads)?;
    module.add("active_requests", host.active_requests.bind(py))?;
    module.add_function(wrap_pyfunction!(server_metrics, &module)?)?;
    module.add_function(wrap_pyfunction!(process_metrics, &module)?)?;
    module.add_function(wrap_pyfunction!(subscribe_events, &module)?)?;
    module.add_function(wrap_pyfunction!(subscribe_shutdown, &module)?)?;
    module.add_function(wrap_pyfunction!(request_data, &module)?)?;
    // What `--interrupt-timeout` raises, under the name mod_wsgi gives it.
    module.add(
        "RequestTimeout",
        py.get_type::<super::interrupt::RequestTimeout>(),
    )?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("mod_wsgi", module)?;
    Ok(())
}

/// The host of this process, once its executor started.
pub(crate) fn host() -> Option<&'static Host> {
    HOST.get()
}

impl Host {
    /// Whether someone subscribed to the request events.
    pub(crate) fn has_subscribers(&self, py: Python<'_>) -> bool {
        !self.event_callbacks.bind(py).is_empty()
    }

    /// `mod_wsgi.active_requests`.
    pub(crate) fn active_requests<'py>(&self, py: Python<'py>) -> &Bound<'py, PyDict> {
        self.active_requests.bind(py)
    }

    /// Calls every `subscribe_events` callback with `name` and the event as keyword
    /// arguments; a dict a callback returns is merged into the event for the next ones.
    pub(crate) fn publish(&self, py: Python<'_>, name: &str, event: &Bound<'_, PyDict>) {
        publish_to(py, self.event_callbacks.bind(py), name, event);
    }

    /// `process_stopping`, to the event and the shutdown subscribers: `reason` is one of
    /// mod_wsgi's `shutdown_reason` values.
    pub(crate) fn publish_stopping(&self, py: Python<'_>, reason: &str) {
        let event = PyDict::new(py);
        if event.set_item("shutdown_reason", reason).is_err() {
            return;
        }
        publish_to(
            py,
            self.event_callbacks.bind(py),
            "process_stopping",
            &event,
        );
        publish_to(
            py,
            self.shutdown_callbacks.bind(py),
            "process_stopping",
            &event,
        );
    }
}

fn publish_to(
    py: Python<'_>,
    callbacks: &Bound<'_, PyList>,
    name: &str,
    event: &Bound<'_, PyDict>,
) {
    // A copy: a callback that subscribes another one does not change this round.
    let callbacks = callbacks
        .as_sequence()
        .to_list()
        .unwrap_or_else(|_| PyList::empty(py));
    for callback in callbacks.iter() {
        match callback.call((name,), Some(event)) {
            Ok(returned) => {
                if let Ok(extra) = returned.cast::<PyDict>() {
                    let _ = event.update(extra.as_mapping());
                }
            }
            Err(error) => {
                let traceback = super::app::format_exception(py, &error);
                error_log::log(
                    Level::Error,
                    "wsgi",
                    &format!("Exception in the mod_wsgi '{name}' event subscriber:\n{traceback}"),
                );
            }
        }
    }
}

/// The request scope of the calling application thread: `request_data()` answers while
/// it lives, and its dict goes when it is dropped.
pub(crate) struct RequestScope(());

impl RequestScope {
    pub(crate) fn enter() -> Self {
        REQUEST_DATA.with(|data| *data.borrow_mut() = ThreadRequest::Inside(None));
        Self(())
    }

    /// The request's `request_data()` dict, made now if nobody asked for it yet.
    pub(crate) fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        current_request_data(py).unwrap_or_else(|| PyDict::new(py))
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let data = REQUEST_DATA.with(|data| data.replace(ThreadRequest::Outside));
        // Dropped by the application thread, attached to Python (the scope lives inside
        // the request's handling).
        drop(data);
    }
}

fn current_request_data(py: Python<'_>) -> Option<Bound<'_, PyDict>> {
    REQUEST_DATA.with(|data| {
        let mut data = data.borrow_mut();
        let ThreadRequest::Inside(scope) = &mut *data else {
            return None;
        };
        Some(
            scope
                .get_or_insert_with(|| PyDict::new(py).unbind())
                .bind(py)
                .clone(),
        )
    })
}

/// `mod_wsgi.request_data()`: the dict of the request the calling thread runs, shared
/// with the event subscribers.
#[pyfunction]
fn request_data(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    current_request_data(py).ok_or_else(|| {
        PyRuntimeError::new_err("mod_wsgi.request_data() was called outside of a request")
    })
}

/// `mod_wsgi.subscribe_events(callback)`: returns the callback, so it decorates.
#[pyfunction]
fn subscribe_events(callback: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = callback.py();
    let host = host().ok_or_else(not_started)?;
    host.event_callbacks.bind(py).append(&callback)?;
    Ok(callback)
}

/// `mod_wsgi.subscribe_shutdown(callback)`: `process_stopping` only.
#[pyfunction]
fn subscribe_shutdown(callback: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = callback.py();
    let host = host().ok_or_else(not_started)?;
    host.shutdown_callbacks.bind(py).append(&callback)?;
    Ok(callback)
}

fn not_started() -> PyErr {
    PyRuntimeError::new_err("the mod_wsgi module is not attached to a running server")
}

/// `mod_wsgi.process_metrics()`: this process from its start to now (mod_wsgi's keys).
#[pyfunction]
fn process_metrics(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let host = host().ok_or_else(not_started)?;
    let now = SystemTime::now();
    let threads = host.activity.threads();
    let metrics = PyDict::new(py);
    metrics.set_item("pid", std::process::id())?;
    metrics.set_item(
        "request_count",
        threads.iter().map(|thread| thread.requests).sum::<u64>(),
    )?;
    metrics.set_item("request_busy_time", host.activity.busy_time().as_secs_f64())?;
    let usage = resource_usage(libc::RUSAGE_SELF);
    metrics.set_item("memory_max_rss", usage.max_rss_bytes)?;
    metrics.set_item("memory_rss", resident_bytes().unwrap_or(0))?;
    metrics.set_item("cpu_user_time", usage.user.as_secs_f64())?;
    metrics.set_item("cpu_system_time", usage.system.as_secs_f64())?;
    metrics.set_item("restart_time", seconds_since_epoch(host.started_at))?;
    metrics.set_item("current_time", seconds_since_epoch(now))?;
    metrics.set_item("running_time", running_seconds(host.started_at, now))?;
    metrics.set_item("request_threads", threads.len())?;
    metrics.set_item(
        "active_requests",
        threads
            .iter()
            .filter(|thread| thread.busy_for.is_some())
            .count(),
    )?;
    let list = PyList::empty(py);
    for (index, thread) in threads.iter().enumerate() {
        let entry = PyDict::new(py);
        entry.set_item("thread_id", index + 1)?;
        entry.set_item("request_count", thread.requests)?;
        list.append(entry)?;
    }
    metrics.set_item("threads", list)?;
    Ok(metrics)
}

/// `mod_wsgi.server_metrics()`: `None` without `--server-metrics` (mod_wsgi's gate);
/// with it, mod_wsgi's scoreboard shape for the one process the caller can see: itself.
#[pyfunction]
fn server_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let host = host().ok_or_else(not_started)?;
    if !host.server_metrics {
        return Ok(None);
    }
    let now = SystemTime::now();
    let metrics = PyDict::new(py);
    metrics.set_item("server_limit", host.n_processes)?;
    metrics.set_item("thread_limit", host.n_threads)?;
    metrics.set_item("running_generation", 0)?;
    metrics.set_item("restart_time", seconds_since_epoch(host.started_at))?;
    metrics.set_item("current_time", seconds_since_epoch(now))?;
    metrics.set_item("running_time", running_seconds(host.started_at, now))?;
    let workers = PyList::empty(py);
    for (index, thread) in host.activity.threads().into_iter().enumerate() {
        let worker = PyDict::new(py);
        worker.set_item("thread_num", index)?;
        worker.set_item("generation", 0)?;
        // Apache's scoreboard letters: `W` working on a request, `_` waiting for one.
        worker.set_item("status", if thread.busy_for.is_some() { "W" } else { "_" })?;
        worker.set_item("access_count", thread.requests)?;
        let start_time = thread
            .busy_for
            .and_then(|busy_for| now.checked_sub(busy_for))
            .map_or(0.0, seconds_since_epoch);
        worker.set_item("start_time", start_time)?;
        worker.set_item("request", thread.request)?;
        workers.append(worker)?;
    }
    let process = PyDict::new(py);
    process.set_item("process_num", 0)?;
    process.set_item("pid", std::process::id())?;
    process.set_item("generation", 0)?;
    process.set_item("quiescing", false)?;
    process.set_item("workers", workers)?;
    metrics.set_item("processes", PyList::new(py, [process])?)?;
    Ok(Some(metrics))
}

/// CPU times and peak memory of the process or thread (`who`), from getrusage(2).
pub(crate) struct ResourceUsage {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
    max_rss_bytes: u64,
}

pub(crate) fn resource_usage(who: libc::c_int) -> ResourceUsage {
    // SAFETY: rusage is plain data; getrusage fills it and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    unsafe { libc::getrusage(who, &raw mut usage) };
    let time = |value: libc::timeval| {
        Duration::from_secs(u64::try_from(value.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(value.tv_usec).unwrap_or(0))
    };
    ResourceUsage {
        user: time(usage.ru_utime),
        system: time(usage.ru_stime),
        // Linux gives kilobytes.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}

/// This process's resident memory, from /proc (also `--memory-limit`'s measure).
pub fn resident_bytes() -> Option<u64> {
    let statm = fs_err::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

fn running_seconds(started_at: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(started_at)
        .map_or(0, |running| running.as_secs())
}

//! One request through the application: build the environ, call the application, send
//! what it returns, call `close()`; on every path, including errors and a client that
//! left mid-stream.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::app::format_exception;
use super::context::{Job, ThreadContext};
use super::environ::{self, RequestFacts};
use super::events::{RequestEvents, Started};
use super::file_wrapper::FileWrapper;
use super::host_module::{self, RequestScope};
use super::input::Input;
use super::interrupt::{RequestTimeout, Running, RunningRequests};
use super::start_response::{Delivery, StartResponse, body_bytes};
use crate::logs::{Level, error_log};

pub(crate) fn handle(py: Python<'_>, context: &ThreadContext, job: Job, thread_index: usize) {
    let Job {
        request, reply_tx, ..
    } = job;
    // Written out only for an error report: formatting it cost ~1,600 instructions.
    let remote = request.connection.remote_addr;
    let responder = match Bound::new(py, StartResponse::new(reply_tx)) {
        Ok(responder) => responder,
        Err(error) => return report(py, remote, "creating start_response", &error),
    };
    let scope = RequestScope::enter();
    let mut events = None;
    let failure = match &context.running {
        None => call_application(
            py,
            context,
            request,
            &responder,
            thread_index,
            (&scope, &mut events),
        )
        .err()
        .map(Failure::Raised),
        Some(running) => match call_watched(
            py,
            context,
            running,
            request,
            &responder,
            thread_index,
            (&scope, &mut events),
        ) {
            Watched::Done(outcome) => outcome.err().map(Failure::Raised),
            Watched::Interrupted(running, error) => Some(Failure::Interrupted(running, error)),
        },
    };
    match &failure {
        None => {}
        Some(Failure::Raised(error)) => {
            if let Some(events) = &events {
                events.exception(py, error);
            }
            report(py, remote, "handling the request", error);
            responder.get().lock(py).fail(py);
        }
        Some(Failure::Interrupted(running, error)) => {
            if let Some(events) = &events {
                events.exception(py, error);
            }
            report_interrupted(py, remote, thread_index, running, error);
            responder.get().lock(py).fail_with(
                py,
                http::StatusCode::GATEWAY_TIMEOUT,
                "The application took longer than the request timeout to answer.",
            );
        }
    }
    if let Some(events) = events {
        events.finish(py);
    }
}

/// How a request watched for `--interrupt-timeout` ended.
enum Watched {
    Done(PyResult<()>),
    /// Unwound by the `RequestTimeout` raised in its thread.
    Interrupted(Running, PyErr),
}

/// How a request's application call failed.
enum Failure {
    /// It raised (or its response could not be sent).
    Raised(PyErr),
    /// `--interrupt-timeout`: unwound by the `RequestTimeout` raised in its thread.
    Interrupted(Running, PyErr),
}

/// [`call_application`], with the request in the table `--interrupt-timeout` watches.
fn call_watched<'py>(
    py: Python<'py>,
    context: &ThreadContext,
    running: &RunningRequests,
    request: super::Request,
    responder: &Bound<'py, StartResponse>,
    thread_index: usize,
    events: (&RequestScope, &mut Option<RequestEvents<'py>>),
) -> Watched {
    running.begin(
        thread_index,
        request.request_id,
        format!("{} {}", request.method, request.target),
    );
    let outcome = call_application(py, context, request, responder, thread_index, events);
    match (running.end(py, thread_index), outcome) {
        (Some(ended), Err(error))
            if ended.interrupted && error.is_instance_of::<RequestTimeout>(py) =>
        {
            Watched::Interrupted(ended, error)
        }
        (_, outcome) => Watched::Done(outcome),
    }
}

/// A request unwound by the `RequestTimeout` raised in its thread: logged with where it was.
fn report_interrupted(
    py: Python<'_>,
    remote: std::net::SocketAddr,
    thread_index: usize,
    running: &Running,
    error: &PyErr,
) {
    let traceback = format_exception(py, error);
    let remote = remote.to_string();
    let message = format!(
        "request {} ({}) on application thread {thread_index} was interrupted by RequestTimeout after --request-timeout; answered 504:\n{traceback}",
        running.request_id.text().as_str(),
        running.description,
    );
    py.detach(|| error_log::log_with_context(Level::Error, "wsgi", Some(&remote), &message));
}

/// Runs the application for `request`; `events` is filled in when someone subscribed to
/// the `mod_wsgi` events (the caller publishes the request's end).
fn call_application<'py>(
    py: Python<'py>,
    context: &ThreadContext,
    request: super::Request,
    responder: &Bound<'py, StartResponse>,
    thread_index: usize,
    (scope, events): (&RequestScope, &mut Option<RequestEvents<'py>>),
) -> PyResult<()> {
    let super::Request {
        method,
        target,
        version,
        headers,
        connection,
        body,
        received_at,
        daemon_start,
        request_id,
        access,
        variables,
        handler,
    } = request;
    let input = Bound::new(py, Input::new(body))?;
    let release_body = ReleaseBodyOnDrop(input.clone());
    let facts = RequestFacts {
        method: &method,
        target: &target,
        version,
        headers: &headers,
        connection,
        default_server_name: &context.facts.default_server_name,
        script_name: &context.facts.script_name,
        received_at,
        daemon_start,
        thread_index,
        request_id,
        variables: &variables,
    };
    let environ = environ::build(
        py,
        context.environ_template.bind(py),
        &facts,
        input.into_any(),
    )?;
    let input = &release_body.0;
    if let Some(check) = access {
        let host = connection.remote_addr.ip().to_canonical().to_string();
        let asking = super::access::Asking {
            host: &host,
            target: &crate::handoff::request_path::request_target(&target),
        };
        match context.access.decide(py, &environ, &check, &asking)? {
            super::access::Decision::Allow => {}
            super::access::Decision::Refuse(response) => {
                responder.get().lock(py).send_prepared(response);
                return Ok(());
            }
        }
    }
    let callable = match &handler {
        Some(target) => {
            let Some((script, callable)) = context.handler(py, target.index) else {
                return Err(pyo3::exceptions::PyLookupError::new_err(format!(
                    "no --add-handler script number {}",
                    target.index
                )));
            };
            environ::apply_handler(py, &environ, target, script)?;
            callable
        }
        None => context.application(py),
    };
    let callable = match host_module::host().filter(|host| host.has_subscribers(py)) {
        Some(host) => {
            let started = Started {
                request_id,
                thread_index,
                received_at,
                daemon_start,
                environ: &environ,
                scope,
                input,
                responder,
            };
            let (started, callable) = RequestEvents::start(py, host, &started, callable)?;
            *events = Some(started);
            callable
        }
        None => callable,
    };
    let result = callable.bind(py).call1((environ, responder))?;
    let sent = send_result(py, &result, responder.get());
    let closed = call_close(py, &result);
    sent.and(closed)
}

/// Releases the request body's source when the request ends, on every path (after
/// `close()`, which may still read it).
struct ReleaseBodyOnDrop<'py>(Bound<'py, Input>);

impl Drop for ReleaseBodyOnDrop<'_> {
    fn drop(&mut self) {
        self.0.get().release(self.0.py());
    }
}

/// Sends the application's iterable: in one piece when it is a list or tuple, as a file
/// when it wraps a real file, chunk by chunk otherwise.
///
/// The response state is locked per step, never across a call into the application: a
/// generator may call `start_response` (or `write`) while it runs.
fn send_result(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    responder: &StartResponse,
) -> PyResult<()> {
    if responder.lock(py).is_unsent() {
        if let Ok(list) = result.cast_exact::<PyList>() {
            let chunks = list
                .iter()
                .map(|item| body_bytes(&item))
                .collect::<PyResult<Vec<Bytes>>>()?;
            return responder.lock(py).send_full(chunks);
        }
        if let Ok(tuple) = result.cast_exact::<PyTuple>() {
            let chunks = tuple
                .iter()
                .map(|item| body_bytes(&item))
                .collect::<PyResult<Vec<Bytes>>>()?;
            return responder.lock(py).send_full(chunks);
        }
        if let Ok(wrapper) = result.cast::<FileWrapper>() {
            if let Some((file, offset, length)) = wrapper.get().as_regular_file(py) {
                return responder.lock(py).send_file(file, offset, length);
            }
        }
    }
    for item in result.try_iter()? {
        let chunk = body_bytes(&item?)?;
        if chunk.is_empty() {
            continue;
        }
        if responder.lock(py).send_chunk(py, chunk)? == Delivery::ClientGone {
            // Stop producing for nobody; close() still runs.
            return Ok(());
        }
    }
    responder.lock(py).finish()
}

fn call_close(py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<()> {
    // A plain list or tuple has no close(); asking costs an AttributeError built and
    // thrown away (its message formatted) on every request.
    if result.is_exact_instance_of::<pyo3::types::PyList>()
        || result.is_exact_instance_of::<pyo3::types::PyTuple>()
    {
        return Ok(());
    }
    if result.hasattr(pyo3::intern!(py, "close"))? {
        result.call_method0(pyo3::intern!(py, "close"))?;
    }
    Ok(())
}

fn report(py: Python<'_>, remote: std::net::SocketAddr, during: &str, error: &PyErr) {
    let traceback = format_exception(py, error);
    let remote = remote.to_string();
    py.detach(|| {
        error_log::log_with_context(
            Level::Error,
            "wsgi",
            Some(&remote),
            &format!("Exception occurred while {during}:\n{traceback}"),
        );
    });
}

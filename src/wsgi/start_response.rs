//! `start_response`, the `write()` callable it returns, and the hand-over of the response
//! to the front end.
//!
//! The status and headers are validated when `start_response` is called but sent only when
//! the first body byte exists (PEP 3333), so a generator that calls `start_response` late,
//! or calls it again with `exc_info` before any byte went out, gets its way.

use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use tokio::sync::mpsc;

use crate::handoff::reply::ReplySender;

use super::meter::{self, IoMeter};

use super::{Response, ResponseBody, StreamAborted};

/// How many body chunks may wait for the client before the application thread blocks.
/// Small, so that a slow client costs little memory; the thread waits with the GIL
/// released.
const STREAM_CHANNEL_CAPACITY: usize = 8;

/// Response headers that describe one connection, not the response; PEP 3333 forbids
/// applications to set them.
const HOP_BY_HOP_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// The `start_response` callable handed to the application, one per request.
#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct StartResponse {
    state: Mutex<ResponseState>,
}

/// What was said about the response so far and where it goes.
pub(crate) struct ResponseState {
    /// Set by `start_response`, taken when the head is sent.
    head: Option<Head>,
    sink: Sink,
    /// The status of the last `start_response` (500 once a failure answered it); 0 before
    /// any, as mod_wsgi's `request_finished` event says.
    status: u16,
    /// Set while the request's events are published: the body handed over
    /// (`output_writes`, `output_length`, `output_time`) ...
    meter: Option<IoMeter>,
    /// ... and the keys `response_started` repeats from `request_started`.
    observer: Option<Py<PyDict>>,
}

struct Head {
    status: http::StatusCode,
    reason: Option<Bytes>,
    headers: http::HeaderMap,
    content_length: Option<u64>,
}

enum Sink {
    /// Nothing sent yet.
    Unsent(ReplySender),
    /// The head went out; body chunks follow. The front end holds them to a declared
    /// Content-Length (and closes the connection when they disagree).
    Streaming {
        body_tx: mpsc::Sender<Result<Bytes, StreamAborted>>,
    },
    /// The client went away; further output is dropped.
    ClientGone,
    /// The first chunk carried the whole declared Content-Length and went out as one
    /// response; further output is dropped, as past a Content-Length when streaming.
    Complete,
    /// The response is complete.
    Done,
}

/// Whether a chunk reached the front end.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Delivery {
    Delivered,
    ClientGone,
}

impl StartResponse {
    pub(crate) fn new(reply_tx: ReplySender) -> Self {
        Self {
            state: Mutex::new(ResponseState {
                head: None,
                sink: Sink::Unsent(reply_tx),
                status: 0,
                meter: None,
                observer: None,
            }),
        }
    }

    pub(crate) fn lock<'a>(&'a self, py: Python<'_>) -> std::sync::MutexGuard<'a, ResponseState> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ResponseState {
    /// The response's status code so far (0 before `start_response`).
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// Publishes `response_started` with `observed` (its `request_id` and
    /// `request_data`) and counts the body handed over from now on.
    pub(crate) fn observe(&mut self, observed: Py<PyDict>) {
        self.meter.get_or_insert_with(IoMeter::default);
        self.observer = Some(observed);
    }

    /// The body handed over so far (zero when not observed).
    pub(crate) fn meter(&self) -> IoMeter {
        self.meter.unwrap_or_default()
    }

    /// True until the status line has been handed to the front end.
    pub(crate) fn is_unsent(&self) -> bool {
        matches!(self.sink, Sink::Unsent(_))
    }

    /// Sends the whole response at once, with Content-Length.
    ///
    /// A declared Content-Length is left as the application gave it, even when the chunks
    /// disagree: the front end holds the body to it and closes the connection.
    pub(crate) fn send_full(&mut self, chunks: Vec<Bytes>) -> PyResult<()> {
        if self.meter.is_none() {
            return self.deliver_full(chunks);
        }
        let started = std::time::Instant::now();
        // Each non-empty item is one write, as when streaming.
        let (writes, length) = chunks
            .iter()
            .filter(|chunk| !chunk.is_empty())
            .fold((0, 0), |(writes, length), chunk| {
                (writes + 1, length + chunk.len())
            });
        self.deliver_full(chunks)?;
        if let Some(meter) = self.meter.as_mut() {
            meter.record(writes, length, started);
        }
        Ok(())
    }

    fn deliver_full(&mut self, chunks: Vec<Bytes>) -> PyResult<()> {
        let mut head = self.head.take().ok_or_else(start_response_not_called)?;
        if head.content_length.is_none() {
            let total: u64 = chunks.iter().map(|chunk| chunk.len() as u64).sum();
            head.headers
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(total));
        }
        let Sink::Unsent(reply_tx) = std::mem::replace(&mut self.sink, Sink::Done) else {
            return Err(PyRuntimeError::new_err("the response was already sent"));
        };
        // A closed receiver means the client left; nothing more to do.
        let _ = reply_tx.send(head.into_response(ResponseBody::Full(chunks)));
        Ok(())
    }

    /// Sends a real file from `offset` for `length` bytes.
    pub(crate) fn send_file(
        &mut self,
        file: std::fs::File,
        offset: u64,
        length: u64,
    ) -> PyResult<()> {
        let mut head = self.head.take().ok_or_else(start_response_not_called)?;
        let length = if let Some(declared) = head.content_length {
            declared.min(length)
        } else {
            head.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(length),
            );
            length
        };
        let Sink::Unsent(reply_tx) = std::mem::replace(&mut self.sink, Sink::Done) else {
            return Err(PyRuntimeError::new_err("the response was already sent"));
        };
        if let Some(meter) = self.meter.as_mut() {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            meter.record(1, length, std::time::Instant::now());
        }
        let body = ResponseBody::File {
            file,
            offset,
            length,
        };
        let _ = reply_tx.send(head.into_response(body));
        Ok(())
    }

    /// Sends one body chunk, sending the head first if it has not gone out yet.
    pub(crate) fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> PyResult<Delivery> {
        let started = meter::start(self.meter.as_ref());
        let length = chunk.len();
        let delivery = self.deliver_chunk(py, chunk)?;
        if let (Some(meter), Some(started), Delivery::Delivered) =
            (self.meter.as_mut(), started, delivery)
        {
            meter.record(1, length, started);
        }
        Ok(delivery)
    }

    fn deliver_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> PyResult<Delivery> {
        if self.is_unsent() {
            // A framework's response object (Flask, Django) yields its whole declared
            // body at once: send it as one response, not a stream of one chunk.
            let declared = self.head.as_ref().and_then(|head| head.content_length);
            if declared.is_some_and(|length| chunk.len() as u64 >= length) {
                self.deliver_full(vec![chunk])?;
                self.sink = Sink::Complete;
                return Ok(Delivery::Delivered);
            }
            self.start_streaming()?;
        }
        let delivery = match &mut self.sink {
            Sink::Streaming { body_tx } => match body_tx.try_send(Ok(chunk)) {
                Ok(()) => Delivery::Delivered,
                Err(mpsc::error::TrySendError::Full(chunk)) => {
                    let body_tx = &*body_tx;
                    match py.detach(|| body_tx.blocking_send(chunk)) {
                        Ok(()) => Delivery::Delivered,
                        Err(_) => Delivery::ClientGone,
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Delivery::ClientGone,
            },
            Sink::ClientGone => Delivery::ClientGone,
            Sink::Complete => Delivery::Delivered,
            Sink::Unsent(_) | Sink::Done => {
                return Err(PyRuntimeError::new_err("the response is already complete"));
            }
        };
        if delivery == Delivery::ClientGone {
            self.sink = Sink::ClientGone;
        }
        Ok(delivery)
    }

    /// Ends the response normally: an empty body if nothing was sent yet.
    pub(crate) fn finish(&mut self) -> PyResult<()> {
        if self.is_unsent() {
            return self.send_full(Vec::new());
        }
        self.sink = Sink::Done;
        Ok(())
    }

    /// Sends a response made without the application (the access-control scripts
    /// refused the request).
    pub(crate) fn send_prepared(&mut self, response: Response) {
        if let Sink::Unsent(reply_tx) = std::mem::replace(&mut self.sink, Sink::Done) {
            let _ = reply_tx.send(response);
        }
    }

    /// Ends the response after an application error: a 500 if nothing was sent yet,
    /// otherwise a cut connection. Returns true when the 500 was sent.
    pub(crate) fn fail(&mut self, py: Python<'_>) -> bool {
        self.fail_with(
            py,
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "The application failed while handling this request. \
             The server's error log has the details.",
        )
    }

    /// As [`Self::fail`], answering `status` with `text` when nothing was sent yet.
    pub(crate) fn fail_with(
        &mut self,
        py: Python<'_>,
        status: http::StatusCode,
        text: &'static str,
    ) -> bool {
        match std::mem::replace(&mut self.sink, Sink::Done) {
            Sink::Unsent(reply_tx) => {
                self.status = status.as_u16();
                let _ = reply_tx.send(super::error_response(status, text));
                true
            }
            Sink::Streaming { body_tx, .. } => {
                let _ = py.detach(|| body_tx.blocking_send(Err(StreamAborted)));
                false
            }
            Sink::ClientGone | Sink::Complete | Sink::Done => false,
        }
    }

    fn start_streaming(&mut self) -> PyResult<()> {
        let head = self.head.take().ok_or_else(start_response_not_called)?;
        let (body_tx, body_rx) = mpsc::channel(STREAM_CHANNEL_CAPACITY);
        let sink = Sink::Streaming { body_tx };
        let Sink::Unsent(reply_tx) = std::mem::replace(&mut self.sink, sink) else {
            return Err(PyRuntimeError::new_err("the response was already sent"));
        };
        if reply_tx
            .send(head.into_response(ResponseBody::Stream(body_rx)))
            .is_err()
        {
            self.sink = Sink::ClientGone;
        }
        Ok(())
    }
}

impl Head {
    fn into_response(self, body: ResponseBody) -> Response {
        Response {
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body,
        }
    }
}

fn start_response_not_called() -> PyErr {
    PyRuntimeError::new_err("the application returned a response without calling start_response()")
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|info| !is_empty_exc_info(info));
        let mut state = slf.get().lock(py);
        if let Some(exc_info) = exc_info {
            if !state.is_unsent() {
                // PEP 3333: once the head is out it cannot change; re-raise the original.
                let value = exc_info.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
        } else if state.head.is_some() || !state.is_unsent() {
            return Err(PyRuntimeError::new_err(
                "start_response() was called a second time without exc_info",
            ));
        }
        if let Some(observed) = state.observer.as_ref().map(|dict| dict.clone_ref(py)) {
            // Without the lock: a subscriber may call write() or start_response().
            drop(state);
            super::events::response_started(py, observed.bind(py), status, headers, exc_info);
            state = slf.get().lock(py);
        }
        let head = parse_head(status, headers)?;
        state.status = head.status.as_u16();
        state.head = Some(head);
        drop(state);
        slf.getattr(pyo3::intern!(py, "write"))
    }

    /// The legacy `write()` callable of PEP 3333: sends `data` at once.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = body_bytes(data)?;
        let mut state = self.lock(py);
        if state.head.is_none() && state.is_unsent() {
            return Err(PyRuntimeError::new_err(
                "write() was called before start_response()",
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        match state.send_chunk(py, bytes)? {
            Delivery::Delivered => Ok(()),
            Delivery::ClientGone => Err(PyOSError::new_err(
                "failed to write response data: the client closed the connection",
            )),
        }
    }
}

fn is_empty_exc_info(info: &Bound<'_, PyAny>) -> bool {
    info.is_none()
        || info
            .cast::<PyTuple>()
            .is_ok_and(|tuple| tuple.iter().all(|item| item.is_none()))
}

/// Body items at least this long are handed to the front end without a copy, the Python
/// object kept alive instead; shorter ones are copied, which costs less than the deferred
/// reference-count release. (64 KiB body: no copy saves a 64 KiB allocation, memcpy and
/// page faults per response.)
const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// A body item as bytes; PEP 3333 allows nothing else.
pub(crate) fn body_bytes(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    match item.cast::<PyBytes>() {
        Ok(bytes) if bytes.as_bytes().len() >= ZERO_COPY_THRESHOLD => Ok(Bytes::from_owner(
            pyo3::pybacked::PyBackedBytes::from(bytes.clone()),
        )),
        Ok(bytes) => Ok(Bytes::copy_from_slice(bytes.as_bytes())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "response body items must be bytes, got a value of type {}",
            type_name(item)
        ))),
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}

fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let status = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the status passed to start_response() must be a str, got {}",
            type_name(status)
        ))
    })?;
    let (status, reason) = parse_status(&latin1_bytes(status, "status")?)?;
    let headers = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the headers passed to start_response() must be a list, got {}",
            type_name(headers)
        ))
    })?;
    let mut header_map = http::HeaderMap::with_capacity(headers.len());
    let mut content_length = None;
    for item in headers.iter() {
        let (name, value) = parse_header(&item)?;
        if name == http::header::CONTENT_LENGTH {
            let declared = value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    PyValueError::new_err("the Content-Length response header is not a number")
                })?;
            content_length = Some(declared);
        }
        header_map.append(name, value);
    }
    Ok(Head {
        status,
        reason,
        headers: header_map,
        content_length,
    })
}

fn parse_status(status: &[u8]) -> PyResult<(http::StatusCode, Option<Bytes>)> {
    let invalid = || {
        PyValueError::new_err(format!(
            "invalid status '{}': expected three digits, a space and a reason phrase, e.g. '200 OK'",
            String::from_utf8_lossy(status)
        ))
    };
    if status.len() < 4 || status[3] != b' ' {
        return Err(invalid());
    }
    let code = http::StatusCode::from_bytes(&status[..3]).map_err(|_| invalid())?;
    let reason = &status[4..];
    if reason.iter().any(|&b| b.is_ascii_control()) {
        return Err(invalid());
    }
    let standard = code.canonical_reason().map(str::as_bytes);
    let reason =
        (standard != Some(reason) && !reason.is_empty()).then(|| Bytes::copy_from_slice(reason));
    Ok((code, reason))
}

fn parse_header(item: &Bound<'_, PyAny>) -> PyResult<(http::HeaderName, http::HeaderValue)> {
    let pair = item
        .cast::<PyTuple>()
        .ok()
        .filter(|tuple| tuple.len() == 2)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "each response header must be a (name, value) tuple, got {}",
                type_name(item)
            ))
        })?;
    let name = pair.get_item(0)?;
    let value = pair.get_item(1)?;
    let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
        return Err(PyTypeError::new_err(format!(
            "response header names and values must be str, got ({}, {})",
            type_name(&name),
            type_name(&value)
        )));
    };
    let name_text = name.to_cow()?;
    let header_name = http::HeaderName::from_bytes(name_text.as_bytes()).map_err(|_| {
        PyValueError::new_err(format!("invalid response header name '{name_text}'"))
    })?;
    if HOP_BY_HOP_HEADERS.contains(&header_name.as_str()) {
        return Err(PyValueError::new_err(format!(
            "the hop-by-hop header '{name_text}' is not allowed in a WSGI response (PEP 3333); the server manages the connection"
        )));
    }
    let value_bytes = latin1_bytes(value, &name_text)?;
    if value_bytes
        .iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(PyValueError::new_err(format!(
            "the value of response header '{name_text}' contains a CR, LF or NUL character"
        )));
    }
    let header_value = http::HeaderValue::from_bytes(&value_bytes).map_err(|_| {
        PyValueError::new_err(format!(
            "the value of response header '{name_text}' contains a control character"
        ))
    })?;
    Ok((header_name, header_value))
}

/// A str encoded as latin-1, as PEP 3333 requires of status and header strings.
/// A str as the bytes it stands for, one byte per character (latin-1, PEP 3333). ASCII,
/// nearly every status and header, is borrowed from the str itself.
fn latin1_bytes<'a>(
    text: &'a Bound<'_, PyString>,
    what: &str,
) -> PyResult<std::borrow::Cow<'a, [u8]>> {
    let text = text.to_cow()?;
    if text.is_ascii() {
        return Ok(match text {
            std::borrow::Cow::Borrowed(text) => std::borrow::Cow::Borrowed(text.as_bytes()),
            std::borrow::Cow::Owned(text) => std::borrow::Cow::Owned(text.into_bytes()),
        });
    }
    text.chars()
        .map(|ch| u8::try_from(u32::from(ch)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(std::borrow::Cow::Owned)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "response {what} '{text}' has characters outside latin-1; encode other text per RFC 8187"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing() {
        let (code, reason) = parse_status(b"200 OK").unwrap();
        assert_eq!(code, 200);
        assert!(reason.is_none());
        let (code, reason) = parse_status(b"299 Fine Indeed").unwrap();
        assert_eq!(code, 299);
        assert_eq!(reason.as_deref(), Some(&b"Fine Indeed"[..]));
        assert!(parse_status(b"200").is_err());
        assert!(parse_status(b"2000 OK").is_err());
        assert!(parse_status(b"abc OK").is_err());
        assert!(parse_status(b"200 O\nK").is_err());
    }
}

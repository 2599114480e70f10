//! `wsgi.input`: the request body as a file-like object that streams.
//!
//! Bytes are pulled from the [`BodySource`] only when the application asks for them, a
//! chunk at a time, with the GIL released while waiting; a 1 GiB upload never sits in
//! memory. The body is already bounded (Content-Length) or de-chunked, so reading to the
//! end is always safe (`wsgi.input_terminated` is true).

use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyList};

use super::BodySource;
use super::meter::{self, IoMeter};

/// The file-like object handed to the application as `wsgi.input`.
#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct Input {
    state: Mutex<InputState>,
}

struct InputState {
    source: Box<dyn BodySource>,
    /// Bytes received but not yet handed to the application, from `start` on.
    buffer: Vec<u8>,
    start: usize,
    finished: bool,
    /// The application's reads, counted while the request's events are published.
    meter: Option<IoMeter>,
}

impl Input {
    pub(crate) fn new(source: Box<dyn BodySource>) -> Self {
        Self {
            state: Mutex::new(InputState {
                source,
                buffer: Vec::new(),
                start: 0,
                finished: false,
                meter: None,
            }),
        }
    }

    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, InputState> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the application's reads from now on (`input_reads`, `input_length`,
    /// `input_time` of `request_finished`).
    pub(crate) fn start_metering(&self, py: Python<'_>) {
        self.lock(py).meter.get_or_insert_with(IoMeter::default);
    }

    /// The reads counted so far (zero when not metering).
    pub(crate) fn meter(&self, py: Python<'_>) -> IoMeter {
        self.lock(py).meter.unwrap_or_default()
    }

    /// Runs one read call of the application, counted when metering: `length` says
    /// how many bytes it handed over.
    fn metered<T>(
        &self,
        py: Python<'_>,
        read: impl FnOnce(&mut InputState) -> PyResult<T>,
        length: impl FnOnce(&T) -> usize,
    ) -> PyResult<T> {
        let mut state = self.lock(py);
        let started = meter::start(state.meter.as_ref());
        let result = read(&mut state)?;
        if let (Some(meter), Some(started)) = (state.meter.as_mut(), started) {
            meter.record(1, length(&result), started);
        }
        Ok(result)
    }
}

impl Input {
    /// Ends the request's hold on its body: the source is dropped (its owner then reads
    /// and drops the unread rest, or closes the connection) whatever Python still holds,
    /// since an application may keep `wsgi.input` alive in a reference cycle until the
    /// collector runs. Later reads see the end of the body.
    pub(crate) fn release(&self, py: Python<'_>) {
        let source = {
            let mut state = self.lock(py);
            state.finished = true;
            std::mem::replace(&mut state.source, Box::new(Released))
        };
        drop(source);
    }
}

/// The body source of a request that ended.
struct Released;

impl BodySource for Released {
    fn read_chunk(&mut self) -> Result<Option<bytes::Bytes>, super::BodyReadError> {
        Ok(None)
    }
}

impl InputState {
    fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Receives one more chunk into the buffer. Returns false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.finished {
            return Ok(false);
        }
        let source = &mut self.source;
        // Bytes already at hand come without releasing the GIL: handing it to another
        // thread and taking it back per chunk costs more than the copy.
        let chunk = match source.try_read_chunk() {
            Some(chunk) => chunk,
            None => py.detach(|| source.read_chunk()),
        }
        .map_err(|error| PyOSError::new_err(error.to_string()))?;
        let Some(chunk) = chunk else {
            self.finished = true;
            return Ok(false);
        };
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(&chunk);
        Ok(true)
    }

    fn take<'py>(&mut self, py: Python<'py>, count: usize) -> Bound<'py, PyBytes> {
        let count = count.min(self.buffered().len());
        let bytes = PyBytes::new(py, &self.buffered()[..count]);
        self.start += count;
        bytes
    }

    fn read<'py>(&mut self, py: Python<'py>, size: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
        match size {
            None => {
                while self.fill(py)? {}
                Ok(self.take(py, usize::MAX))
            }
            Some(size) => {
                while self.buffered().len() < size && self.fill(py)? {}
                Ok(self.take(py, size))
            }
        }
    }

    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size.unwrap_or(usize::MAX);
        let mut searched = 0;
        loop {
            // Only the first `limit` bytes can matter: a long line read with a small
            // size must not be scanned whole on every call.
            let window = self.buffered().len().min(limit);
            if let Some(newline) = self.buffered()[searched..window]
                .iter()
                .position(|&b| b == b'\n')
            {
                return Ok(self.take(py, searched + newline + 1));
            }
            searched = window;
            if searched >= limit || !self.fill(py)? {
                return Ok(self.take(py, limit));
            }
        }
    }
}

fn bytes_length(bytes: &Bound<'_, PyBytes>) -> usize {
    bytes.as_bytes().len()
}

/// Python's convention: `None` or a negative size means "everything".
fn size_argument(size: Option<isize>) -> Option<usize> {
    size.and_then(|size| usize::try_from(size).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.metered(
            py,
            |state| state.read(py, size_argument(size)),
            bytes_length,
        )
    }

    /// As `read(size)`, but returns whatever the next chunk brings rather than waiting
    /// for `size` bytes.
    #[pyo3(signature = (size=None))]
    fn read1<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_argument(size).unwrap_or(usize::MAX);
        self.metered(
            py,
            |state| {
                if state.buffered().is_empty() {
                    state.fill(py)?;
                }
                Ok(state.take(py, size))
            },
            bytes_length,
        )
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.metered(
            py,
            |state| state.readline(py, size_argument(size)),
            bytes_length,
        )
    }

    /// Lines until the end of the body, or until their total size reaches `hint`.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_argument(hint).filter(|&hint| hint > 0);
        let (lines, _) = self.metered(
            py,
            |state| {
                let lines = PyList::empty(py);
                let mut total = 0;
                loop {
                    let line = state.readline(py, None)?;
                    let length = line.as_bytes().len();
                    if length == 0 {
                        break;
                    }
                    lines.append(line)?;
                    total += length;
                    if hint.is_some_and(|hint| total >= hint) {
                        break;
                    }
                }
                Ok((lines, total))
            },
            |(_, total)| *total,
        )?;
        Ok(lines)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    fn readable(&self) -> bool {
        true
    }

    fn seekable(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        false
    }

    /// Nothing to release: the server owns the connection. Present because frameworks
    /// wrap `wsgi.input` in `io` classes that call it.
    fn close(&self) {}

    #[getter]
    fn closed(&self) -> bool {
        false
    }
}

//! `wsgi.file_wrapper`: lets an application return a file for the server to send.
//!
//! When the wrapped object is a real regular file, the runner hands the file itself to
//! the front end ([`super::ResponseBody::File`]), so no Python thread is held while the
//! client downloads it. Any other file-like object is iterated in blocks of `blksize`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Block size PEP 3333's example uses; applications may pass their own.
const DEFAULT_BLOCK_SIZE: usize = 8192;

#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct FileWrapper {
    pub(crate) filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=DEFAULT_BLOCK_SIZE))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            block_size: blksize.max(1),
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.block_size,))?;
        let empty = block.cast::<PyBytes>().map_or_else(
            |_| block.len().map_or(true, |len| len == 0),
            |bytes| bytes.as_bytes().is_empty(),
        );
        Ok((!empty).then_some(block))
    }

    /// Closes the wrapped object, as PEP 3333 asks of the server.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(pyo3::intern!(py, "close"))? {
            filelike.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// The wrapped object as a regular file from its current position: a duplicate of its
    /// descriptor, the position, and the bytes left. `None` for anything else.
    pub(crate) fn as_regular_file(&self, py: Python<'_>) -> Option<(std::fs::File, u64, u64)> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike
            .call_method0(pyo3::intern!(py, "fileno"))
            .ok()?
            .extract()
            .ok()?;
        // Flush Python-side buffers so the descriptor's view is the application's view.
        if filelike
            .hasattr(pyo3::intern!(py, "flush"))
            .unwrap_or(false)
        {
            filelike.call_method0(pyo3::intern!(py, "flush")).ok()?;
        }
        let position: u64 = filelike
            .call_method0(pyo3::intern!(py, "tell"))
            .ok()?
            .extract()
            .ok()?;
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own, or -1 which we check.
        // Close-on-exec: a subprocess another request starts must not inherit it.
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if duplicate < 0 {
            return None;
        }
        // SAFETY: `duplicate` is a fresh descriptor owned by nobody else.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(duplicate) });
        let metadata = file.metadata().ok()?;
        if !metadata.is_file() {
            return None;
        }
        let length = metadata.len().saturating_sub(position);
        Some((file, position, length))
    }
}

//! `wsgi.errors`, `sys.stdout` and `sys.stderr` of the application: text streams whose
//! lines go to the error log, as mod_wsgi does, so `print()` output is never lost.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::MutexExt;

use crate::logs::{Level, error_log};

/// A write-only text stream that logs each complete line.
#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct LogStream {
    name: String,
    level: Level,
    /// Text written since the last newline.
    partial: Mutex<String>,
}

impl LogStream {
    pub(crate) fn new(name: &str, level: Level) -> Self {
        Self {
            name: name.to_owned(),
            level,
            partial: Mutex::new(String::new()),
        }
    }

    fn emit(&self, text: &str) {
        error_log::log(self.level, "wsgi", text);
    }
}

#[pymethods]
impl LogStream {
    fn write(&self, py: Python<'_>, text: &str) -> usize {
        let mut partial = self
            .partial
            .lock_py_attached(py)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        partial.push_str(text);
        if let Some(last_newline) = partial.rfind('\n') {
            let complete: String = partial.drain(..=last_newline).collect();
            drop(partial);
            py.detach(|| self.emit(&complete));
        }
        text.chars().count()
    }

    fn writelines(&self, py: Python<'_>, lines: Vec<String>) {
        for line in lines {
            self.write(py, &line);
        }
    }

    fn flush(&self, py: Python<'_>) {
        let complete = std::mem::take(
            &mut *self
                .partial
                .lock_py_attached(py)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !complete.is_empty() {
            py.detach(|| self.emit(&complete));
        }
    }

    fn isatty(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn readable(&self) -> bool {
        false
    }

    fn seekable(&self) -> bool {
        false
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "backslashreplace"
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
}

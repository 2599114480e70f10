//! The WSGI executor: the only home of PEP 3333 in Ferrule.
//!
//! It takes a [`Request`] (method, target, headers, connection facts, a body stream) and
//! gives back a [`Response`] (status, headers, a body). Embedded mode calls it in-process
//! from the front end; daemon mode will call it from the daemon's IPC loop. It owns the
//! environ, `wsgi.input`, `start_response` and `write()`, `wsgi.file_wrapper`,
//! `wsgi.errors`, application loading, and calling `close()` on every path.
//!
//! Threading: `--threads` OS threads per process, each attached to Python for its whole
//! life and detached only while it waits (for a request, for body bytes, for room in the
//! response channel). The threads that speak HTTP never touch Python.
//!
//! It does not know HTTP framing or sockets: bodies arrive through [`BodySource`] and
//! leave through [`ResponseBody`].

mod access;
mod app;
mod context;
mod deadlock_watch;
mod developer_tools;
mod environ;
mod error;
mod events;
mod executor;
mod file_wrapper;
mod host_module;
mod input;
mod interrupt;
mod log_stream;
mod meter;
mod module_watch;
mod queue;
mod run;
mod slow_requests;
mod start_response;

use pyo3::prelude::*;

pub use access::AccessScripts;
pub use app::{AppSource, AppSpec, load_application, run_service_script};
pub use deadlock_watch::DeadlockWatch;
pub use developer_tools::{DeveloperTools, missing_package};
pub use environ::ProcessFacts;
pub use error::AppLoadError;
pub use executor::{Executor, StandardStreams};
pub use host_module::resident_bytes;
pub use interrupt::InterruptSettings;
pub use module_watch::watch_imported_files;

/// Registers the executor's Python classes on `ferrule._ferrule`.
pub fn init_pymodule(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<input::Input>()?;
    module.add_class::<start_response::StartResponse>()?;
    module.add_class::<file_wrapper::FileWrapper>()?;
    module.add_class::<log_stream::LogStream>()?;
    module.add(
        "RequestTimeout",
        module.py().get_type::<interrupt::RequestTimeout>(),
    )?;
    Ok(())
}

// The hand-off types the executor is called with, under the names its modules use.
pub use crate::handoff::{
    BodyReadError, BodySource, ConnectionInfo, Request, RequestId, Response, ResponseBody,
    StreamAborted, error_response,
};

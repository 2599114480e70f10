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

mod app;
mod context;
mod environ;
mod error;
mod executor;
mod file_wrapper;
mod input;
mod log_stream;
mod module_watch;
mod queue;
mod reply;
mod request_id;
pub mod request_path;
mod run;
mod start_response;

use std::net::SocketAddr;

use bytes::Bytes;
use pyo3::prelude::*;

pub use app::{AppSource, AppSpec, load_application};
pub use environ::ProcessFacts;
pub use error::{AppLoadError, BodyReadError};
pub use executor::{Executor, StandardStreams};
pub use module_watch::watch_imported_files;
pub use request_id::RequestId;

/// Registers the executor's Python classes on `ferrule._ferrule`.
pub fn init_pymodule(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<input::Input>()?;
    module.add_class::<start_response::StartResponse>()?;
    module.add_class::<file_wrapper::FileWrapper>()?;
    module.add_class::<log_stream::LogStream>()?;
    Ok(())
}

/// One HTTP request as the executor needs it.
pub struct Request {
    pub method: http::Method,
    /// The request target exactly as received (`/a%20b?x=1`).
    pub target: http::Uri,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub connection: ConnectionInfo,
    pub body: Box<dyn BodySource>,
    /// When the front end finished reading the request head (`mod_wsgi.request_start`).
    pub received_at: std::time::SystemTime,
    /// Made by the front end when it received the request (`mod_wsgi.request_id`).
    pub request_id: RequestId,
}

/// Facts about the connection a request arrived on.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    pub remote_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub https: bool,
}

/// The request body as a blocking stream of chunks, already de-chunked and bounded by
/// Content-Length. Called from an executor thread with the GIL released.
pub trait BodySource: Send {
    /// The next chunk, `Ok(None)` at the end of the body.
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError>;

    /// The next chunk if it is at hand without waiting (called with the GIL held);
    /// `None` when getting it would wait.
    fn try_read_chunk(&mut self) -> Option<Result<Option<Bytes>, BodyReadError>> {
        None
    }
}

/// A response as the application produced it.
pub struct Response {
    pub status: http::StatusCode,
    /// The reason phrase when the application's differs from the standard one.
    pub reason: Option<Bytes>,
    pub headers: http::HeaderMap,
    pub body: ResponseBody,
}

/// The body of a [`Response`].
pub enum ResponseBody {
    /// Every byte is known: a list or tuple result. Content-Length is already set.
    Full(Vec<Bytes>),
    /// Bytes that arrive while the application iterates. An `Err` means the application
    /// failed after the status line went out; the connection must be cut so the client
    /// cannot mistake a truncated body for a whole one.
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, StreamAborted>>),
    /// A slice of a real file (`wsgi.file_wrapper` over a file object), sent by the front
    /// end without the application thread. Content-Length is already set.
    File {
        file: std::fs::File,
        offset: u64,
        length: u64,
    },
}

/// A small HTML error page, used for failures that happen before the application
/// produced a response.
pub fn error_response(status: http::StatusCode, explanation: &str) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n<p>{explanation}</p></body></html>\n"
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(page.len()),
    );
    Response {
        status,
        reason: None,
        headers,
        body: ResponseBody::Full(vec![Bytes::from(page)]),
    }
}

/// The application failed while its response was streaming.
#[derive(Debug, Clone, Copy)]
pub struct StreamAborted;

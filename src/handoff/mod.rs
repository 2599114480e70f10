//! The hand-off between the front end and whatever runs the application: the request as
//! the front end parsed it, the response it gets back, the bodies of both, and the reply
//! channel between them. No PyO3 here: the front end links nothing of Python.
//! - `access`: the access-control work the front end leaves to the Python side.
//! - `host`: the Host header split into the name and port the request asked for (shared
//!   by the environ, the CGI and PHP variables, the front door and the proxy's routes).
//! - `reply`: the one-shot channel a response head comes back on, batched per reactor.
//! - `request_id`: the short unique id of each request (`mod_wsgi.request_id`).
//! - `request_path`: the target's path, percent-decoded and normalized as mod_wsgi does
//!   (shared by the environ and the front end's static files).

mod access;
pub mod activity;
mod host;
pub mod reply;
mod request_id;
pub mod request_path;

use std::net::SocketAddr;

use bytes::Bytes;

pub use access::{AccessCheck, Credentials};
pub use host::Host;
pub use request_id::RequestId;

/// What runs the application inside this process (embedded mode): the front end hands it
/// requests and awaits the response head on the reply channel.
pub trait InProcessExecutor: Send + Sync {
    /// Queues `request`; the receiver yields the response once the application produced
    /// its head (or failed).
    fn submit(&self, request: Request) -> reply::ReplyReceiver;

    /// Makes the next request load the application again first (its entry file changed).
    fn reload_before_next_request(&self);

    /// What the application threads are doing (for metrics and the status page).
    fn activity(&self) -> &activity::ThreadActivity;
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
    /// When the front end finished reading the request head (`mod_wsgi.request_start`);
    /// in daemon mode, when it started looking for a free daemon thread, which is also
    /// `mod_wsgi.queue_start`.
    pub received_at: std::time::SystemTime,
    /// Daemon mode: when the daemon process received the request from the front end
    /// (`mod_wsgi.daemon_start`). `None` in embedded mode, where mod_wsgi gives 0.0 for
    /// both `queue_start` and `daemon_start`.
    pub daemon_start: Option<std::time::SystemTime>,
    /// Made by the front end when it received the request (`mod_wsgi.request_id`).
    pub request_id: RequestId,
    /// Set when a host access or authentication script is configured: the scripts run
    /// before the application, which sees the request only if they let it through.
    pub access: Option<AccessCheck>,
    /// Environ variables the front end sets last, over the ones made from the request:
    /// `SSL_*` (`--ssl-environment`) and what trusted proxies said (`REMOTE_ADDR`,
    /// `wsgi.url_scheme`, ...). An empty value removes the variable.
    pub variables: Vec<(String, String)>,
    /// Set when the request names a file of the document root that an `--add-handler`
    /// script serves: that script's callable answers instead of the application.
    pub handler: Option<HandlerTarget>,
}

/// A file of the document root served by an `--add-handler` script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerTarget {
    /// Which `--add-handler` (in the order given).
    pub index: u16,
    /// The file, absolute with links resolved (`SCRIPT_FILENAME`).
    pub file: std::path::PathBuf,
    /// The decoded URL path that named it (`SCRIPT_NAME`).
    pub script_name: Vec<u8>,
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

/// Marks a page the server made (not the application), for `--error-document`; the front
/// end removes it before the response goes out. A header, so that it crosses the daemon
/// socket with the rest of the response.
pub const SERVER_PAGE: http::HeaderName = http::HeaderName::from_static("x-ferrule-server-page");

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
    headers.insert(SERVER_PAGE, http::HeaderValue::from_static("1"));
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

/// Why reading the request body failed: the client went away or sent a broken body.
#[derive(Debug, thiserror::Error)]
#[error("request body read failed: {reason}")]
pub struct BodyReadError {
    pub reason: String,
}

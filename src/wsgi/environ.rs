//! The WSGI environ, built the way mod_wsgi builds it.
//!
//! Constants (`wsgi.*`, `SCRIPT_NAME`, the `mod_wsgi.*` keys that do not change per
//! request) live in a per-process template dict; each request starts from one C-level
//! `dict.copy()` of it and adds what the request says. The template also holds a
//! placeholder for every key each request sets ([`PER_REQUEST_KEYS`]): the copy then
//! replaces values instead of inserting keys, and its table, sized for all of them, has
//! room left for the request's headers, so the dict never grows while a request fills it
//! (growing it twice per request cost about 2,000 instructions, counted by callgrind).
//! Constant values (method, protocol) and the keys of common headers are interned strings,
//! made once per process.
//!
//! Request headers whose names hold anything but ASCII letters, digits and `-` are dropped
//! (mod_wsgi 4.3.0, "Bugs Fixed" 2): `X_Forwarded_For` must not be able to pose as
//! `X-Forwarded-For`. Header values pass through as latin-1, never dropped. A `Proxy`
//! header never becomes `HTTP_PROXY` (httpoxy: libraries read that as their proxy), as in
//! mod_wsgi.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::ConnectionInfo;

/// Facts fixed for the life of one server process, copied into every environ.
#[derive(Clone, Debug)]
pub struct ProcessFacts {
    pub n_processes: usize,
    pub n_threads: usize,
    /// `wsgi.multiprocess` (see `cli::ProcessConfig::multiprocess`).
    pub multiprocess: bool,
    /// `mod_wsgi.server_pid`: the process that accepted the connection (the front end in
    /// daemon mode, as mod_wsgi gives the Apache child's pid, not the daemon's).
    pub server_pid: u32,
    /// `mod_wsgi.listener_host`: the `--host` the server listens on, `''` without one.
    pub listener_host: String,
    /// `mod_wsgi.process_group`: empty in embedded mode, the group name in daemon mode.
    pub process_group: String,
    /// `mod_wsgi.application_group`: the Python interpreter the application runs in.
    pub application_group: String,
    /// `--server-metrics`: `mod_wsgi.server_metrics()` answers.
    pub server_metrics: bool,
    /// `--slow-requests`: requests running longer are logged with their Python stack.
    pub slow_requests: Option<std::time::Duration>,
    pub callable_object: String,
    /// The WSGI script file, for `SCRIPT_FILENAME`.
    pub script_filename: String,
    /// Where the application is mounted; empty for the root of the site.
    pub script_name: String,
    /// What `SERVER_NAME` says when the request carries no Host header.
    pub default_server_name: String,
    pub server_software: String,
    pub document_root: String,
    /// `--setenv` and `--passenv`: keys every request's environ starts with (the
    /// server's own keys and the request's are set after them, and win, as in mod_wsgi).
    pub request_environ: Vec<(String, String)>,
}

/// Builds the per-process template dict. `errors` is `wsgi.errors`, `file_wrapper` the
/// `wsgi.file_wrapper` class.
pub(crate) fn template<'py>(
    py: Python<'py>,
    facts: &ProcessFacts,
    errors: &Bound<'py, PyAny>,
    file_wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for (name, value) in &facts.request_environ {
        environ.set_item(name, value)?;
    }
    environ.set_item("wsgi.version", (1, 0))?;
    environ.set_item("wsgi.multithread", facts.n_threads > 1)?;
    environ.set_item("wsgi.multiprocess", facts.multiprocess)?;
    environ.set_item("wsgi.run_once", false)?;
    environ.set_item("wsgi.errors", errors)?;
    environ.set_item("wsgi.file_wrapper", file_wrapper)?;
    environ.set_item("wsgi.input_terminated", true)?;
    // mod_wsgi sets no GATEWAY_INTERFACE; SERVER_ADMIN is Apache's text when no
    // ServerAdmin is configured, which mod_wsgi-express never does.
    environ.set_item("SERVER_ADMIN", "[no address given]")?;
    environ.set_item("SERVER_SOFTWARE", &facts.server_software)?;
    environ.set_item("SCRIPT_NAME", &facts.script_name)?;
    environ.set_item("SCRIPT_FILENAME", &facts.script_filename)?;
    environ.set_item("DOCUMENT_ROOT", &facts.document_root)?;
    environ.set_item("CONTEXT_DOCUMENT_ROOT", &facts.document_root)?;
    environ.set_item("CONTEXT_PREFIX", "")?;
    environ.set_item("REQUEST_SCHEME", "http")?;
    // The mod_wsgi.* keys an application sees under mod_wsgi 6 (its internal
    // mod_wsgi.x-* keys never reach the environ, and neither do they here).
    environ.set_item("mod_wsgi.process_group", &facts.process_group)?;
    environ.set_item("mod_wsgi.application_group", &facts.application_group)?;
    environ.set_item("mod_wsgi.callable_object", &facts.callable_object)?;
    environ.set_item("mod_wsgi.request_handler", "wsgi-script")?;
    environ.set_item("mod_wsgi.handler_script", "")?;
    environ.set_item("mod_wsgi.script_name", &facts.script_name)?;
    environ.set_item("mod_wsgi.listener_host", &facts.listener_host)?;
    environ.set_item("mod_wsgi.server_pid", facts.server_pid.to_string())?;
    environ.set_item("mod_wsgi.queue_start", 0.0)?;
    environ.set_item("mod_wsgi.daemon_start", 0.0)?;
    environ.set_item("mod_wsgi.version", super::host_module::MOD_WSGI_VERSION)?;
    environ.set_item("ferrule.version", env!("CARGO_PKG_VERSION"))?;
    environ.set_item("wsgi.url_scheme", "http")?;
    for key in PER_REQUEST_KEYS {
        environ.set_item(*key, py.None())?;
    }
    Ok(environ)
}

/// The keys [`build`] sets for every request, whatever it says; the template holds a
/// placeholder for each (see the module's comment). A key set only sometimes (`HTTPS`)
/// must not be here: its placeholder would reach the application.
const PER_REQUEST_KEYS: &[&str] = &[
    "REQUEST_METHOD",
    "REQUEST_URI",
    "mod_wsgi.path_info",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_ADDR",
    "mod_wsgi.listener_port",
    "mod_wsgi.request_start",
    "mod_wsgi.application_start",
    "mod_wsgi.thread_id",
    "mod_wsgi.request_id",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.input",
];

/// The request-specific part of the environ, added to a copy of the template.
pub(crate) struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub target: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
    pub connection: ConnectionInfo,
    pub default_server_name: &'a str,
    pub script_name: &'a str,
    pub received_at: std::time::SystemTime,
    /// Daemon mode: when the daemon received the request (see `handoff::Request`).
    pub daemon_start: Option<std::time::SystemTime>,
    /// Which application thread of the process runs the request, from 0
    /// (`mod_wsgi.thread_id` is this plus one).
    pub thread_index: usize,
    pub request_id: super::RequestId,
    /// Set last, over everything else; an empty value removes the variable.
    pub variables: &'a [(String, String)],
}

pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    request: &RequestFacts<'_>,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = template.copy()?;
    environ.set_item(
        pyo3::intern!(py, "REQUEST_METHOD"),
        method_name(py, request.method),
    )?;
    let path = request.target.path();
    let query = request.target.query().unwrap_or("");
    // The target as sent, one character per byte: raw UTF-8 stays two characters.
    let request_uri = crate::handoff::request_path::request_target(request.target);
    environ.set_item(
        pyo3::intern!(py, "REQUEST_URI"),
        latin1(py, request_uri.as_bytes()),
    )?;
    let decoded_path = crate::handoff::request_path::decode(path.as_bytes());
    let path_info = decoded_path
        .strip_prefix(request.script_name.as_bytes())
        .unwrap_or(&decoded_path);
    let path_info = latin1(py, path_info);
    environ.set_item(pyo3::intern!(py, "mod_wsgi.path_info"), &path_info)?;
    environ.set_item(pyo3::intern!(py, "PATH_INFO"), path_info)?;
    environ.set_item(
        pyo3::intern!(py, "QUERY_STRING"),
        latin1(py, query.as_bytes()),
    )?;
    environ.set_item(
        pyo3::intern!(py, "SERVER_PROTOCOL"),
        protocol_name(py, request.version),
    )?;
    let connection = request.connection;
    environ.set_item(
        pyo3::intern!(py, "REMOTE_ADDR"),
        AddressText::new(connection.remote_addr.ip()).as_str(),
    )?;
    environ.set_item(
        pyo3::intern!(py, "REMOTE_PORT"),
        itoa::Buffer::new().format(connection.remote_addr.port()),
    )?;
    environ.set_item(
        pyo3::intern!(py, "SERVER_ADDR"),
        AddressText::new(connection.local_addr.ip()).as_str(),
    )?;
    let local_port = PyString::new(py, itoa::Buffer::new().format(connection.local_addr.port()));
    environ.set_item(pyo3::intern!(py, "mod_wsgi.listener_port"), &local_port)?;
    environ.set_item(
        pyo3::intern!(py, "mod_wsgi.request_start"),
        seconds_since_epoch(request.received_at),
    )?;
    // The template's 0.0 stands in embedded mode, as in mod_wsgi; in daemon mode the
    // front end queued the request for a daemon thread as it received it.
    if let Some(daemon_start) = request.daemon_start {
        environ.set_item(
            pyo3::intern!(py, "mod_wsgi.queue_start"),
            seconds_since_epoch(request.received_at),
        )?;
        environ.set_item(
            pyo3::intern!(py, "mod_wsgi.daemon_start"),
            seconds_since_epoch(daemon_start),
        )?;
    }
    environ.set_item(
        pyo3::intern!(py, "mod_wsgi.application_start"),
        seconds_since_epoch(std::time::SystemTime::now()),
    )?;
    // Counted from 1, as mod_wsgi does (and the `mod_wsgi` module and its events here).
    environ.set_item(
        pyo3::intern!(py, "mod_wsgi.thread_id"),
        request.thread_index + 1,
    )?;
    environ.set_item(
        pyo3::intern!(py, "mod_wsgi.request_id"),
        request.request_id.text().as_str(),
    )?;
    // Apache with `UseCanonicalName Off`: the name and port the client asked for in
    // Host, else the configured name and the port the connection arrived on.
    let (server_name, host_port) =
        crate::handoff::Host::server_name_and_port(request.headers, request.default_server_name);
    environ.set_item(pyo3::intern!(py, "SERVER_NAME"), &*server_name)?;
    match host_port {
        Some(port) => environ.set_item(
            pyo3::intern!(py, "SERVER_PORT"),
            itoa::Buffer::new().format(port),
        )?,
        None => environ.set_item(pyo3::intern!(py, "SERVER_PORT"), local_port)?,
    }
    if connection.https {
        environ.set_item(pyo3::intern!(py, "wsgi.url_scheme"), "https")?;
        environ.set_item(pyo3::intern!(py, "REQUEST_SCHEME"), "https")?;
        // mod_wsgi's value (mod_ssl's own CGI variable would say "on").
        environ.set_item(pyo3::intern!(py, "HTTPS"), "1")?;
    }
    add_headers(py, &environ, request.headers)?;
    for (name, value) in request.variables {
        if value.is_empty() {
            if environ.contains(name.as_str())? {
                environ.del_item(name.as_str())?;
            }
        } else {
            environ.set_item(name.as_str(), value.as_str())?;
        }
    }
    environ.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
    Ok(environ)
}

/// An address as the environ spells it (an IPv4-mapped IPv6 address as IPv4), written
/// on the stack. IPv4 is written by hand: `to_string` goes through the formatting
/// machinery, about 200 instructions per octet (callgrind), for two addresses on every
/// request.
struct AddressText {
    bytes: [u8; 45],
    len: usize,
}

impl AddressText {
    fn new(ip: std::net::IpAddr) -> Self {
        let mut text = Self {
            bytes: [0; 45],
            len: 0,
        };
        match ip.to_canonical() {
            std::net::IpAddr::V4(ip) => {
                let mut digits = itoa::Buffer::new();
                for (index, octet) in ip.octets().into_iter().enumerate() {
                    if index > 0 {
                        text.push(b".");
                    }
                    text.push(digits.format(octet).as_bytes());
                }
            }
            ip @ std::net::IpAddr::V6(_) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
                // 45 bytes hold the longest IPv6 text (an IPv4-suffixed form).
                if write!(cursor, "{ip}").is_ok() {
                    text.len = usize::try_from(cursor.position()).unwrap_or(0);
                }
            }
        }
        text
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The keys of a request an `--add-handler` script answers: the file is the script of
/// the request (`SCRIPT_FILENAME`, `SCRIPT_NAME` its URL path, no `PATH_INFO`), and
/// `mod_wsgi.request_handler` and `mod_wsgi.handler_script` say which handler, as under
/// mod_wsgi's `WSGIHandlerScript`.
pub(crate) fn apply_handler(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    target: &crate::handoff::HandlerTarget,
    handler_script: &std::path::Path,
) -> PyResult<()> {
    use std::os::unix::ffi::OsStrExt;
    let script_name = latin1(py, &target.script_name);
    environ.set_item("SCRIPT_NAME", &script_name)?;
    environ.set_item("mod_wsgi.script_name", &script_name)?;
    environ.set_item("PATH_INFO", "")?;
    environ.set_item("mod_wsgi.path_info", "")?;
    environ.set_item(
        "SCRIPT_FILENAME",
        latin1(py, target.file.as_os_str().as_bytes()),
    )?;
    environ.set_item("mod_wsgi.request_handler", "wsgi-resource")?;
    environ.set_item(
        "mod_wsgi.handler_script",
        latin1(py, handler_script.as_os_str().as_bytes()),
    )?;
    Ok(())
}

pub(crate) fn seconds_since_epoch(instant: std::time::SystemTime) -> f64 {
    instant
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn protocol_name(py: Python<'_>, version: http::Version) -> Bound<'_, PyString> {
    let name = match version {
        http::Version::HTTP_09 => pyo3::intern!(py, "HTTP/0.9"),
        http::Version::HTTP_10 => pyo3::intern!(py, "HTTP/1.0"),
        http::Version::HTTP_2 => pyo3::intern!(py, "HTTP/2.0"),
        http::Version::HTTP_3 => pyo3::intern!(py, "HTTP/3.0"),
        _ => pyo3::intern!(py, "HTTP/1.1"),
    };
    name.clone()
}

/// `REQUEST_METHOD`: the common methods as strings made once per process.
fn method_name<'py>(py: Python<'py>, method: &http::Method) -> Bound<'py, PyString> {
    let name = match *method {
        http::Method::GET => pyo3::intern!(py, "GET"),
        http::Method::POST => pyo3::intern!(py, "POST"),
        http::Method::HEAD => pyo3::intern!(py, "HEAD"),
        http::Method::PUT => pyo3::intern!(py, "PUT"),
        http::Method::DELETE => pyo3::intern!(py, "DELETE"),
        http::Method::PATCH => pyo3::intern!(py, "PATCH"),
        http::Method::OPTIONS => pyo3::intern!(py, "OPTIONS"),
        _ => return PyString::new(py, method.as_str()),
    };
    name.clone()
}

fn add_headers(
    py: Python<'_>,
    environ: &Bound<'_, PyDict>,
    headers: &http::HeaderMap,
) -> PyResult<()> {
    for name in headers.keys() {
        let name_str = name.as_str();
        if !name_str
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || name_str == "proxy"
        {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let mut joined: std::borrow::Cow<'_, [u8]> = first.as_bytes().into();
        for value in values {
            let joined = joined.to_mut();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
        }
        let value = latin1(py, &joined);
        match common_header_key(py, name_str) {
            Some(key) => environ.set_item(key, value)?,
            None => environ.set_item(cgi_header_key(name_str), value)?,
        }
    }
    Ok(())
}

/// The environ keys of the headers most requests carry, as strings made once per process
/// (with their hash cached, which a new key string would compute on every insertion).
fn common_header_key<'py>(py: Python<'py>, name: &str) -> Option<&'py Bound<'py, PyString>> {
    Some(match name {
        "host" => pyo3::intern!(py, "HTTP_HOST"),
        "user-agent" => pyo3::intern!(py, "HTTP_USER_AGENT"),
        "accept" => pyo3::intern!(py, "HTTP_ACCEPT"),
        "accept-encoding" => pyo3::intern!(py, "HTTP_ACCEPT_ENCODING"),
        "accept-language" => pyo3::intern!(py, "HTTP_ACCEPT_LANGUAGE"),
        "connection" => pyo3::intern!(py, "HTTP_CONNECTION"),
        "cookie" => pyo3::intern!(py, "HTTP_COOKIE"),
        "referer" => pyo3::intern!(py, "HTTP_REFERER"),
        "authorization" => pyo3::intern!(py, "HTTP_AUTHORIZATION"),
        "cache-control" => pyo3::intern!(py, "HTTP_CACHE_CONTROL"),
        "x-forwarded-for" => pyo3::intern!(py, "HTTP_X_FORWARDED_FOR"),
        "x-forwarded-proto" => pyo3::intern!(py, "HTTP_X_FORWARDED_PROTO"),
        "content-type" => pyo3::intern!(py, "CONTENT_TYPE"),
        "content-length" => pyo3::intern!(py, "CONTENT_LENGTH"),
        _ => return None,
    })
}

/// `x-forwarded-for` → `HTTP_X_FORWARDED_FOR`.
fn cgi_header_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 5);
    key.push_str("HTTP_");
    key.extend(name.bytes().map(|b| match b {
        b'-' => '_',
        b => char::from(b.to_ascii_uppercase()),
    }));
    key
}

/// Bytes as a Python str, one character per byte (latin-1), as PEP 3333 asks.
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => {
            let text: String = bytes.iter().map(|&b| char::from(b)).collect();
            PyString::new(py, &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_follow_cgi() {
        assert_eq!(cgi_header_key("x-forwarded-for"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(cgi_header_key("accept"), "HTTP_ACCEPT");
    }

    #[test]
    fn addresses_read_as_the_standard_library_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "::1",
            "fe80::1:2",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(AddressText::new(ip).as_str(), text);
        }
        let mapped: std::net::IpAddr = "::ffff:192.168.0.9".parse().unwrap();
        assert_eq!(AddressText::new(mapped).as_str(), "192.168.0.9");
        let longest: std::net::IpAddr = "1111:2222:3333:4444:5555:6666:123.123.123.123"
            .parse()
            .unwrap();
        assert_eq!(AddressText::new(longest).as_str(), longest.to_string());
    }
}

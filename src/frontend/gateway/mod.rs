//! `--with-php5` and `--with-cgi`: files of the document root answered by another
//! program, through the Common Gateway Interface's variables (RFC 3875): `.php` files by
//! the php-fpm pool over FastCGI (`php.rs`), executable `.cgi` files by running them
//! (`cgi.rs`). The document root's look-up (`static_files.rs`) names the file
//! ([`GatewayTarget`]); this module builds the variables, hands the request body over as
//! it arrives, and streams the answer back: its head parsed here (`response_head.rs`),
//! its body relayed by a task of its own as the program writes it.
//!
//! The front end does this itself, in daemon and embedded mode alike: no Python runs.

mod cgi;
mod php;
mod response_head;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::request_body::RequestBody;
use crate::handoff::{self, ConnectionInfo, StreamAborted};
use crate::logs::{Level, error_log};

/// What the front end needs to run the gateways.
#[derive(Clone, Debug)]
pub struct Gateways {
    /// The php-fpm pool's socket (`--with-php5`); `None` without PHP.
    pub php_socket: Option<PathBuf>,
    /// `--with-cgi`.
    pub cgi: bool,
    /// `--request-timeout`: a CGI script still running after it is killed (php-fpm's
    /// pool has the same limit as its `request_terminate_timeout`).
    pub request_timeout: Option<Duration>,
    /// `--document-root`, for `DOCUMENT_ROOT` and `PATH_TRANSLATED`.
    pub document_root: PathBuf,
    /// `SERVER_NAME` of a request without a Host name, as in the WSGI environ.
    pub server_name: String,
}

/// Which program answers for a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKind {
    Php,
    Cgi,
}

/// A file of the document root that a gateway answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayTarget {
    pub kind: GatewayKind,
    /// The file, absolute with links resolved (`SCRIPT_FILENAME`).
    pub file: PathBuf,
    /// The decoded URL path that names the file (`SCRIPT_NAME`).
    pub script_name: Vec<u8>,
    /// The decoded rest of the URL path after it (`PATH_INFO`), often empty.
    pub path_info: Vec<u8>,
}

/// Why a gateway gave no answer.
#[derive(Debug, thiserror::Error)]
enum GatewayError {
    /// The program could not be reached or started: 503.
    #[error("{0}")]
    Unavailable(String),
    /// It ran past `--request-timeout`: 504.
    #[error("{0}")]
    TimedOut(String),
    /// It answered with something that is not a CGI response: 502.
    #[error("{0}")]
    Bad(String),
}

impl GatewayError {
    fn response(&self) -> handoff::Response {
        let (status, explanation) = match self {
            Self::Unavailable(_) => (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "The program that answers for this file is not available.",
            ),
            Self::TimedOut(_) => (
                http::StatusCode::GATEWAY_TIMEOUT,
                "The program that answers for this file took too long.",
            ),
            Self::Bad(_) => (
                http::StatusCode::BAD_GATEWAY,
                "The program that answers for this file gave a malformed answer.",
            ),
        };
        handoff::error_response(status, explanation)
    }
}

/// Where a gateway's response comes from, piece by piece: `Ok(None)` at its end.
trait Output: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Result<Option<Bytes>, GatewayError>> + Send;
}

/// The request as the gateway sees it.
pub(super) struct GatewayRequest<'a> {
    pub(super) parts: &'a http::request::Parts,
    pub(super) connection: ConnectionInfo,
    /// The TLS and trusted-proxy variables the front end made for the request.
    pub(super) variables: &'a [(String, String)],
    pub(super) target: GatewayTarget,
}

impl Gateways {
    /// The gateways of a server with a document root, when PHP or CGI is on;
    /// `server_name` is the configured name (`--server-name`, else `--host`, else
    /// `localhost`).
    pub fn new(
        php_socket: Option<PathBuf>,
        cgi: bool,
        request_timeout: Option<Duration>,
        document_root: Option<&std::path::Path>,
        server_name: &str,
    ) -> Option<std::sync::Arc<Self>> {
        let document_root = document_root?.to_owned();
        (php_socket.is_some() || cgi).then(|| {
            std::sync::Arc::new(Self {
                php_socket,
                cgi,
                request_timeout,
                document_root,
                server_name: server_name.to_owned(),
            })
        })
    }

    /// The answer of the program `request.target` names.
    pub(super) async fn respond(
        &self,
        request: GatewayRequest<'_>,
        body: RequestBody,
    ) -> handoff::Response {
        let remote = request.connection.remote_addr.to_string();
        let variables = self.variables(&request);
        let answered = match request.target.kind {
            GatewayKind::Php => match &self.php_socket {
                Some(socket) => match php::start(socket, &variables, body, remote.clone()).await {
                    Ok(output) => relay(output, &remote).await,
                    Err(error) => Err(error),
                },
                None => Err(GatewayError::Unavailable(
                    "PHP is not configured".to_owned(),
                )),
            },
            GatewayKind::Cgi => {
                match cgi::start(
                    &request.target.file,
                    &variables,
                    body,
                    self.request_timeout,
                    remote.clone(),
                ) {
                    Ok(output) => relay(output, &remote).await,
                    Err(error) => Err(error),
                }
            }
        };
        answered.unwrap_or_else(|error| {
            error_log::log_with_context(
                Level::Error,
                "ferrule",
                Some(&remote),
                &format!("{}: {error}", request.target.file.display()),
            );
            error.response()
        })
    }

    /// The CGI variables (RFC 3875 section 4.1), and the HTTP headers as `HTTP_*`.
    fn variables(&self, request: &GatewayRequest<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let parts = request.parts;
        let target = &request.target;
        let connection = &request.connection;
        let mut variables: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(32 + parts.headers.len());
        let mut set =
            |name: &str, value: &[u8]| variables.push((name.as_bytes().to_vec(), value.to_vec()));
        set("GATEWAY_INTERFACE", b"CGI/1.1");
        set("SERVER_SOFTWARE", b"ferrule");
        set("SERVER_PROTOCOL", format!("{:?}", parts.version).as_bytes());
        set("REQUEST_METHOD", parts.method.as_str().as_bytes());
        let request_uri = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        set("REQUEST_URI", request_uri.as_bytes());
        set("QUERY_STRING", parts.uri.query().unwrap_or("").as_bytes());
        set("SCRIPT_NAME", &target.script_name);
        set(
            "SCRIPT_FILENAME",
            target.file.as_os_str().as_encoded_bytes(),
        );
        if !target.path_info.is_empty() {
            set("PATH_INFO", &target.path_info);
            let mut translated = self.document_root.as_os_str().as_encoded_bytes().to_vec();
            translated.extend_from_slice(&target.path_info);
            set("PATH_TRANSLATED", &translated);
        }
        set(
            "DOCUMENT_ROOT",
            self.document_root.as_os_str().as_encoded_bytes(),
        );
        // One reading of Host for the WSGI environ and the gateways, as Apache's
        // `ap_get_server_name` and `ap_get_server_port` are for mod_wsgi, CGI and PHP.
        let (server_name, host_port) =
            handoff::Host::server_name_and_port(&parts.headers, &self.server_name);
        let port = host_port.unwrap_or_else(|| connection.local_addr.port());
        set("SERVER_NAME", server_name.as_bytes());
        // An IPv4-mapped IPv6 address as IPv4, as in the WSGI environ.
        let local_ip = connection.local_addr.ip().to_canonical().to_string();
        set("SERVER_ADDR", local_ip.as_bytes());
        set("SERVER_PORT", itoa::Buffer::new().format(port).as_bytes());
        set(
            "REMOTE_ADDR",
            connection
                .remote_addr
                .ip()
                .to_canonical()
                .to_string()
                .as_bytes(),
        );
        set(
            "REMOTE_PORT",
            connection.remote_addr.port().to_string().as_bytes(),
        );
        set(
            "REQUEST_SCHEME",
            if connection.https { b"https" } else { b"http" },
        );
        if connection.https {
            set("HTTPS", b"on");
        }
        // php-cgi refuses to run without it (`cgi.force_redirect`); harmless elsewhere.
        set("REDIRECT_STATUS", b"200");
        if let Some(value) = parts.headers.get(http::header::CONTENT_TYPE) {
            set("CONTENT_TYPE", value.as_bytes());
        }
        if let Some(value) = parts.headers.get(http::header::CONTENT_LENGTH) {
            set("CONTENT_LENGTH", value.as_bytes());
        }
        for (name, value) in request.variables {
            set(name, value.as_bytes());
        }
        for name in parts.headers.keys() {
            let name_text = name.as_str();
            // As Apache: a name with `_` could pass for another's variable; `Proxy` is
            // httpoxy (it would become HTTP_PROXY); the body's own are set above.
            if name_text.contains('_')
                || *name == http::header::CONTENT_TYPE
                || *name == http::header::CONTENT_LENGTH
                || name_text == "proxy"
            {
                continue;
            }
            let separator: &[u8] = if *name == http::header::COOKIE {
                b"; "
            } else {
                b", "
            };
            let mut joined = Vec::new();
            for (index, value) in parts.headers.get_all(name).iter().enumerate() {
                if index > 0 {
                    joined.extend_from_slice(separator);
                }
                joined.extend_from_slice(value.as_bytes());
            }
            let variable = format!("HTTP_{}", name_text.to_ascii_uppercase().replace('-', "_"));
            set(&variable, &joined);
        }
        variables
    }
}

/// Reads the head of `output`'s response here, then relays its body from a task of its
/// own, as it comes (the connection writes it chunked unless the program declared a
/// length). A program that fails after its head cuts the connection, so that the client
/// cannot take a short body for a whole one.
async fn relay(mut output: impl Output, remote: &str) -> Result<handoff::Response, GatewayError> {
    let mut buffer = Vec::new();
    let (head, first) = loop {
        let Some(bytes) = output.next().await? else {
            return Err(GatewayError::Bad(
                "the program ended before the blank line after its headers".to_owned(),
            ));
        };
        buffer.extend_from_slice(&bytes);
        if let Some((end, body_start)) = response_head::head_end(&buffer) {
            let head = response_head::parse(&buffer[..end]).map_err(|reason| {
                GatewayError::Bad(format!("the program's headers are malformed: {reason}"))
            })?;
            break (head, Bytes::copy_from_slice(&buffer[body_start..]));
        }
        if buffer.len() > response_head::MAX_HEAD {
            return Err(GatewayError::Bad(format!(
                "the program's headers are longer than {} bytes",
                response_head::MAX_HEAD
            )));
        }
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let remote = remote.to_owned();
    tokio::spawn(async move {
        if !first.is_empty() && sender.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            match output.next().await {
                Ok(Some(bytes)) => {
                    if sender.send(Ok(bytes)).await.is_err() {
                        // The client left: dropping the output stops the program's side.
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    error_log::log_with_context(
                        Level::Error,
                        "ferrule",
                        Some(&remote),
                        &format!("the response was cut: {error}"),
                    );
                    let _ = sender.send(Err(StreamAborted)).await;
                    return;
                }
            }
        }
    });
    Ok(handoff::Response {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body: handoff::ResponseBody::Stream(receiver),
    })
}

/// Logs what a program wrote on its error stream, a line at a time.
fn log_stderr(module: &str, remote: &str, text: &[u8]) {
    for line in String::from_utf8_lossy(text).lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            error_log::log_with_context(Level::Error, module, Some(remote), line);
        }
    }
}

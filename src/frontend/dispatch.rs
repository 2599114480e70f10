//! What happens to one parsed request: turned into an executor
//! [`Request`](crate::handoff::Request) (or answered by the front end), the response head
//! awaited, and the response given back to the connection with its body to write.
//!
//! Order: the request checks (`request_checks.rs`), the front door (virtual hosts,
//! `--https-only`, client certificates, trusted proxies: `crate::front_door`), reverse
//! proxying (`crate::proxy`; a `--proxy-virtual-host` name before the front door), access
//! control (`auth::check`), static files (or the `--add-handler` script a file names),
//! `--map-head-to-get`, then the backend; then, for an error, `--error-document`
//! (`error_documents.rs`); then `--compress-responses` (`compression.rs`).

use std::sync::Arc;

use http_body::Body;

use super::body::{DeclaredLength, LoggedBody};
use super::compression;
use super::connection::{IncomingBody, Reply};
use super::error_documents;
use super::request_body::{BlockingRequestBody, RequestBody, limit_body};
use super::request_checks::{self, Verdict};
use super::sendfile::FileSlot;
use super::static_files::Served;
use super::{Backend, FrontendConfig};
use crate::handoff::{self, ConnectionInfo};
use crate::logs::access_log::AccessRecord;

#[derive(Clone)]
pub(super) struct Service {
    config: Arc<FrontendConfig>,
    backend: Backend,
    connection: ConnectionInfo,
    /// Where file responses are handed to the socket for sendfile; `None` when the
    /// connection cannot use it.
    file_slot: Option<FileSlot>,
    /// What the TLS handshake said; `None` on plain HTTP.
    tls: Option<Arc<crate::tls::ConnectionTls>>,
}

impl Service {
    pub(super) fn new(
        config: Arc<FrontendConfig>,
        backend: Backend,
        connection: ConnectionInfo,
        file_slot: Option<FileSlot>,
        tls: Option<Arc<crate::tls::ConnectionTls>>,
    ) -> Self {
        Self {
            config,
            backend,
            connection,
            file_slot,
            tls,
        }
    }
}

impl Service {
    /// The same service for a connection that cannot send files with sendfile (HTTP/2
    /// frames every byte): file bodies are read and sent as bytes.
    pub(super) fn without_file_slot(mut self) -> Self {
        self.file_slot = None;
        self
    }

    /// A `--verbose-debugging` line about this connection; nothing is formatted without it.
    fn trace(&self, message: impl FnOnce() -> String) {
        if crate::logs::error_log::verbose() {
            crate::logs::error_log::trace(
                Some(&self.connection.remote_addr.to_string()),
                &message(),
            );
        }
    }

    /// The client's address, for log lines about the connection.
    pub(super) fn remote_addr(&self) -> std::net::SocketAddr {
        self.connection.remote_addr
    }

    /// A response the front end makes before any request was dispatched (a refused head).
    pub(super) fn front_end_reply(&self, response: handoff::Response) -> Reply {
        let asked = Asked {
            method: http::Method::GET,
            target: http::Uri::default(),
        };
        // Counted as a request of no known method.
        let counted = http::Method::from_bytes(b"-")
            .ok()
            .map(|method| (method, std::time::Instant::now()));
        self.to_reply(response, None, asked, counted)
    }

    pub(super) async fn dispatch(
        &self,
        parts: &mut http::request::Parts,
        body: IncomingBody,
    ) -> Reply {
        let started = std::time::Instant::now();
        if let Some(page) = self
            .config
            .operations
            .page(parts.uri.path(), parts.uri.query())
        {
            // Neither counted nor logged: see `operations.rs`.
            let response = super::operations::answer(
                page,
                &parts.method,
                self.connection.remote_addr.ip(),
                &self.config,
                &self.backend,
            );
            let asked = Asked {
                method: std::mem::take(&mut parts.method),
                target: std::mem::take(&mut parts.uri),
            };
            return self.to_reply(response, None, asked, None);
        }
        // Made here, where the request arrived, so that every log line about it can name it.
        let request_id = handoff::RequestId::generate();
        self.trace(|| {
            format!(
                "request {request_id} received: {} {}",
                parts.method, parts.uri
            )
        });
        let asked = Asked {
            method: parts.method.clone(),
            target: parts.uri.clone(),
        };
        let counted = Some((parts.method.clone(), started));
        let mut access = self
            .config
            .access_log
            .as_ref()
            .map(|log| log.begin(self.connection.remote_addr.ip(), parts, &request_id));
        // Kept only when an error may be answered with a document asked for with them.
        let original = (!self.config.error_documents.is_empty())
            .then(|| (parts.headers.clone(), parts.version));
        let accepted = if self.config.compress_responses {
            compression::negotiate(parts.headers.get(http::header::ACCEPT_ENCODING))
        } else {
            None
        };
        let mut response = self.respond(parts, body, request_id, &mut access).await;
        if let Some((headers, version)) = original {
            // Boxed: only sites with error documents pay for this path's future.
            response = Box::pin(self.replace_error(response, &headers, version)).await;
        }
        if self.config.compress_responses {
            let head = asked.method == http::Method::HEAD;
            // Boxed: only servers that compress pay for the size of this future.
            response = Box::pin(compression::compress(response, accepted, head)).await;
        }
        self.trace(|| {
            format!(
                "request {request_id} answered: status {}",
                response.status.as_u16()
            )
        });
        self.to_reply(response, access, asked, counted)
    }

    /// The answer to one request, from the front end or the backend.
    async fn respond(
        &self,
        parts: &mut http::request::Parts,
        body: IncomingBody,
        request_id: handoff::RequestId,
        access: &mut Option<AccessRecord>,
    ) -> handoff::Response {
        let target = crate::handoff::request_path::request_target(&parts.uri);
        if let Verdict::Answer(response) = request_checks::check(&parts.method, target.as_bytes()) {
            return response;
        }
        // RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
        if let Some((authority, _)) = request_checks::absolute_form_authority(target.as_bytes()) {
            if let Ok(host) = http::HeaderValue::from_bytes(authority) {
                parts.headers.insert(http::header::HOST, host);
            }
        }
        // A `--proxy-virtual-host` name is a site of its own: the front door's host
        // rules are for the application's site.
        let proxied_host = self.config.proxy.as_ref().is_some_and(|proxy| {
            proxy.serves_host(
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|host| host.to_str().ok()),
            )
        });
        if !proxied_host {
            if let Some(response) = self.front_door(parts) {
                return response;
            }
        }
        if let Some(proxy) = &self.config.proxy {
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok());
            if let Some(route) = proxy.route(host, parts.uri.path(), parts.uri.query()) {
                // Boxed: only servers that proxy pay for the size of this future.
                return Box::pin(self.proxy(route, proxy.timeout, parts, body)).await;
            }
        }
        let mut variables = self
            .tls
            .as_ref()
            .map(|tls| tls.variables.clone())
            .unwrap_or_default();
        variables.extend(
            self.config
                .front_door
                .proxies
                .apply(self.connection.remote_addr.ip(), &mut parts.headers),
        );
        let access_check = match crate::auth::check(
            self.config.access.as_ref(),
            &parts.method,
            target.as_bytes(),
            &parts.headers,
        ) {
            crate::auth::Verdict::Continue(access_check) => {
                // `%u`: as Apache, the user the credentials name, also when the script
                // then refuses them.
                if let (Some(record), Some(check)) = (access.as_mut(), access_check.as_ref()) {
                    record.user = check
                        .credentials
                        .as_ref()
                        .map(|credentials| match credentials {
                            handoff::Credentials::Basic { user, .. }
                            | handoff::Credentials::Digest { user, .. } => user.clone(),
                        });
                }
                access_check
            }
            crate::auth::Verdict::Answer(response) => return response,
        };
        if let Some(response) = self.refuse_declared_body_over_limit(&parts.headers) {
            return response;
        }
        let mut body = limit_body(body, self.config.limit_request_body);
        // Read a small body before a thread is taken (a slow client then holds memory, not
        // a thread), unless the client waits for `100 Continue`: that is sent when the
        // application reads, as mod_wsgi does.
        if !body.is_end_stream()
            && !body.awaits_continue()
            && !matches!(self.backend, Backend::StaticOnly)
        {
            body.read_ahead(self.config.request_buffer_size).await;
            if let Some((status, reason)) = body.refusal() {
                let mut response = handoff::error_response(status, &reason);
                // The rest of the connection cannot be trusted to be framed as meant.
                response.headers.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return response;
            }
        }
        // Boxed: only sites with static files pay for the size of this future.
        let looked_up = if self.config.static_files.is_empty() {
            Ok(None)
        } else {
            let served = Box::pin(self.config.static_files.serve(
                &parts.method,
                &parts.uri,
                &parts.headers,
            ));
            match served.await {
                Some(Served::Response(response)) => return response,
                Some(Served::Handler(handler)) => Ok(Some(handler)),
                Some(Served::Gateway(target)) => Err(target),
                None => Ok(None),
            }
        };
        if let Err(target) = looked_up {
            // Boxed: only sites with PHP or CGI pay for this path's future.
            return Box::pin(self.gateway(parts, body, &variables, target)).await;
        }
        // Made after the await above: a binding alive across an await of another path is
        // kept in every request's future.
        let handler = looked_up.ok().flatten();
        if parts.method == http::Method::HEAD && self.config.head_to_get {
            // `--map-head-to-get`: the application answers as for GET, so that the
            // headers are the GET's (the writer sends no body for HEAD).
            parts.method = http::Method::GET;
        }
        self.trace(|| format!("request {request_id} queued for an application thread"));
        self.call_backend(parts, body, request_id, access_check, variables, handler)
            .await
    }

    /// `--with-php5`, `--with-cgi`: the answer of the program that serves the file.
    async fn gateway(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        variables: &[(String, String)],
        target: Box<super::GatewayTarget>,
    ) -> handoff::Response {
        let Some(gateways) = &self.config.gateways else {
            return handoff::error_response(
                http::StatusCode::NOT_FOUND,
                "The requested URL was not found on this server.",
            );
        };
        let request = super::gateway::GatewayRequest {
            parts,
            connection: self.connection,
            variables,
            target: *target,
        };
        gateways.respond(request, body).await
    }

    /// A request for `--proxy-mount-point` or `--proxy-virtual-host`: forwarded to its
    /// upstream (after the front door; before access control, static files and the
    /// application, as Apache's `ProxyPass` takes the URL before they do), or the bare
    /// mount point redirected to its `/` form.
    async fn proxy(
        &self,
        route: crate::proxy::Route<'_>,
        timeout: std::time::Duration,
        parts: &mut http::request::Parts,
        body: IncomingBody,
    ) -> handoff::Response {
        let forward = match route {
            crate::proxy::Route::AddSlash { location } => {
                let location = match parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|host| host.to_str().ok())
                {
                    Some(host) => format!(
                        "{}://{host}{location}",
                        if self.connection.https {
                            "https"
                        } else {
                            "http"
                        }
                    ),
                    None => location,
                };
                let mut response =
                    handoff::error_response(http::StatusCode::FOUND, "The document has moved.");
                if let Ok(location) = http::HeaderValue::from_str(&location) {
                    response.headers.insert(http::header::LOCATION, location);
                }
                return response;
            }
            crate::proxy::Route::Forward(forward) => forward,
        };
        if let Some(response) = self.refuse_declared_body_over_limit(&parts.headers) {
            return response;
        }
        let body = limit_body(body, self.config.limit_request_body);
        let forwarded = crate::proxy::forward(
            &forward,
            timeout,
            parts.method.clone(),
            std::mem::take(&mut parts.headers),
            body,
            &self.connection,
        )
        .await;
        let error = match forwarded {
            Ok(response) => return response,
            Err(error) => error,
        };
        let (status, reason) = match &error {
            crate::proxy::ForwardError::RequestBody(cause) => {
                super::request_body::refusal_of(cause.as_ref()).unwrap_or((
                    http::StatusCode::BAD_REQUEST,
                    "The request body could not be read.".to_owned(),
                ))
            }
            other => {
                crate::logs::error_log::log_with_context(
                    crate::logs::Level::Error,
                    "proxy",
                    Some(&self.connection.remote_addr.to_string()),
                    &format!("{} {}: {other}", parts.method, parts.uri),
                );
                let status = other.status().unwrap_or(http::StatusCode::BAD_GATEWAY);
                let reason = if status == http::StatusCode::GATEWAY_TIMEOUT {
                    "The server this URL is forwarded to did not answer in time."
                } else {
                    "The server this URL is forwarded to could not be reached or gave no valid answer."
                };
                (status, reason.to_owned())
            }
        };
        let mut response = handoff::error_response(status, &reason);
        if matches!(error, crate::proxy::ForwardError::RequestBody(_)) {
            // The rest of the request body cannot be trusted to be framed as meant.
            response.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }

    /// The front door's answer, when it has one: 403 for a host this site does not
    /// serve or a path that needs a client certificate the connection did not give, a
    /// redirect for `--https-only` or a `www.` site's parent domain.
    fn front_door(&self, parts: &http::request::Parts) -> Option<handoff::Response> {
        let door = &self.config.front_door;
        if door.admits_every_request() {
            return None;
        }
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let arrival = crate::front_door::Arrival {
            host: parts
                .headers
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok()),
            target,
            https: self.connection.https,
            peer: self.connection.remote_addr.ip(),
            local_port: self.connection.local_addr.port(),
        };
        match door.route(&arrival) {
            crate::front_door::Answer::Serve => {}
            crate::front_door::Answer::Forbidden(reason) => {
                return Some(handoff::error_response(http::StatusCode::FORBIDDEN, reason));
            }
            crate::front_door::Answer::Redirect { status, location } => {
                let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FOUND);
                let Ok(location) = http::HeaderValue::from_bytes(location.as_bytes()) else {
                    return Some(handoff::error_response(
                        http::StatusCode::BAD_REQUEST,
                        "The request target cannot be redirected.",
                    ));
                };
                let mut response = handoff::error_response(status, "The document has moved.");
                response.headers.insert(http::header::LOCATION, location);
                return Some(response);
            }
        }
        if !door.verify_client.is_empty() {
            let path = handoff::request_path::decode(parts.uri.path().as_bytes());
            let path = String::from_utf8_lossy(&path);
            let verified = self.tls.as_ref().is_some_and(|tls| tls.client_verified);
            if door.needs_client_certificate(&path) && !verified {
                return Some(handoff::error_response(
                    http::StatusCode::FORBIDDEN,
                    "This URL needs a client certificate from an authority this server trusts, sent over HTTPS.",
                ));
            }
        }
        None
    }

    /// Hands the request to the application; what it needs of `parts` is taken out.
    ///
    /// The request comes by reference down this chain of futures: each async function
    /// keeps its arguments for its whole life, so a request passed by value would be
    /// stored once per level in the per-request future, and copied with it.
    async fn call_backend(
        &self,
        parts: &mut http::request::Parts,
        body: RequestBody,
        request_id: handoff::RequestId,
        access_check: Option<handoff::AccessCheck>,
        variables: Vec<(String, String)>,
        handler: Option<handoff::HandlerTarget>,
    ) -> handoff::Response {
        // `--max-clients` (in embedded mode this process's share): held while the request
        // waits for an application thread and runs, until its response head; slow clients
        // never hold it (their body was read ahead, their response is written after).
        let _admitted = match &self.config.admission {
            Some(admission) => admission.acquire().await.ok(),
            None => None,
        };
        match &self.backend {
            Backend::Embedded(executor) => {
                let changed = match &self.config.reload_watch {
                    Some(watch) => watch.changed().await,
                    None => None,
                };
                if let Some(changed) = changed {
                    if crate::logs::error_log::enabled(crate::logs::Level::Info) {
                        crate::logs::error_log::log(
                            crate::logs::Level::Info,
                            "ferrule",
                            &format!("'{}' changed; reloading the application", changed.display()),
                        );
                    }
                    executor.reload_before_next_request();
                }
                let request = handoff::Request {
                    method: std::mem::take(&mut parts.method),
                    target: std::mem::take(&mut parts.uri),
                    version: parts.version,
                    headers: std::mem::take(&mut parts.headers),
                    connection: self.connection,
                    body: Box::new(BlockingRequestBody::new(
                        body,
                        tokio::runtime::Handle::current(),
                    )),
                    received_at: std::time::SystemTime::now(),
                    daemon_start: None,
                    request_id,
                    access: access_check,
                    variables,
                    handler,
                };
                executor.submit(request).await.unwrap_or_else(|_| {
                    handoff::error_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "The request ended before the application produced a response.",
                    )
                })
            }
            Backend::Daemon(pool) => {
                pool.forward(
                    parts,
                    body,
                    self.connection,
                    request_id,
                    super::daemon_pool::Decided {
                        access: access_check,
                        variables,
                        handler,
                    },
                )
                .await
            }
            Backend::StaticOnly => handoff::error_response(
                http::StatusCode::NOT_FOUND,
                "The requested URL was not found on this server.",
            ),
        }
    }

    /// `--error-document`: an error answered with the content of a URL of the site, when
    /// that URL gives some (a file of the front end, or a 2xx of the application asked
    /// with GET); otherwise the error stays as it was, as Apache keeps its own page when
    /// the document fails.
    async fn replace_error(
        &self,
        response: handoff::Response,
        original_headers: &http::HeaderMap,
        version: http::Version,
    ) -> handoff::Response {
        let Some(url_path) = self.config.error_documents.replacement(&response) else {
            return response;
        };
        let Ok(uri) = url_path.parse::<http::Uri>() else {
            return response;
        };
        let headers = error_documents::document_request_headers(original_headers);
        let served = self
            .config
            .static_files
            .serve(&http::Method::GET, &uri, &headers)
            .await;
        let document = match served {
            Some(Served::Response(document)) => document,
            served => {
                // The application's page, or an `--add-handler` script's.
                let handler = match served {
                    Some(Served::Handler(handler)) => Some(handler),
                    _ => None,
                };
                let (mut parts, ()) = http::Request::new(()).into_parts();
                parts.method = http::Method::GET;
                parts.uri = uri;
                parts.version = version;
                parts.headers = headers;
                let body = limit_body(IncomingBody::empty(), None);
                let variables = self
                    .tls
                    .as_ref()
                    .map(|tls| tls.variables.clone())
                    .unwrap_or_default();
                self.call_backend(
                    &mut parts,
                    body,
                    handoff::RequestId::generate(),
                    None,
                    variables,
                    handler,
                )
                .await
            }
        };
        if document.status.is_success() {
            error_documents::merge(response, document)
        } else {
            response
        }
    }

    /// 413 for a request that declares a body larger than `--limit-request-body`, before
    /// anything reads it (Apache's `LimitRequestBody`); the connection then closes rather
    /// than read the body.
    fn refuse_declared_body_over_limit(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<handoff::Response> {
        let limit = self.config.limit_request_body?;
        let declared = declared_length(headers)?;
        (declared > limit).then(|| {
            handoff::error_response(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "The request body ({declared} bytes) is larger than this server accepts \
                     ({limit} bytes, --limit-request-body)."
                ),
            )
        })
    }

    fn to_reply(
        &self,
        response: handoff::Response,
        access: Option<AccessRecord>,
        asked: Asked,
        counted: Option<(http::Method, std::time::Instant)>,
    ) -> Reply {
        let handoff::Response {
            status,
            reason,
            mut headers,
            mut body,
        } = response;
        headers.remove(handoff::SERVER_PAGE);
        if self.config.proxy.is_some() {
            headers.remove(crate::proxy::PROXIED);
        }
        let declared = if is_bodyless(status) {
            // RFC 9110 8.6 and 15.3.5: no body, and nothing that describes one (Apache
            // drops Content-Type on them too). Dropping a stream tells the application
            // thread that nobody reads it.
            headers.remove(http::header::CONTENT_LENGTH);
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.remove(http::header::CONTENT_TYPE);
            body = handoff::ResponseBody::Full(Vec::new());
            None
        } else if asked.method == http::Method::HEAD {
            self.head_content_length(&mut headers, &body);
            None
        } else {
            declared_length(&headers).map(|length| DeclaredLength {
                length,
                method: asked.method,
                target: asked.target,
            })
        };
        // After the head lost what a bodyless status must not send: `%{..}o` logs what went.
        let access = access.map(|mut record| {
            if let Some(log) = &self.config.access_log {
                log.response_head(&mut record, status.as_u16(), &headers);
            }
            (Arc::clone(&self.config), record)
        });
        if self.connection.https {
            if let Some(policy) = &self.config.front_door.hsts_policy {
                headers
                    .entry(http::header::STRICT_TRANSPORT_SECURITY)
                    .or_insert_with(|| policy.clone());
            }
        }
        let measure = counted
            .map(|(method, started)| super::metrics::RequestMeasure::new(&method, status, started));
        let body = LoggedBody::new(body, access, self.file_slot.clone(), declared, measure);
        if body.closes_connection()
            || self
                .config
                .draining
                .load(std::sync::atomic::Ordering::Acquire)
        {
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        Reply {
            status,
            reason,
            headers,
            body,
        }
    }
}

impl Service {
    /// A HEAD answer's Content-Length is the GET's. The application that got GET
    /// (`--map-head-to-get`) produced the GET's body: an empty one is declared 0. One that
    /// got HEAD often returns no body at all, so an empty body (or a declared 0) says
    /// nothing of the GET's length and no Content-Length is sent, as Apache does.
    fn head_content_length(&self, headers: &mut http::HeaderMap, body: &handoff::ResponseBody) {
        let handoff::ResponseBody::Full(chunks) = body else {
            return;
        };
        if chunks.iter().any(|chunk| !chunk.is_empty()) {
            return;
        }
        let declared = declared_length(headers);
        if self.config.head_to_get {
            if declared.is_none() {
                headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
            }
        } else if declared == Some(0) || declared.is_none() {
            headers.remove(http::header::CONTENT_LENGTH);
        }
    }
}

/// What the client asked for, kept for the checks made on the response.
struct Asked {
    method: http::Method,
    target: http::Uri,
}

/// Statuses whose responses never carry a body.
fn is_bodyless(status: http::StatusCode) -> bool {
    status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// The Content-Length of a message: the parser has checked a request's, the executor a
/// response's.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

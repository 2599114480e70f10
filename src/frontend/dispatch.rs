//! The hyper service of one connection: turns a parsed request into an executor
//! [`Request`](crate::wsgi::Request), waits for the response head, and hands hyper the body.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;

use super::body::LoggedBody;
use super::request_body::HyperRequestBody;
use super::sendfile::FileSlot;
use super::{Backend, FrontendConfig};
use crate::logs::access_log::AccessRecord;
use crate::wsgi::{self, ConnectionInfo};

#[derive(Clone)]
pub(super) struct Service {
    config: Arc<FrontendConfig>,
    backend: Backend,
    connection: ConnectionInfo,
    /// Where file responses are handed to the socket for sendfile; `None` when the
    /// connection cannot use it.
    file_slot: Option<FileSlot>,
}

impl Service {
    pub(super) fn new(
        config: Arc<FrontendConfig>,
        backend: Backend,
        connection: ConnectionInfo,
        file_slot: Option<FileSlot>,
    ) -> Self {
        Self {
            config,
            backend,
            connection,
            file_slot,
        }
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = hyper::Response<LoggedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.dispatch(request).await) })
    }
}

impl Service {
    async fn dispatch(self, request: hyper::Request<Incoming>) -> hyper::Response<LoggedBody> {
        let (parts, body) = request.into_parts();
        let access = self.config.access_log.as_ref().map(|_| AccessRecord {
            remote_host: self.connection.remote_addr.ip().to_canonical().to_string(),
            request_line: format!("{} {} {:?}", parts.method, parts.uri, parts.version),
            status: 0,
            body_bytes: 0,
        });
        if has_encoded_slash(parts.uri.path()) {
            // Apache's default (AllowEncodedSlashes Off): a path with an encoded slash
            // never reaches the application.
            let response = wsgi::error_response(
                http::StatusCode::NOT_FOUND,
                "The requested URL contains an encoded slash (%2F), which this server does not accept.",
            );
            return self.to_hyper(response, access);
        }
        if let Some(response) = self
            .config
            .static_files
            .serve(&parts.method, parts.uri.path(), &parts.headers)
            .await
        {
            return self.to_hyper(response, access);
        }
        let response = match &self.backend {
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
                let request = wsgi::Request {
                    method: parts.method,
                    target: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    connection: self.connection,
                    body: Box::new(HyperRequestBody::new(
                        body,
                        tokio::runtime::Handle::current(),
                    )),
                    received_at: std::time::SystemTime::now(),
                };
                executor.submit(request).await.unwrap_or_else(|_| {
                    wsgi::error_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "The request ended before the application produced a response.",
                    )
                })
            }
            Backend::Daemon(pool) => pool.forward(parts, body, self.connection).await,
            Backend::StaticOnly => wsgi::error_response(
                http::StatusCode::NOT_FOUND,
                "The requested URL was not found on this server.",
            ),
        };
        self.to_hyper(response, access)
    }

    fn to_hyper(
        &self,
        response: wsgi::Response,
        access: Option<AccessRecord>,
    ) -> hyper::Response<LoggedBody> {
        let wsgi::Response {
            status,
            reason,
            headers,
            body,
        } = response;
        let access = access.map(|mut record| {
            record.status = status.as_u16();
            (Arc::clone(&self.config), record)
        });
        let mut response =
            hyper::Response::new(LoggedBody::new(body, access, self.file_slot.clone()));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        if self
            .config
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
        {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        if let Some(reason) = reason {
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason.to_vec()) {
                response.extensions_mut().insert(reason);
            }
        }
        response
    }
}

fn has_encoded_slash(path: &str) -> bool {
    path.as_bytes().windows(3).any(|window| {
        window[0] == b'%' && window[1] == b'2' && window[2].eq_ignore_ascii_case(&b'f')
    })
}

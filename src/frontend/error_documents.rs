//! `--error-document STATUS URL-PATH` and `--error-override`: an error answer replaced by
//! the content of a URL of the site, with the error's status kept, as Apache's
//! `ErrorDocument` does for mod_wsgi-express.
//!
//! Which errors: those the server makes (every page of `handoff::error_response`, marked
//! with [`handoff::SERVER_PAGE`]: 404 of the document root, 413, 503 of a full queue, the
//! 500 of an application that raised, ...), and with `--error-override` the
//! application's own error responses too (never a proxied server's, marked with
//! `crate::proxy::PROXIED`). This file decides and merges; `dispatch.rs` fetches the
//! document (a file from `static_files.rs`, or a GET to the application), because only
//! it can reach the backend.

use std::collections::HashMap;

use crate::handoff;

/// The documents by status.
#[derive(Clone, Debug, Default)]
pub struct ErrorDocuments {
    by_status: HashMap<u16, String>,
    /// `--error-override`: the application's error responses are replaced too.
    override_application: bool,
}

impl ErrorDocuments {
    /// `documents` are (status, URL path) pairs, checked by the configuration; a later pair
    /// for the same status wins, as a later `ErrorDocument` line does in Apache.
    pub fn new(documents: &[(u16, String)], override_application: bool) -> Self {
        Self {
            by_status: documents.iter().cloned().collect(),
            override_application,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_status.is_empty()
    }

    /// The URL path whose content replaces `response`, if one does.
    pub(super) fn replacement(&self, response: &handoff::Response) -> Option<&str> {
        let status = response.status;
        if !status.is_client_error() && !status.is_server_error() {
            return None;
        }
        let made_by_server = response.headers.contains_key(handoff::SERVER_PAGE);
        if !made_by_server
            && (!self.override_application || response.headers.contains_key(crate::proxy::PROXIED))
        {
            return None;
        }
        self.by_status.get(&status.as_u16()).map(String::as_str)
    }
}

/// The request headers the document is asked for with: the client's, without what
/// described its body or made it conditional (the document is always fetched whole).
pub(super) fn document_request_headers(original: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = original.clone();
    for name in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::EXPECT,
        http::header::RANGE,
        http::header::IF_RANGE,
        http::header::IF_MODIFIED_SINCE,
        http::header::IF_NONE_MATCH,
        http::header::IF_MATCH,
        http::header::IF_UNMODIFIED_SINCE,
    ] {
        headers.remove(name);
    }
    headers
}

/// The answer sent: the error's status and the headers that belong to the error
/// (`Allow`, `WWW-Authenticate`, `Connection: close`, ...), with the document's body and
/// the headers that describe it.
pub(super) fn merge(error: handoff::Response, document: handoff::Response) -> handoff::Response {
    let mut headers = error.headers;
    for name in [
        http::header::CONTENT_TYPE,
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_ENCODING,
        http::header::CONTENT_RANGE,
    ] {
        headers.remove(name);
    }
    headers.remove(handoff::SERVER_PAGE);
    let mut document_headers = document.headers;
    // A file's validators would let a cache keep the error as the file's answer.
    for name in [
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::ACCEPT_RANGES,
    ] {
        document_headers.remove(name);
    }
    let mut last_name = None;
    for (name, value) in document_headers {
        // `into_iter` names a header once, then gives its other values with `None`.
        if let Some(name) = name {
            headers.remove(&name);
            last_name = Some(name);
        }
        if let Some(name) = &last_name {
            headers.append(name.clone(), value);
        }
    }
    handoff::Response {
        status: error.status,
        reason: None,
        headers,
        body: document.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn application_response(status: u16) -> handoff::Response {
        handoff::Response {
            status: http::StatusCode::from_u16(status).expect("status"),
            reason: None,
            headers: http::HeaderMap::new(),
            body: handoff::ResponseBody::Full(Vec::new()),
        }
    }

    #[test]
    fn only_the_servers_errors_unless_overridden() {
        let documents = ErrorDocuments::new(&[(404, "/404.html".to_owned())], false);
        let server_page = handoff::error_response(http::StatusCode::NOT_FOUND, "x");
        assert_eq!(documents.replacement(&server_page), Some("/404.html"));
        assert_eq!(documents.replacement(&application_response(404)), None);
        let documents = ErrorDocuments::new(&[(404, "/404.html".to_owned())], true);
        assert_eq!(
            documents.replacement(&application_response(404)),
            Some("/404.html")
        );
        assert_eq!(documents.replacement(&application_response(410)), None);
        assert_eq!(documents.replacement(&application_response(200)), None);
    }

    #[test]
    fn the_errors_own_headers_stay() {
        let mut error = handoff::error_response(http::StatusCode::METHOD_NOT_ALLOWED, "x");
        error.headers.insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        let mut document = application_response(200);
        document.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        document.headers.append(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static("a=1"),
        );
        document.headers.append(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static("b=2"),
        );
        let merged = merge(error, document);
        assert_eq!(merged.status, 405);
        assert_eq!(merged.headers[http::header::ALLOW], "GET, HEAD");
        assert_eq!(merged.headers[http::header::CONTENT_TYPE], "text/plain");
        assert_eq!(
            merged
                .headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .count(),
            2
        );
        assert!(!merged.headers.contains_key(handoff::SERVER_PAGE));
    }
}

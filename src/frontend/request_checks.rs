//! The checks of a parsed request's target before static files or the application see
//! it: what the HTTP/1 parser (`http1/`) lets through as well-formed but Apache refuses
//! (bad or forbidden percent escapes, user information), with a short reason, and
//! `OPTIONS *`, answered by the server itself. The parser has already refused what the
//! message syntax forbids (Host, sizes, fragments, `*` without OPTIONS).
//!
//! Works on plain values (method, target bytes), not on the parser's types, so that
//! another protocol (HTTP/2) can share it.
//!
//! Where mod_wsgi-express and the RFCs differ, the RFC wins; docs/http.md lists the cases.

use crate::handoff;

/// What to do with a request.
pub(super) enum Verdict {
    /// Serve it.
    Continue,
    /// Answer it with this response; nothing else sees the request.
    Answer(handoff::Response),
}

/// What `OPTIONS *` says the server takes: every method goes to the application, these are
/// the ones a WSGI application is commonly written for.
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Classifies one request. `target` is the request target as sent (origin form `/a?b`,
/// absolute form `http://host/a`, or `*`).
pub(super) fn check(method: &http::Method, target: &[u8]) -> Verdict {
    match classify(method, target) {
        Ok(Verdict::Continue) => Verdict::Continue,
        Ok(answer @ Verdict::Answer(_)) => answer,
        Err(refusal) => Verdict::Answer(refusal.response()),
    }
}

/// Why a request is refused: each maps to one status and one sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UserInfo,
    BadEscape,
    EncodedNul,
    EncodedSlash,
}

impl Refusal {
    fn response(self) -> handoff::Response {
        let (status, reason) = match self {
            Self::UserInfo => (
                http::StatusCode::BAD_REQUEST,
                "The request target contains user information (user@host).",
            ),
            Self::BadEscape => (
                http::StatusCode::BAD_REQUEST,
                "The request path contains a bad percent escape (a % not followed by two hex digits).",
            ),
            Self::EncodedNul => (
                http::StatusCode::NOT_FOUND,
                "The requested URL contains an encoded NUL (%00), which this server does not accept.",
            ),
            Self::EncodedSlash => (
                http::StatusCode::NOT_FOUND,
                "The requested URL contains an encoded slash (%2F), which this server does not accept.",
            ),
        };
        let mut response = handoff::error_response(status, reason);
        if status.is_client_error() && status != http::StatusCode::NOT_FOUND {
            // After a malformed head nothing that follows on the connection can be
            // trusted to be framed as the client meant: Apache closes too.
            response.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

fn classify(method: &http::Method, target: &[u8]) -> Result<Verdict, Refusal> {
    if target == b"*" && method == http::Method::OPTIONS {
        return Ok(Verdict::Answer(options_star()));
    }
    let path = match absolute_form_authority(target) {
        Some((authority, rest)) => {
            if authority.contains(&b'@') {
                return Err(Refusal::UserInfo);
            }
            rest
        }
        None => target,
    };
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    check_escapes(path)
}

/// For an absolute-form target (`http://host:port/path?query`): its authority and the
/// rest, from the path on. `None` for any other form.
pub(super) fn absolute_form_authority(target: &[u8]) -> Option<(&[u8], &[u8])> {
    if target.starts_with(b"/") {
        return None;
    }
    let scheme_end = target.windows(3).position(|window| window == b"://")?;
    let after = &target[scheme_end + 3..];
    let end = after
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    Some(after.split_at(end))
}

/// Apache's decoding rules for the path (`ap_unescape_url` with `AllowEncodedSlashes
/// Off`): a `%` must start two hex digits (else 400, whatever else is wrong), and neither
/// a NUL nor a slash may be encoded (404).
fn check_escapes(path: &[u8]) -> Result<Verdict, Refusal> {
    let mut not_found = None;
    let mut rest = path;
    while let Some(percent) = rest.iter().position(|&b| b == b'%') {
        let (Some(&high), Some(&low)) = (rest.get(percent + 1), rest.get(percent + 2)) else {
            return Err(Refusal::BadEscape);
        };
        if !high.is_ascii_hexdigit() || !low.is_ascii_hexdigit() {
            return Err(Refusal::BadEscape);
        }
        match (high, low.to_ascii_lowercase()) {
            (b'0', b'0') => not_found = not_found.or(Some(Refusal::EncodedNul)),
            (b'2', b'f') => not_found = not_found.or(Some(Refusal::EncodedSlash)),
            _ => {}
        }
        rest = &rest[percent + 3..];
    }
    not_found.map_or(Ok(Verdict::Continue), Err)
}

/// `OPTIONS *` asks about the server, not about a resource: 200, `Allow`, no body.
fn options_star() -> handoff::Response {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::ALLOW, http::HeaderValue::from_static(ALLOW));
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("0"),
    );
    handoff::Response {
        status: http::StatusCode::OK,
        reason: None,
        headers,
        body: handoff::ResponseBody::Full(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(target: &[u8]) -> Option<Refusal> {
        classify(&http::Method::GET, target).err()
    }

    #[test]
    fn targets_follow_apache_and_rfc_3986() {
        assert_eq!(refusal(b"/a%zz"), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/a%2"), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/a%00b"), Some(Refusal::EncodedNul));
        assert_eq!(refusal(b"/a%2fb"), Some(Refusal::EncodedSlash));
        // A bad escape anywhere wins over an encoded NUL before it, as in Apache.
        assert_eq!(refusal(b"/%00/%g1"), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/ok%20?q=%zz%00"), None);
        assert_eq!(refusal(b"http://u@h/x"), Some(Refusal::UserInfo));
        assert_eq!(refusal(b"http://h/a%zz"), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"http://h"), None);
    }

    #[test]
    fn options_star_is_answered() {
        let Verdict::Answer(response) = check(&http::Method::OPTIONS, b"*") else {
            panic!("OPTIONS * must be answered");
        };
        assert_eq!(response.status, http::StatusCode::OK);
        assert!(response.headers.contains_key(http::header::ALLOW));
    }

    #[test]
    fn the_authority_of_an_absolute_target() {
        assert_eq!(
            absolute_form_authority(b"http://a.example:8080/x?y"),
            Some((&b"a.example:8080"[..], &b"/x?y"[..]))
        );
        assert_eq!(absolute_form_authority(b"/x://y"), None);
        assert_eq!(absolute_form_authority(b"*"), None);
    }
}

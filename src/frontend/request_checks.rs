//! The checks every request passes before static files or the application see it, in one
//! place: a request the RFCs call malformed gets its 400 (or Apache's 404) here, with a
//! short reason, and `OPTIONS *` is answered by the server itself.
//!
//! Works on the request line and headers as plain values (method, target bytes, version,
//! header map), not on the HTTP/1 parser's types, so the parser can change under it.
//!
//! Where mod_wsgi-express and the RFCs differ, the RFC wins; docs/http.md lists the cases.

use super::http1::head::{DEFAULT_MAX_FIELD_SIZE, DEFAULT_MAX_REQUEST_LINE, is_valid_host};
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
pub(super) fn check(
    method: &http::Method,
    target: &[u8],
    version: http::Version,
    headers: &http::HeaderMap,
) -> Verdict {
    match classify(method, target, version, headers) {
        Ok(Verdict::Continue) => Verdict::Continue,
        Ok(answer @ Verdict::Answer(_)) => answer,
        Err(refusal) => Verdict::Answer(refusal.response()),
    }
}

/// Why a request is refused: each maps to one status and one sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    MissingHost,
    SeveralHosts,
    InvalidHost,
    Fragment,
    UserInfo,
    BadEscape,
    EncodedNul,
    EncodedSlash,
    StarWithoutOptions,
    RequestLineTooLong,
    FieldTooLarge,
}

impl Refusal {
    fn response(self) -> handoff::Response {
        let (status, reason) = match self {
            Self::MissingHost => (
                http::StatusCode::BAD_REQUEST,
                "An HTTP/1.1 request must carry a Host header.",
            ),
            Self::SeveralHosts => (
                http::StatusCode::BAD_REQUEST,
                "The request carries more than one Host header.",
            ),
            Self::InvalidHost => (
                http::StatusCode::BAD_REQUEST,
                "The Host header is not a valid host name and port.",
            ),
            Self::Fragment => (
                http::StatusCode::BAD_REQUEST,
                "The request target contains a fragment (#), which is never sent to a server.",
            ),
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
            Self::StarWithoutOptions => (
                http::StatusCode::BAD_REQUEST,
                "The request target * is only meaningful for OPTIONS.",
            ),
            Self::RequestLineTooLong => (
                http::StatusCode::URI_TOO_LONG,
                "The request line is longer than this server accepts (8 KiB).",
            ),
            Self::FieldTooLarge => (
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "A header field is longer than this server accepts (8 KiB).",
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

fn classify(
    method: &http::Method,
    target: &[u8],
    version: http::Version,
    headers: &http::HeaderMap,
) -> Result<Verdict, Refusal> {
    check_sizes(method, target, headers)?;
    check_host(version, headers)?;
    if target == b"*" {
        if method == http::Method::OPTIONS {
            return Ok(Verdict::Answer(options_star()));
        }
        return Err(Refusal::StarWithoutOptions);
    }
    if target.contains(&b'#') {
        return Err(Refusal::Fragment);
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

/// The limits of the coming HTTP/1 parser (Apache's `LimitRequestLine` and
/// `LimitRequestFieldSize`), applied to what hyper parsed: `METHOD TARGET HTTP/1.1` and
/// each `name: value` line.
fn check_sizes(
    method: &http::Method,
    target: &[u8],
    headers: &http::HeaderMap,
) -> Result<(), Refusal> {
    const VERSION_LEN: usize = " HTTP/1.1".len();
    if method.as_str().len() + 1 + target.len() + VERSION_LEN > DEFAULT_MAX_REQUEST_LINE {
        return Err(Refusal::RequestLineTooLong);
    }
    if headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > DEFAULT_MAX_FIELD_SIZE)
    {
        return Err(Refusal::FieldTooLarge);
    }
    Ok(())
}

/// RFC 9112 3.2: exactly one Host, and a valid one; HTTP/1.0 may leave it out.
fn check_host(version: http::Version, headers: &http::HeaderMap) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == http::Version::HTTP_11 => Err(Refusal::MissingHost),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::SeveralHosts),
        (Some(host), None) if is_valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(Refusal::InvalidHost),
    }
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

    fn refusal(target: &[u8], host_lines: &[&'static str]) -> Option<Refusal> {
        let mut headers = http::HeaderMap::new();
        for host in host_lines {
            headers.append(http::header::HOST, http::HeaderValue::from_static(host));
        }
        classify(&http::Method::GET, target, http::Version::HTTP_11, &headers).err()
    }

    #[test]
    fn hosts_follow_rfc_9112() {
        assert_eq!(refusal(b"/", &[]), Some(Refusal::MissingHost));
        assert_eq!(refusal(b"/", &["a", "b"]), Some(Refusal::SeveralHosts));
        for bad in ["a/b", "a b", "a@b", "a:8x", "[::1", "[::1]x", "a\\b"] {
            assert_eq!(refusal(b"/", &[bad]), Some(Refusal::InvalidHost), "{bad}");
        }
        for good in [
            "",
            "a",
            "a.example:80",
            "a:",
            "127.0.0.1:8000",
            "[::1]:80",
            "x_y",
        ] {
            assert_eq!(refusal(b"/", &[good]), None, "{good}");
        }
        let http_1_0 = classify(
            &http::Method::GET,
            b"/",
            http::Version::HTTP_10,
            &http::HeaderMap::new(),
        );
        assert!(matches!(http_1_0, Ok(Verdict::Continue)));
    }

    #[test]
    fn targets_follow_apache_and_rfc_3986() {
        assert_eq!(refusal(b"/x?a=1#f", &["h"]), Some(Refusal::Fragment));
        assert_eq!(refusal(b"/a%zz", &["h"]), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/a%2", &["h"]), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/a%00b", &["h"]), Some(Refusal::EncodedNul));
        assert_eq!(refusal(b"/a%2fb", &["h"]), Some(Refusal::EncodedSlash));
        // A bad escape anywhere wins over an encoded NUL before it, as in Apache.
        assert_eq!(refusal(b"/%00/%g1", &["h"]), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"/ok%20?q=%zz%00", &["h"]), None);
        assert_eq!(refusal(b"http://u@h/x", &["h"]), Some(Refusal::UserInfo));
        assert_eq!(refusal(b"http://h/a%zz", &["h"]), Some(Refusal::BadEscape));
        assert_eq!(refusal(b"http://h", &["h"]), None);
        assert_eq!(refusal(b"*", &["h"]), Some(Refusal::StarWithoutOptions));
    }

    #[test]
    fn options_star_is_answered() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, http::HeaderValue::from_static("h"));
        let Verdict::Answer(response) = check(
            &http::Method::OPTIONS,
            b"*",
            http::Version::HTTP_11,
            &headers,
        ) else {
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

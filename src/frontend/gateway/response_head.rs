//! The head of a CGI response (RFC 3875 section 6), as a CGI script or php-fpm writes it:
//! header lines up to a blank line, a `Status` field for the status, `Location` alone
//! meaning a redirect.

use bytes::Bytes;

/// The most a head may take before the response is refused as malformed.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// Where the head in `buffer` ends: (the end of its last line, the start of the body);
/// `None` while the blank line has not arrived. Lines end with LF or CRLF.
pub(super) fn head_end(buffer: &[u8]) -> Option<(usize, usize)> {
    if buffer.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if buffer.starts_with(b"\n") {
        return Some((0, 1));
    }
    let mut position = 0;
    while let Some(offset) = buffer[position..].iter().position(|&byte| byte == b'\n') {
        let newline = position + offset;
        let rest = &buffer[newline + 1..];
        if rest.starts_with(b"\n") {
            return Some((newline, newline + 2));
        }
        if rest.starts_with(b"\r\n") {
            return Some((newline, newline + 3));
        }
        if rest.is_empty() || rest == b"\r" {
            return None;
        }
        position = newline + 1;
    }
    None
}

/// A parsed head: status, reason phrase when it is not the standard one, headers.
pub(super) struct Head {
    pub(super) status: http::StatusCode,
    pub(super) reason: Option<Bytes>,
    pub(super) headers: http::HeaderMap,
}

/// Parses the head's lines (without the blank line). `Status: 404 Not Found` gives the
/// status; `Location` without `Status` is a 302 (RFC 3875 6.2.3 and 6.2.4: the local
/// redirect a server may follow itself is answered as a redirect too); otherwise 200.
/// The framing is the server's: `Transfer-Encoding` and `Connection` are dropped.
pub(super) fn parse(head: &[u8]) -> Result<Head, String> {
    let mut status = None;
    let mut reason = None;
    let mut headers = http::HeaderMap::new();
    for line in head.split(|&byte| byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&byte| byte == b':')
            .ok_or_else(|| format!("a header line without ':' ({})", printable(line)))?;
        let name = http::HeaderName::from_bytes(&line[..colon])
            .map_err(|_| format!("a bad header name ({})", printable(&line[..colon])))?;
        let value = line[colon + 1..].trim_ascii();
        if name.as_str() == "status" {
            let (code, text) = match value.iter().position(|&byte| byte == b' ') {
                Some(space) => (&value[..space], value[space + 1..].trim_ascii()),
                None => (value, &b""[..]),
            };
            let code = http::StatusCode::from_bytes(code)
                .map_err(|_| format!("a bad Status ({})", printable(value)))?;
            if !text.is_empty() && code.canonical_reason().map(str::as_bytes) != Some(text) {
                reason = Some(Bytes::copy_from_slice(text));
            }
            status = Some(code);
            continue;
        }
        if name == http::header::TRANSFER_ENCODING || name == http::header::CONNECTION {
            continue;
        }
        let value =
            http::HeaderValue::from_bytes(value).map_err(|_| format!("a bad value for {name}"))?;
        headers.append(name, value);
    }
    let status = status.unwrap_or(if headers.contains_key(http::header::LOCATION) {
        http::StatusCode::FOUND
    } else {
        http::StatusCode::OK
    });
    Ok(Head {
        status,
        reason,
        headers,
    })
}

fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_a_blank_line() {
        assert_eq!(head_end(b"A: b\r\n\r\nbody"), Some((5, 8)));
        assert_eq!(head_end(b"A: b\n\nbody"), Some((4, 6)));
        assert_eq!(head_end(b"\r\nbody"), Some((0, 2)));
        assert_eq!(head_end(b"A: b\r\n"), None);
        assert_eq!(head_end(b"A: b\r\n\r"), None);
    }

    #[test]
    fn status_sets_the_status_and_its_reason() {
        let head = parse(b"Status: 404 Not Found\r\nContent-Type: text/plain").unwrap();
        assert_eq!(head.status, http::StatusCode::NOT_FOUND);
        assert_eq!(head.reason, None);
        assert_eq!(head.headers["content-type"], "text/plain");
        let head = parse(b"Status: 418 Short And Stout").unwrap();
        assert_eq!(head.reason.as_deref(), Some(&b"Short And Stout"[..]));
    }

    #[test]
    fn location_alone_is_a_redirect() {
        let head = parse(b"Location: /elsewhere").unwrap();
        assert_eq!(head.status, http::StatusCode::FOUND);
        let head = parse(b"Status: 301\nLocation: /elsewhere").unwrap();
        assert_eq!(head.status, http::StatusCode::MOVED_PERMANENTLY);
    }

    #[test]
    fn framing_headers_are_the_servers() {
        let head = parse(b"Transfer-Encoding: chunked\nConnection: close\nX-A: 1\nX-A: 2").unwrap();
        assert!(!head.headers.contains_key("transfer-encoding"));
        assert!(!head.headers.contains_key("connection"));
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert!(parse(b"no colon here").is_err());
        assert!(parse(b"Status: abc").is_err());
        assert!(parse(b"Bad Name: x").is_err());
    }
}

//! The Host header, read once: the name and the port a request asked for, as Apache reads
//! them for `ap_get_server_name` and `ap_get_server_port` (under `UseCanonicalName Off`,
//! mod_wsgi-express's setting). The WSGI environ, the CGI and PHP variables, the front
//! door's host rules and the proxy's host routes all read Host through [`Host::parse`],
//! so a request has one `SERVER_NAME` and one `SERVER_PORT` whoever answers it.
//!
//! Pure: no I/O, no allocation unless the name has upper-case letters. The HTTP/1 parser
//! has already refused a Host that is not `host[:port]` (`frontend/http1/head.rs`); what
//! reaches here by other ways (HTTP/2's `:authority`) is read without failing.

use std::borrow::Cow;

/// A Host value, split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host<'a> {
    /// The name in lower case, without the one trailing dot of a fully qualified name; an
    /// IPv6 literal keeps its brackets (`[::1]`), as `SERVER_NAME` spells it. Empty when
    /// the value names no host (`""`, `":8000"`).
    pub name: Cow<'a, str>,
    /// The port, when the value has one from 1 to 65535 (leading zeros dropped: `:080` is
    /// 80); `None` for no port, an empty one (`example.com:`), or one that is not a port.
    pub port: Option<u16>,
}

impl<'a> Host<'a> {
    /// Splits a Host header value (`Example.COM:8080`, `[::1]:8000`, `example.com.`).
    /// Inlined: it runs for every request, in the environ's `SERVER_NAME`.
    #[inline]
    pub fn parse(value: &'a str) -> Self {
        let (name, port) = split(value);
        let is_literal = name.starts_with('[');
        // Apache drops the trailing dot of a name (`example.com.` is `example.com`).
        let name = match name.strip_suffix('.') {
            Some(stripped) if !is_literal => stripped,
            _ => name,
        };
        let name = if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        Self {
            name,
            port: port.and_then(port_number),
        }
    }

    /// The name without the brackets of an IPv6 literal (`::1` of `[::1]`): what a host
    /// name from the command line is compared with.
    pub fn bare_name(&self) -> &str {
        self.name
            .strip_prefix('[')
            .and_then(|inside| inside.strip_suffix(']'))
            .unwrap_or(&self.name)
    }

    /// `SERVER_NAME` and `SERVER_PORT` of a request with these `headers`: Host's name,
    /// else `default_name` (`--server-name`, else `--host`, else `localhost`); Host's
    /// port, else `None`, which the caller reads as the port the connection arrived on.
    pub fn server_name_and_port(
        headers: &'a http::HeaderMap,
        default_name: &'a str,
    ) -> (Cow<'a, str>, Option<u16>) {
        let host = headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(Host::parse)
            .unwrap_or_default();
        let name = if host.name.is_empty() {
            Cow::Borrowed(default_name)
        } else {
            host.name
        };
        (name, host.port)
    }
}

/// The name and the text after its port's colon, if any. Only a colon after the closing
/// bracket of an IPv6 literal starts its port.
#[inline]
fn split(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(end) => (&value[..=end], value[end + 1..].strip_prefix(':')),
            None => (value, None),
        };
    }
    // A byte loop: Host is short, and `rsplit_once` calls `memrchr`.
    match value.bytes().rposition(|byte| byte == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    }
}

/// A port's digits as its number; `None` for anything else, 0 and past 65535 included.
#[inline]
fn port_number(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&port| port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> (String, Option<u16>) {
        let host = Host::parse(value);
        (host.name.into_owned(), host.port)
    }

    fn pair(name: &str, port: Option<u16>) -> (String, Option<u16>) {
        (name.to_owned(), port)
    }

    #[test]
    fn a_plain_name_has_no_port() {
        assert_eq!(read("example.com"), pair("example.com", None));
        assert_eq!(read("127.0.0.1"), pair("127.0.0.1", None));
    }

    #[test]
    fn a_name_and_its_port() {
        assert_eq!(read("example.com:8123"), pair("example.com", Some(8123)));
        assert_eq!(read("127.0.0.1:80"), pair("127.0.0.1", Some(80)));
        assert_eq!(read("example.com:0080"), pair("example.com", Some(80)));
    }

    #[test]
    fn the_name_is_lower_case_and_borrowed_when_it_already_was() {
        assert_eq!(read("Example.COM:8123"), pair("example.com", Some(8123)));
        assert!(matches!(
            Host::parse("example.com:1").name,
            Cow::Borrowed(_)
        ));
        assert!(matches!(Host::parse("Example.com:1").name, Cow::Owned(_)));
    }

    #[test]
    fn an_ipv6_literal_keeps_its_brackets() {
        assert_eq!(read("[::1]"), pair("[::1]", None));
        assert_eq!(read("[::1]:8000"), pair("[::1]", Some(8000)));
        assert_eq!(read("[2001:DB8::1]:443"), pair("[2001:db8::1]", Some(443)));
        assert_eq!(Host::parse("[::1]:8000").bare_name(), "::1");
        assert_eq!(Host::parse("example.com:8000").bare_name(), "example.com");
        // No closing bracket (the HTTP/1 parser refuses it): all name, no port.
        assert_eq!(read("[::1:80"), pair("[::1:80", None));
    }

    #[test]
    fn a_trailing_colon_is_an_empty_port() {
        assert_eq!(read("example.com:"), pair("example.com", None));
        assert_eq!(read("[::1]:"), pair("[::1]", None));
    }

    #[test]
    fn a_port_that_is_not_one_is_dropped() {
        assert_eq!(read("example.com:8x"), pair("example.com", None));
        assert_eq!(read("example.com:+80"), pair("example.com", None));
        assert_eq!(read("example.com:0"), pair("example.com", None));
        assert_eq!(read("example.com:65536"), pair("example.com", None));
        assert_eq!(
            read("example.com:99999999999999999999"),
            pair("example.com", None)
        );
        assert_eq!(read("example.com:65535"), pair("example.com", Some(65535)));
    }

    #[test]
    fn empty_names_no_host() {
        assert_eq!(read(""), pair("", None));
        assert_eq!(read(":8000"), pair("", Some(8000)));
        assert_eq!(read("."), pair("", None));
    }

    #[test]
    fn a_fully_qualified_name_loses_its_trailing_dot() {
        assert_eq!(read("Example.com.:8000"), pair("example.com", Some(8000)));
        assert_eq!(read("example.com."), pair("example.com", None));
    }

    #[test]
    fn server_name_and_port_fall_back_to_the_defaults() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            Host::server_name_and_port(&headers, "localhost"),
            (Cow::Borrowed("localhost"), None)
        );
        headers.insert(http::header::HOST, http::HeaderValue::from_static(""));
        assert_eq!(
            Host::server_name_and_port(&headers, "localhost"),
            (Cow::Borrowed("localhost"), None)
        );
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("EXAMPLE.test:8123"),
        );
        assert_eq!(
            Host::server_name_and_port(&headers, "localhost"),
            (Cow::Borrowed("example.test"), Some(8123))
        );
        headers.insert(http::header::HOST, http::HeaderValue::from_static(":81"));
        assert_eq!(
            Host::server_name_and_port(&headers, "localhost"),
            (Cow::Borrowed("localhost"), Some(81))
        );
    }
}

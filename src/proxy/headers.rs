//! The header rules of a proxied exchange: hop-by-hop fields removed both ways (RFC 9110
//! 7.6.1), the `X-Forwarded-*` fields Apache's `mod_proxy` and mod_wsgi-express's
//! configuration add, and `Location` answers mapped back (`ProxyPassReverse`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::Forward;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// What the upstream needs to know about the client's connection.
pub(super) struct Client {
    pub(super) address: std::net::IpAddr,
    pub(super) local_port: u16,
    pub(super) https: bool,
}

/// Removes the fields that describe one connection rather than the message: those that
/// `Connection` names, and the ones RFC 9110 7.6.1 lists (with every `Proxy-*`).
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TRAILER,
    ] {
        headers.remove(name);
    }
    let proxy_fields: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_fields {
        headers.remove(name);
    }
}

/// The client's request headers as the upstream gets them.
pub(super) fn request(headers: &mut HeaderMap, forward: &Forward<'_>, client: &Client) {
    let original_host = headers.get(header::HOST).cloned();
    remove_hop_by_hop(headers);
    // This server answers `Expect: 100-continue` itself, when the body is first read.
    headers.remove(header::EXPECT);
    let authority = &forward.upstream.authority;
    let host = authority.strip_suffix(":80").unwrap_or(authority);
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, host);
    }
    append(headers, X_FORWARDED_FOR, &client.address.to_string());
    if let Some(original_host) = original_host.as_ref().and_then(|host| host.to_str().ok()) {
        append(headers, X_FORWARDED_HOST, original_host);
    }
    append(headers, X_FORWARDED_SERVER, forward.server_name);
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(client.local_port));
    let scheme = HeaderValue::from_static(if client.https { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO, scheme.clone());
    headers.insert(X_FORWARDED_SCHEME, scheme);
    match forward
        .forwarded_prefix
        .and_then(|prefix| HeaderValue::from_str(prefix).ok())
    {
        Some(prefix) => {
            headers.insert(X_FORWARDED_PREFIX, prefix);
        }
        None => {
            headers.remove(X_FORWARDED_PREFIX);
        }
    }
}

/// Adds `value` to a list field, after what earlier proxies put there (one line).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let earlier: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let joined = if earlier.is_empty() {
        value.to_owned()
    } else {
        format!("{}, {value}", earlier.join(", "))
    };
    if let Ok(joined) = HeaderValue::from_str(&joined) {
        headers.insert(name, joined);
    }
}

/// The upstream's response headers as the client gets them: hop-by-hop fields removed,
/// and `Location`, `Content-Location` and `URI` that point into the upstream's proxied
/// part pointed at this server instead (`request_host`: the client's Host header).
pub(super) fn response(
    headers: &mut HeaderMap,
    forward: &Forward<'_>,
    request_host: Option<&str>,
    https: bool,
) {
    remove_hop_by_hop(headers);
    let upstream_prefix = forward.upstream.url_prefix();
    for name in [
        header::LOCATION,
        header::CONTENT_LOCATION,
        HeaderName::from_static("uri"),
    ] {
        let Some(value) = headers.get(&name).and_then(|value| value.to_str().ok()) else {
            continue;
        };
        let Some(rest) = strip_prefix_ignore_case(value, &upstream_prefix) else {
            continue;
        };
        let mapped = match request_host {
            Some(host) => format!(
                "{}://{host}{}{rest}",
                if https { "https" } else { "http" },
                forward.local_prefix
            ),
            None => format!("{}{rest}", forward.local_prefix),
        };
        if let Ok(mapped) = HeaderValue::from_str(&mapped) {
            headers.insert(name, mapped);
        }
    }
}

/// `value` without `prefix`, whose scheme and host may differ in case.
fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Upstream;

    fn forward(upstream: &Upstream) -> Forward<'_> {
        Forward {
            upstream,
            path_and_query: "/x".to_owned(),
            local_prefix: "/api/",
            forwarded_prefix: Some("/api"),
            server_name: "front.example",
        }
    }

    #[test]
    fn request_fields_are_forwarded_and_cleaned() {
        let upstream = Upstream::parse("http://127.0.0.1:9000/").expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("site.example:8000"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let client = Client {
            address: "192.0.2.7".parse().expect("address"),
            local_port: 8000,
            https: false,
        };
        request(&mut headers, &forward(&upstream), &client);
        for gone in ["connection", "x-secret", "proxy-authorization", "te"] {
            assert!(!headers.contains_key(gone), "{gone} still there");
        }
        assert_eq!(headers["host"], "127.0.0.1:9000");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(headers["x-forwarded-host"], "site.example:8000");
        assert_eq!(headers["x-forwarded-server"], "front.example");
        assert_eq!(headers["x-forwarded-port"], "8000");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-prefix"], "/api");
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn locations_into_the_upstream_are_mapped_back() {
        let upstream = Upstream::parse("http://127.0.0.1:9000/base/").expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("http://127.0.0.1:9000/base/next?a=1"),
        );
        headers.insert(
            header::CONTENT_LOCATION,
            HeaderValue::from_static("http://elsewhere.example/base/next"),
        );
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        response(
            &mut headers,
            &forward(&upstream),
            Some("site.example"),
            true,
        );
        assert_eq!(headers["location"], "https://site.example/api/next?a=1");
        assert_eq!(
            headers["content-location"],
            "http://elsewhere.example/base/next"
        );
        assert!(!headers.contains_key("transfer-encoding"));
    }
}

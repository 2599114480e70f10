//! An upstream URL of `--proxy-mount-point` or `--proxy-virtual-host`: `http://` only,
//! a host, an optional port, an optional base path. No query, no fragment, no user.

/// Where proxied requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as given (for messages and for mapping `Location` back).
    pub url: String,
    /// `host:port`, to connect to and to send as `Host` (Apache sends the upstream's
    /// host, as mod_wsgi-express does not ask for `ProxyPreserveHost`).
    pub authority: String,
    /// The base path, starting with `/`.
    pub path: String,
}

/// Why an upstream URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("'{0}' is not an http:// URL")]
    NotHttp(String),
    #[error(
        "'{0}': https:// upstreams are not supported yet; proxy to the server's plain HTTP port"
    )]
    Https(String),
    #[error("'{0}' has no host name")]
    NoHost(String),
    #[error("'{0}' is not a valid URL: {1}")]
    Invalid(String, String),
    #[error("'{0}': an upstream URL takes no query, fragment or user information")]
    Extra(String),
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, UpstreamError> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(UpstreamError::Https(url.to_owned()));
        }
        if !lower.starts_with("http://") {
            return Err(UpstreamError::NotHttp(url.to_owned()));
        }
        if url.contains(['?', '#', '@']) {
            return Err(UpstreamError::Extra(url.to_owned()));
        }
        let uri: http::Uri = url.parse().map_err(|error: http::uri::InvalidUri| {
            UpstreamError::Invalid(url.to_owned(), error.to_string())
        })?;
        let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
            return Err(UpstreamError::NoHost(url.to_owned()));
        };
        let host = host.to_ascii_lowercase();
        // `Uri::port` gives `None` for a port that is not a u16: read it from the text.
        let authority = uri.authority().map_or("", http::uri::Authority::as_str);
        let after_host = authority
            .rsplit_once(']')
            .map_or(authority, |(_, rest)| rest);
        let port = match after_host.rsplit_once(':') {
            None | Some((_, "")) => 80,
            Some((_, port)) => port.parse::<u16>().map_err(|_| {
                UpstreamError::Invalid(
                    url.to_owned(),
                    "the port is not a number up to 65535".to_owned(),
                )
            })?,
        };
        let path = match uri.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        };
        Ok(Self {
            url: url.to_owned(),
            authority: format!("{host}:{port}"),
            path,
        })
    }

    /// Makes the base path end with one `/` (mod_wsgi-express writes the `ProxyPass` of
    /// a mount point given without a final `/` that way).
    pub(super) fn ensure_final_slash(&mut self) {
        let trimmed = self.path.trim_end_matches('/');
        self.path = format!("{trimmed}/");
    }

    /// The URL prefix the upstream's `Location` answers start with when they point into
    /// the proxied part: scheme, authority as given, base path.
    pub(super) fn url_prefix(&self) -> String {
        let scheme_end = "http://".len();
        let rest = &self.url[scheme_end..];
        let authority = rest.split('/').next().unwrap_or(rest);
        format!("http://{authority}{}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_port_and_path() {
        let upstream = Upstream::parse("http://127.0.0.1:8001/app").expect("valid");
        assert_eq!(upstream.authority, "127.0.0.1:8001");
        assert_eq!(upstream.path, "/app");
        let upstream = Upstream::parse("HTTP://Example.com").expect("valid");
        assert_eq!(upstream.authority, "example.com:80");
        assert_eq!(upstream.path, "/");
        assert_eq!(upstream.url_prefix(), "http://Example.com/");
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        assert!(matches!(
            Upstream::parse("https://x/"),
            Err(UpstreamError::Https(_))
        ));
        assert!(matches!(
            Upstream::parse("ftp://x/"),
            Err(UpstreamError::NotHttp(_))
        ));
        assert!(matches!(
            Upstream::parse("/path"),
            Err(UpstreamError::NotHttp(_))
        ));
        assert!(matches!(
            Upstream::parse("http://x/?a=1"),
            Err(UpstreamError::Extra(_))
        ));
        assert!(matches!(
            Upstream::parse("http://u@x/"),
            Err(UpstreamError::Extra(_))
        ));
        assert!(Upstream::parse("http://x:99999/").is_err());
    }
}

//! `--server-name`, `--server-alias` and `--allow-localhost`: which host names are the
//! site's, as Apache's name-based virtual hosts match them (case-insensitive, the port
//! ignored, `*` and `?` wildcards in aliases).

/// The site's names.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// `--server-name`, lower case.
    pub server_name: String,
    /// `--server-alias` patterns, lower case.
    pub aliases: Vec<String>,
    /// The bare parent domain of a `www.` server name, redirected to it.
    pub parent_domain: Option<String>,
    /// `--allow-localhost`.
    pub allow_localhost: bool,
}

/// Which of mod_wsgi-express's virtual hosts a request lands in.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// The site: `--server-name` or an alias.
    Site,
    /// The parent domain of a `www.` name.
    Parent,
    /// Anything else (the default virtual host, which refuses).
    Other,
}

impl VirtualHost {
    pub fn new(server_name: &str, aliases: &[String], allow_localhost: bool) -> Self {
        let server_name = server_name.to_ascii_lowercase();
        let parent_domain = server_name
            .strip_prefix("www.")
            .filter(|parent| !parent.is_empty())
            .map(ToOwned::to_owned);
        Self {
            server_name,
            aliases: aliases
                .iter()
                .map(|alias| alias.to_ascii_lowercase())
                .collect(),
            parent_domain,
            allow_localhost,
        }
    }

    pub(super) fn classify(&self, host_name: Option<&str>) -> Match {
        let Some(name) = host_name.map(str::to_ascii_lowercase) else {
            return Match::Other;
        };
        let name = name.trim_end_matches('.');
        if name == self.server_name
            || self
                .aliases
                .iter()
                .any(|pattern| wildcard_match(pattern.as_bytes(), name.as_bytes()))
        {
            Match::Site
        } else if self.parent_domain.as_deref() == Some(name) {
            Match::Parent
        } else {
            Match::Other
        }
    }
}

/// The host name of a Host header value: without the port, brackets kept off an IPv6
/// literal.
pub(super) fn name_of(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|byte| byte.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// Apache's `ServerAlias` wildcards: `*` any run of characters, `?` one character.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| wildcard_match(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((byte, rest)) => name.first() == Some(byte) && wildcard_match(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_port() {
        assert_eq!(name_of("example.com:8000"), "example.com");
        assert_eq!(name_of("example.com"), "example.com");
        assert_eq!(name_of("[::1]:8000"), "::1");
    }

    #[test]
    fn aliases_take_wildcards() {
        let host = VirtualHost::new(
            "Example.com",
            &["*.example.com".into(), "api?.test".into()],
            false,
        );
        assert_eq!(host.classify(Some("example.com")), Match::Site);
        assert_eq!(host.classify(Some("a.b.EXAMPLE.com")), Match::Site);
        assert_eq!(host.classify(Some("api1.test")), Match::Site);
        assert_eq!(host.classify(Some("api12.test")), Match::Other);
        assert_eq!(host.classify(Some("example.org")), Match::Other);
        assert_eq!(host.classify(None), Match::Other);
    }

    #[test]
    fn a_www_name_knows_its_parent() {
        let host = VirtualHost::new("www.example.com", &[], false);
        assert_eq!(host.classify(Some("example.com")), Match::Parent);
        assert_eq!(host.classify(Some("www.example.com")), Match::Site);
    }
}

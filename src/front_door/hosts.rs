//! `--server-name`, `--server-alias` and `--allow-localhost`: which host names are the
//! site's, as Apache's name-based virtual hosts match them (case-insensitive, the port
//! ignored, `*` and `?` wildcards in aliases). The Host header is read by
//! [`Host::parse`], as everywhere else.

use crate::handoff::Host;

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

    /// Where a request with this Host (`None`: without one) lands.
    pub(super) fn classify(&self, host: Option<&Host<'_>>) -> Match {
        let Some(host) = host else {
            return Match::Other;
        };
        // Already lower case, without its trailing dot (a second one is kept, as the
        // name `example.com..` is not `example.com`).
        let name = host.bare_name();
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

    fn classify(host: &VirtualHost, value: Option<&str>) -> Match {
        host.classify(value.map(Host::parse).as_ref())
    }

    #[test]
    fn the_port_case_and_trailing_dot_of_host_are_ignored() {
        let host = VirtualHost::new("Example.com", &[], false);
        for value in [
            "example.com",
            "example.com:8000",
            "EXAMPLE.com:8000",
            "example.com.",
            "Example.Com.:80",
        ] {
            assert_eq!(classify(&host, Some(value)), Match::Site, "{value}");
        }
        let literal = VirtualHost::new("::1", &[], false);
        assert_eq!(classify(&literal, Some("[::1]:8000")), Match::Site);
        assert_eq!(classify(&host, Some("example.com..")), Match::Other);
        assert_eq!(classify(&host, Some("")), Match::Other);
    }

    #[test]
    fn aliases_take_wildcards() {
        let host = VirtualHost::new(
            "Example.com",
            &["*.example.com".into(), "api?.test".into()],
            false,
        );
        assert_eq!(classify(&host, Some("example.com")), Match::Site);
        assert_eq!(classify(&host, Some("a.b.EXAMPLE.com")), Match::Site);
        assert_eq!(classify(&host, Some("API1.test:8000")), Match::Site);
        assert_eq!(classify(&host, Some("api12.test")), Match::Other);
        assert_eq!(classify(&host, Some("example.org")), Match::Other);
        assert_eq!(classify(&host, None), Match::Other);
    }

    #[test]
    fn a_www_name_knows_its_parent() {
        let host = VirtualHost::new("www.example.com", &[], false);
        assert_eq!(classify(&host, Some("example.com")), Match::Parent);
        assert_eq!(classify(&host, Some("WWW.example.com")), Match::Site);
    }
}

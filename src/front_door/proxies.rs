//! `--trust-proxy-header` and `--trust-proxy`: the headers a proxy sets to say who the
//! client was, believed only from trusted peers, as mod_wsgi's `WSGITrustedProxyHeaders`
//! and `WSGITrustedProxies` do.
//!
//! Headers come in sets, one per purpose (client address, scheme, host, port, server
//! name, script name). For each purpose a header was named for: from a trusted peer the
//! named header is kept and sets its variable, the set's other headers are dropped; from
//! any other peer the whole set is dropped, so the application never sees a value a
//! client could have made up. With no `--trust-proxy`, every peer is trusted.

use std::net::IpAddr;

/// What a header tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    ClientAddress,
    Scheme,
    Host,
    Port,
    ServerName,
    ScriptName,
}

/// The headers mod_wsgi accepts, by purpose.
const KNOWN: &[(&str, Purpose)] = &[
    ("x-forwarded-for", Purpose::ClientAddress),
    ("x-client-ip", Purpose::ClientAddress),
    ("x-real-ip", Purpose::ClientAddress),
    ("x-forwarded-https", Purpose::Scheme),
    ("x-forwarded-proto", Purpose::Scheme),
    ("x-forwarded-scheme", Purpose::Scheme),
    ("x-forwarded-ssl", Purpose::Scheme),
    ("x-https", Purpose::Scheme),
    ("x-scheme", Purpose::Scheme),
    ("x-forwarded-host", Purpose::Host),
    ("x-host", Purpose::Host),
    ("x-forwarded-port", Purpose::Port),
    ("x-forwarded-server", Purpose::ServerName),
    ("x-script-name", Purpose::ScriptName),
    ("x-forwarded-script-name", Purpose::ScriptName),
];

/// The header names `--trust-proxy-header` accepts, for its error message.
pub fn known_headers() -> String {
    KNOWN
        .iter()
        .map(|(name, _)| title_case(name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "ip" => "IP".to_owned(),
            "https" => "HTTPS".to_owned(),
            "ssl" => "SSL".to_owned(),
            _ => {
                let mut characters = part.chars();
                characters.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + characters.as_str()
                })
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An address or a subnet (`10.0.0.0/8`, `2001:db8::/32`, `192.168.1.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| "not an IP address")?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= width)
                .ok_or("the prefix length is not a number of bits the address has")?,
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) if self.network.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// The trusted headers and proxies.
#[derive(Clone, Debug, Default)]
pub struct ProxyTrust {
    /// The named headers (lower case) and their purposes.
    headers: Vec<(&'static str, Purpose)>,
    proxies: Vec<Subnet>,
}

impl ProxyTrust {
    /// From the options; an unknown header name is refused with the names known.
    pub fn new(headers: &[String], proxies: Vec<Subnet>) -> Result<Self, String> {
        let mut named = Vec::new();
        for header in headers {
            let lower = header.to_ascii_lowercase();
            let Some(known) = KNOWN.iter().find(|(name, _)| *name == lower) else {
                return Err(header.clone());
            };
            named.push(*known);
        }
        Ok(Self {
            headers: named,
            proxies,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Drops the headers of the named sets that are not to be believed from `peer`, and
    /// returns the environ variables the believed ones set (`REMOTE_ADDR`,
    /// `wsgi.url_scheme` with `HTTPS` and `REQUEST_SCHEME`, `HTTP_HOST`, `SERVER_PORT`,
    /// `SERVER_NAME`, `SCRIPT_NAME`); an empty value means the variable is removed.
    pub fn apply(&self, peer: IpAddr, headers: &mut http::HeaderMap) -> Vec<(String, String)> {
        let mut variables = Vec::new();
        if self.headers.is_empty() {
            return variables;
        }
        let trusted = self.is_trusted(peer);
        for (named, purpose) in &self.headers {
            let value = headers
                .get(*named)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            for (name, other) in KNOWN {
                if other == purpose && (!trusted || name != named) {
                    headers.remove(*name);
                }
            }
            if let (true, Some(value)) = (trusted, value) {
                self.believe(named, *purpose, value.trim(), &mut variables);
            }
        }
        variables
    }

    fn is_trusted(&self, peer: IpAddr) -> bool {
        self.proxies.is_empty() || self.proxies.iter().any(|proxy| proxy.contains(peer))
    }

    fn believe(
        &self,
        name: &str,
        purpose: Purpose,
        value: &str,
        variables: &mut Vec<(String, String)>,
    ) {
        let mut set = |key: &str, value: &str| variables.push((key.to_owned(), value.to_owned()));
        match purpose {
            Purpose::ClientAddress => {
                if name == "x-forwarded-for" {
                    let (address, rest) = self.forwarded_for(value);
                    if let Some(address) = address {
                        set("REMOTE_ADDR", &address.to_string());
                    }
                    if let Some(rest) = rest {
                        set("HTTP_X_FORWARDED_FOR", &rest);
                    }
                } else if let Ok(address) = value.parse::<IpAddr>() {
                    set("REMOTE_ADDR", &address.to_string());
                }
            }
            Purpose::Scheme => {
                // A scheme header that was believed decides alone, as in mod_wsgi: only
                // its saying https makes the request https, whatever the connection.
                let https = if matches!(
                    name,
                    "x-forwarded-proto" | "x-forwarded-scheme" | "x-scheme"
                ) {
                    value.eq_ignore_ascii_case("https")
                } else {
                    ["on", "true", "1"]
                        .iter()
                        .any(|yes| value.eq_ignore_ascii_case(yes))
                };
                let scheme = if https { "https" } else { "http" };
                set("wsgi.url_scheme", scheme);
                set("REQUEST_SCHEME", scheme);
                set("HTTPS", if https { "1" } else { "" });
            }
            Purpose::Host if !value.is_empty() => set("HTTP_HOST", value),
            Purpose::Port if value.parse::<u16>().is_ok() => set("SERVER_PORT", value),
            Purpose::ServerName if !value.is_empty() => set("SERVER_NAME", value),
            Purpose::ScriptName => {
                let mount_point = value.trim_end_matches('/');
                set("SCRIPT_NAME", mount_point);
                set("mod_wsgi.mount_point", mount_point);
            }
            _ => {}
        }
    }

    /// X-Forwarded-For as mod_wsgi reads it: each proxy appends the peer it saw. With
    /// no `--trust-proxy`, the client is the first address (the header is left as it
    /// is). With trusted proxies, the trailing run of trusted addresses is skipped and
    /// the client is the address just before it (the first, when all are trusted; the
    /// last, when the last is not trusted), and the header is cut to start at it.
    /// Returns the client (only if it is an address) and the header's new value.
    fn forwarded_for(&self, value: &str) -> (Option<IpAddr>, Option<String>) {
        let hops: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        let Some(last) = hops.len().checked_sub(1) else {
            return (None, None);
        };
        if self.proxies.is_empty() {
            return (hops[0].parse().ok(), None);
        }
        let mut first_trusted = None;
        for (index, hop) in hops.iter().enumerate().rev() {
            match hop.parse::<IpAddr>() {
                Ok(address) if self.proxies.iter().any(|proxy| proxy.contains(address)) => {
                    first_trusted = Some(index);
                }
                _ => break,
            }
        }
        let client = first_trusted.map_or(last, |index| index.saturating_sub(1));
        (hops[client].parse().ok(), Some(hops[client..].join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn subnets_contain_their_addresses() {
        let subnet = Subnet::parse("10.1.0.0/16").unwrap();
        assert!(subnet.contains("10.1.2.3".parse().unwrap()));
        assert!(subnet.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!subnet.contains("10.2.0.1".parse().unwrap()));
        assert!(
            Subnet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            Subnet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Subnet::parse("10.0.0.0/33").is_err());
        assert!(Subnet::parse("proxy.local").is_err());
    }

    #[test]
    fn unknown_headers_are_refused() {
        assert!(ProxyTrust::new(&["Forwarded".into()], Vec::new()).is_err());
        assert!(ProxyTrust::new(&["X-Forwarded-For".into()], Vec::new()).is_ok());
    }

    #[test]
    fn a_trusted_proxy_sets_the_variables_and_the_rest_of_the_set_goes() {
        let trust = ProxyTrust::new(
            &[
                "X-Forwarded-For".into(),
                "X-Forwarded-Proto".into(),
                "X-Forwarded-Host".into(),
            ],
            vec![Subnet::parse("10.0.0.0/8").unwrap()],
        )
        .unwrap();
        let mut map = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.7"),
            ("x-real-ip", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("x-scheme", "http"),
            ("x-forwarded-host", "public.example"),
        ]);
        let variables = trust.apply("10.0.0.2".parse().unwrap(), &mut map);
        assert!(variables.contains(&("REMOTE_ADDR".into(), "203.0.113.9".into())));
        assert!(variables.contains(&(
            "HTTP_X_FORWARDED_FOR".into(),
            "203.0.113.9, 10.0.0.7".into()
        )));
        assert!(variables.contains(&("wsgi.url_scheme".into(), "https".into())));
        assert!(variables.contains(&("HTTP_HOST".into(), "public.example".into())));
        assert!(map.contains_key("x-forwarded-for") && !map.contains_key("x-real-ip"));
        assert!(!map.contains_key("x-scheme"));
    }

    #[test]
    fn an_untrusted_peer_loses_every_header_of_the_named_sets() {
        let trust = ProxyTrust::new(
            &["X-Forwarded-For".into()],
            vec![Subnet::parse("10.0.0.1").unwrap()],
        )
        .unwrap();
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-forwarded-host", "kept.example"),
        ]);
        let variables = trust.apply("192.0.2.1".parse().unwrap(), &mut map);
        assert!(variables.is_empty());
        assert!(!map.contains_key("x-forwarded-for") && !map.contains_key("x-real-ip"));
        // No header of that purpose was named: not ours to drop.
        assert!(map.contains_key("x-forwarded-host"));
    }

    #[test]
    fn forwarded_for_skips_the_trailing_trusted_hops() {
        let trust = ProxyTrust::new(
            &["X-Forwarded-For".into()],
            vec![Subnet::parse("10.0.0.0/8").unwrap()],
        )
        .unwrap();
        let client = |value: &str| trust.forwarded_for(value);
        let address = |text: &str| Some(text.parse().unwrap());
        assert_eq!(
            client("1.1.1.1, 2.2.2.2, 10.0.0.1, 10.0.0.2"),
            (
                address("2.2.2.2"),
                Some("2.2.2.2, 10.0.0.1, 10.0.0.2".into())
            )
        );
        assert_eq!(
            client("1.1.1.1, 2.2.2.2"),
            (address("2.2.2.2"), Some("2.2.2.2".into()))
        );
        assert_eq!(
            client("10.0.0.5, 10.0.0.1"),
            (address("10.0.0.5"), Some("10.0.0.5, 10.0.0.1".into()))
        );
        assert_eq!(client(" , "), (None, None));
        assert_eq!(client("junk"), (None, Some("junk".into())));
    }

    #[test]
    fn scheme_headers_decide_alone() {
        let trust = ProxyTrust::new(&["X-Forwarded-SSL".into()], Vec::new()).unwrap();
        for (value, scheme) in [
            ("on", "https"),
            ("TRUE", "https"),
            ("1", "https"),
            ("off", "http"),
            ("maybe", "http"),
        ] {
            let mut map = headers(&[("x-forwarded-ssl", value)]);
            let variables = trust.apply("192.0.2.1".parse().unwrap(), &mut map);
            assert!(
                variables.contains(&("wsgi.url_scheme".into(), scheme.into())),
                "{value}"
            );
        }
    }

    #[test]
    fn without_trusted_proxies_the_first_hop_is_the_client() {
        let trust = ProxyTrust::new(&["X-Forwarded-For".into()], Vec::new()).unwrap();
        let mut map = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.7")]);
        let variables = trust.apply("192.0.2.1".parse().unwrap(), &mut map);
        assert_eq!(
            variables,
            vec![("REMOTE_ADDR".into(), "203.0.113.9".into())]
        );
    }
}

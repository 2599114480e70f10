//! The front door's rules, validated at start-up and applied by the front end to every
//! request before anything else: which host names the site answers (`--server-name`,
//! `--server-alias`, `--allow-localhost`, `hosts.rs`), plain HTTP sent to HTTPS
//! (`--https-only`), `--hsts-policy`, the paths that need a client certificate
//! (`--ssl-verify-client`), and which proxies' headers are believed
//! (`--trust-proxy-header`, `--trust-proxy`, `proxies.rs`).
//!
//! Pure decisions over a request's facts, no I/O: `cli` builds [`FrontDoor`] (and
//! reports what is wrong with the options), `frontend` asks it.

mod hosts;
mod proxies;

pub use hosts::VirtualHost;
pub use proxies::{ProxyTrust, Subnet, known_headers as known_proxy_headers};

use std::net::IpAddr;

use crate::handoff::Host;

/// Everything the front door decides, from the options.
#[derive(Clone, Debug, Default)]
pub struct FrontDoor {
    /// `--server-name` and its aliases; `None`: every host name is served.
    pub virtual_host: Option<VirtualHost>,
    /// `--https-port`: where `--https-only` sends plain HTTP requests.
    pub https_port: Option<u16>,
    /// `--https-only`.
    pub https_only: bool,
    /// `--hsts-policy`: the Strict-Transport-Security value of HTTPS responses.
    pub hsts_policy: Option<http::HeaderValue>,
    /// URL paths below which an HTTPS request needs a verified client certificate
    /// (`--ssl-verify-client`; `/` when only `--ssl-ca-certificate-file` is given).
    pub verify_client: Vec<String>,
    /// `--trust-proxy-header` and `--trust-proxy`.
    pub proxies: ProxyTrust,
}

/// What a request arriving at the front door is.
#[derive(Clone, Copy, Debug)]
pub struct Arrival<'a> {
    /// The Host header, if any (`example.com:8443`).
    pub host: Option<&'a str>,
    /// The request target as received: path and query (`/a?b=1`).
    pub target: &'a str,
    /// Came over TLS.
    pub https: bool,
    /// The peer's address (the proxy's, behind one).
    pub peer: IpAddr,
    /// The port the connection arrived on.
    pub local_port: u16,
}

/// What the front door says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Let it in.
    Serve,
    /// 403, with the reason the page gives.
    Forbidden(&'static str),
    /// A redirect: 301 (`www.` parent domain) or 302 (`--https-only`), to `location`.
    Redirect { status: u16, location: String },
}

impl FrontDoor {
    /// Nothing configured that could turn a request away or redirect it: no virtual
    /// host, no `--https-only`, no client certificates. The front end then skips
    /// [`FrontDoor::route`] (a few hundred instructions per request).
    pub fn admits_every_request(&self) -> bool {
        self.virtual_host.is_none() && !self.https_only && self.verify_client.is_empty()
    }

    /// The host and scheme rules: mod_wsgi-express's virtual hosts and `--https-only`.
    pub fn route(&self, arrival: &Arrival<'_>) -> Answer {
        let host = arrival.host.map(Host::parse);
        let matched = match &self.virtual_host {
            None => hosts::Match::Site,
            Some(virtual_host) => virtual_host.classify(host.as_ref()),
        };
        let local = self
            .virtual_host
            .as_ref()
            .is_some_and(|virtual_host| virtual_host.allow_localhost)
            && is_loopback(arrival.peer);
        match matched {
            // mod_wsgi-express's default virtual host: `Require all denied`, or
            // `Allow from localhost` with --allow-localhost (the client's address, not
            // the name asked for).
            hosts::Match::Other if local => Answer::Serve,
            hosts::Match::Other => {
                Answer::Forbidden("This server does not serve the host name the request asked for.")
            }
            _ if self.https_only && !arrival.https => {
                let name = match &self.virtual_host {
                    Some(virtual_host) => virtual_host.server_name.as_str(),
                    None => match &host {
                        Some(host) if !host.name.is_empty() => &*host.name,
                        _ => {
                            return Answer::Forbidden(
                                "This server answers plain HTTP only with a redirect to HTTPS, which needs a Host header.",
                            );
                        }
                    },
                };
                let port = self.https_port.unwrap_or(443);
                Answer::Redirect {
                    status: 302,
                    location: url("https", name, port, arrival.target),
                }
            }
            hosts::Match::Parent => {
                let Some(virtual_host) = &self.virtual_host else {
                    return Answer::Serve;
                };
                let scheme = if arrival.https { "https" } else { "http" };
                Answer::Redirect {
                    status: 301,
                    location: url(
                        scheme,
                        &virtual_host.server_name,
                        arrival.local_port,
                        arrival.target,
                    ),
                }
            }
            hosts::Match::Site => Answer::Serve,
        }
    }

    /// True when `path` (decoded, normalized) lies below a `--ssl-verify-client` path:
    /// the path itself or anything under it (`/admin` covers `/admin/x`, not `/admins`).
    pub fn needs_client_certificate(&self, path: &str) -> bool {
        self.verify_client.iter().any(|prefix| below(path, prefix))
    }
}

/// `path` is `prefix` or lies under it, on a segment boundary.
fn below(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `scheme://name[:port]target`, the port left out when it is the scheme's own.
fn url(scheme: &str, name: &str, port: u16, target: &str) -> String {
    let default_port = if scheme == "https" { 443 } else { 80 };
    let name = if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    if port == default_port {
        format!("{scheme}://{name}{target}")
    } else {
        format!("{scheme}://{name}:{port}{target}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival<'a>(host: Option<&'a str>, https: bool, peer: &str) -> Arrival<'a> {
        Arrival {
            host,
            target: "/a/b?c=1",
            https,
            peer: peer.parse().unwrap(),
            local_port: 8000,
        }
    }

    fn site(name: &str) -> FrontDoor {
        FrontDoor {
            virtual_host: Some(VirtualHost::new(name, &[], false)),
            ..FrontDoor::default()
        }
    }

    #[test]
    fn a_door_that_admits_every_request_serves_every_arrival() {
        let open = FrontDoor::default();
        assert!(open.admits_every_request());
        for (host, https, peer) in [
            (Some("any.example"), false, "10.0.0.1"),
            (Some("www.example.com:81"), true, "::1"),
            (None, false, "127.0.0.1"),
            (Some(""), true, "192.0.2.7"),
        ] {
            assert_eq!(open.route(&arrival(host, https, peer)), Answer::Serve);
        }
        assert!(!site("example.com").admits_every_request());
        let https_only = FrontDoor {
            https_only: true,
            ..FrontDoor::default()
        };
        assert!(!https_only.admits_every_request());
        let certificates = FrontDoor {
            verify_client: vec!["/".to_owned()],
            ..FrontDoor::default()
        };
        assert!(!certificates.admits_every_request());
    }

    #[test]
    fn without_a_server_name_every_host_is_served() {
        let door = FrontDoor::default();
        assert_eq!(
            door.route(&arrival(Some("any.example"), false, "10.0.0.1")),
            Answer::Serve
        );
        assert_eq!(door.route(&arrival(None, false, "10.0.0.1")), Answer::Serve);
    }

    #[test]
    fn other_hosts_are_forbidden_unless_local_with_allow_localhost() {
        let door = site("example.com");
        assert_eq!(
            door.route(&arrival(Some("Example.COM:8000"), false, "10.0.0.1")),
            Answer::Serve
        );
        assert!(matches!(
            door.route(&arrival(Some("other.com"), false, "10.0.0.1")),
            Answer::Forbidden(_)
        ));
        assert!(matches!(
            door.route(&arrival(None, false, "10.0.0.1")),
            Answer::Forbidden(_)
        ));
        assert!(matches!(
            door.route(&arrival(Some("localhost"), false, "127.0.0.1")),
            Answer::Forbidden(_)
        ));
        let door = FrontDoor {
            virtual_host: Some(VirtualHost::new("example.com", &[], true)),
            ..FrontDoor::default()
        };
        assert_eq!(
            door.route(&arrival(Some("localhost"), false, "127.0.0.1")),
            Answer::Serve
        );
        assert_eq!(
            door.route(&arrival(Some("other.com"), false, "::ffff:127.0.0.1")),
            Answer::Serve
        );
        assert!(matches!(
            door.route(&arrival(Some("localhost"), false, "10.0.0.1")),
            Answer::Forbidden(_)
        ));
    }

    #[test]
    fn the_parent_of_a_www_name_is_redirected_to_it() {
        let door = site("www.example.com");
        assert_eq!(
            door.route(&arrival(Some("example.com:8000"), false, "10.0.0.1")),
            Answer::Redirect {
                status: 301,
                location: "http://www.example.com:8000/a/b?c=1".into()
            }
        );
        let mut https = arrival(Some("example.com"), true, "10.0.0.1");
        https.local_port = 443;
        assert_eq!(
            door.route(&https),
            Answer::Redirect {
                status: 301,
                location: "https://www.example.com/a/b?c=1".into()
            }
        );
    }

    #[test]
    fn https_only_redirects_plain_requests_with_302() {
        let mut door = site("example.com");
        door.https_only = true;
        door.https_port = Some(8443);
        assert_eq!(
            door.route(&arrival(Some("example.com"), false, "10.0.0.1")),
            Answer::Redirect {
                status: 302,
                location: "https://example.com:8443/a/b?c=1".into()
            }
        );
        assert_eq!(
            door.route(&arrival(Some("example.com"), true, "10.0.0.1")),
            Answer::Serve
        );
        let door = FrontDoor {
            https_only: true,
            https_port: Some(443),
            ..FrontDoor::default()
        };
        assert_eq!(
            door.route(&arrival(Some("any.example:8000"), false, "10.0.0.1")),
            Answer::Redirect {
                status: 302,
                location: "https://any.example/a/b?c=1".into()
            }
        );
        // The name as the environ has it: lower case, an IPv6 literal in brackets.
        for (host, location) in [
            ("Any.EXAMPLE.:8000", "https://any.example/a/b?c=1"),
            ("[::1]:8000", "https://[::1]/a/b?c=1"),
        ] {
            assert_eq!(
                door.route(&arrival(Some(host), false, "10.0.0.1")),
                Answer::Redirect {
                    status: 302,
                    location: location.into()
                },
                "{host}"
            );
        }
    }

    #[test]
    fn https_only_leaves_this_machine_on_http_with_allow_localhost() {
        let door = FrontDoor {
            virtual_host: Some(VirtualHost::new("www.example.com", &[], true)),
            https_only: true,
            https_port: Some(8443),
            ..FrontDoor::default()
        };
        assert_eq!(
            door.route(&arrival(Some("localhost"), false, "127.0.0.1")),
            Answer::Serve
        );
        // The parent domain goes straight to the www. name over HTTPS.
        assert_eq!(
            door.route(&arrival(Some("example.com"), false, "10.0.0.1")),
            Answer::Redirect {
                status: 302,
                location: "https://www.example.com:8443/a/b?c=1".into()
            }
        );
    }

    #[test]
    fn verify_client_paths_match_on_segments() {
        let door = FrontDoor {
            verify_client: vec!["/admin".into()],
            ..FrontDoor::default()
        };
        assert!(door.needs_client_certificate("/admin"));
        assert!(door.needs_client_certificate("/admin/users"));
        assert!(!door.needs_client_certificate("/admins"));
        assert!(!door.needs_client_certificate("/"));
        let door = FrontDoor {
            verify_client: vec!["/".into()],
            ..FrontDoor::default()
        };
        assert!(door.needs_client_certificate("/anything"));
    }
}

//! Reverse proxying: `--proxy-mount-point` (and its older name `--proxy-url-alias`),
//! `--proxy-virtual-host` and `--proxy-timeout`, as mod_wsgi-express sets up Apache's
//! `ProxyPass` and `ProxyPassReverse` for them.
//!
//! This module owns the whole feature below the front end: `upstream.rs` reads an
//! upstream URL, this file decides which requests go where (pure, no I/O), `headers.rs`
//! the header rules (hop-by-hop fields, `X-Forwarded-*`, `Location` mapped back) and
//! `client.rs` forwards one request with hyper's HTTP/1 client, streaming both ways.
//! `cli` builds [`Proxy`] (and reports bad options); `frontend/dispatch.rs` asks
//! [`Proxy::route`] for every request and calls [`forward`] for those it names.

mod client;
mod headers;
mod upstream;

pub use client::{ForwardError, forward};
pub use upstream::{Upstream, UpstreamError};

use std::time::Duration;

/// Marks a response that came from an upstream, so that `--error-override` leaves it as
/// it is (Apache replaces a proxied error only with `ProxyErrorOverride`, which
/// mod_wsgi-express does not ask for); the front end removes it before the response goes
/// out.
pub const PROXIED: http::HeaderName = http::HeaderName::from_static("x-ferrule-proxied");

/// Every proxy rule, from the options.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// `--proxy-mount-point`s, longest URL path first.
    mounts: Vec<Mount>,
    /// `--proxy-virtual-host`s.
    hosts: Vec<HostRoute>,
    /// `--proxy-timeout` (or `--socket-timeout`): the wait for a connection, for the
    /// response head and for each piece of the response body.
    pub timeout: Duration,
    /// The name this server gives in `X-Forwarded-Server` for mount points.
    server_name: String,
}

/// A URL path whose requests go to an upstream.
#[derive(Clone, Debug)]
struct Mount {
    /// What a request path must start with: the mount point with one `/` at its end.
    prefix: String,
    upstream: Upstream,
}

/// A host name whose requests all go to an upstream.
#[derive(Clone, Debug)]
struct HostRoute {
    /// Lower case, without a port.
    host: String,
    upstream: Upstream,
}

/// Where one request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// To `upstream`, asking for `path_and_query`.
    Forward(Forward<'a>),
    /// The mount point itself without its last `/`: 302 to the same path with it, as
    /// mod_wsgi-express answers (`location` is the path and query to send the client to).
    AddSlash { location: String },
}

/// A request that goes to an upstream.
#[derive(Debug, PartialEq, Eq)]
pub struct Forward<'a> {
    pub upstream: &'a Upstream,
    /// The upstream's origin-form target: its path, the rest of the request's path, the
    /// request's query.
    pub path_and_query: String,
    /// The URL path of this server that maps to the upstream's base path (`/api/`; `/`
    /// for a virtual host): for `Location` answers mapped back.
    pub local_prefix: &'a str,
    /// `X-Forwarded-Prefix`: the mount point without its last `/`; `None` for a
    /// virtual host.
    pub forwarded_prefix: Option<&'a str>,
    /// `X-Forwarded-Server`: the mount point's server name or the virtual host's name.
    pub server_name: &'a str,
}

/// A problem with the proxy options, for `cli` to report with the option's name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("the URL path must start with /")]
    RelativeMountPoint,
    #[error("'{0}' is not a host name")]
    BadHostName(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Proxy {
    /// The rules from `(URL path, URL)` and `(host name, URL)` pairs; `server_name` is
    /// the name of this server (`X-Forwarded-Server`).
    pub fn new(
        mount_points: &[(String, String)],
        virtual_hosts: &[(String, String)],
        timeout: Duration,
        server_name: &str,
    ) -> Result<Self, Vec<(usize, RuleError)>> {
        let mut problems = Vec::new();
        let mut mounts = Vec::new();
        for (index, (url_path, url)) in mount_points.iter().enumerate() {
            match mount(url_path, url) {
                Ok(mount) => mounts.push(mount),
                Err(error) => problems.push((index, error)),
            }
        }
        let mut hosts = Vec::new();
        for (index, (host, url)) in virtual_hosts.iter().enumerate() {
            match host_route(host, url) {
                Ok(route) => hosts.push(route),
                Err(error) => problems.push((mount_points.len() + index, error)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // The longest mount point wins, whatever the order they were given in.
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.prefix.len()));
        Ok(Self {
            mounts,
            hosts,
            timeout,
            server_name: server_name.to_owned(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.hosts.is_empty()
    }

    /// Whether some `--proxy-virtual-host` names `host` (a Host header: the port is
    /// ignored). Asked before the front door's host rules, since a proxied host name is a
    /// site of its own, as its Apache virtual host is.
    pub fn serves_host(&self, host: Option<&str>) -> bool {
        self.host_route(host).is_some()
    }

    fn host_route(&self, host: Option<&str>) -> Option<&HostRoute> {
        let host = crate::handoff::Host::parse(host?);
        self.hosts.iter().find(|route| route.host == host.name)
    }

    /// Where a request for `host` (its Host header) and `raw_path` (as received,
    /// percent-encoded) with `query` goes, if it is proxied.
    ///
    /// The path is matched decoded and normalized (so `/%61pi/` and `/x/../api/` are under
    /// `/api/`), and the rest of it is percent-encoded again for the upstream, as Apache's
    /// `mod_proxy` does; the query goes as it came.
    pub fn route(
        &self,
        host: Option<&str>,
        raw_path: &str,
        query: Option<&str>,
    ) -> Option<Route<'_>> {
        let decoded = crate::handoff::request_path::decode(raw_path.as_bytes());
        if let Some(route) = self.host_route(host) {
            let rest = decoded.strip_prefix(b"/").unwrap_or(&decoded);
            return Some(Route::Forward(Forward {
                upstream: &route.upstream,
                path_and_query: target(&route.upstream, rest, query),
                local_prefix: "/",
                forwarded_prefix: None,
                server_name: &route.host,
            }));
        }
        for mount in &self.mounts {
            if let Some(rest) = decoded.strip_prefix(mount.prefix.as_bytes()) {
                return Some(Route::Forward(Forward {
                    upstream: &mount.upstream,
                    path_and_query: target(&mount.upstream, rest, query),
                    local_prefix: &mount.prefix,
                    forwarded_prefix: Some(without_last_slash(&mount.prefix)),
                    server_name: &self.server_name,
                }));
            }
            if decoded == without_last_slash(&mount.prefix).as_bytes() {
                let mut location = format!("{raw_path}/");
                if let Some(query) = query {
                    location.push('?');
                    location.push_str(query);
                }
                return Some(Route::AddSlash { location });
            }
        }
        None
    }
}

/// A `--proxy-mount-point`: as mod_wsgi-express writes its `ProxyPass`, a mount point
/// given with a final `/` maps to the URL as given; one without maps `URL-PATH/` to the
/// URL with exactly one final `/`. Either way the bare mount point is redirected to it.
fn mount(url_path: &str, url: &str) -> Result<Mount, RuleError> {
    if !url_path.starts_with('/') {
        return Err(RuleError::RelativeMountPoint);
    }
    let mut upstream = Upstream::parse(url)?;
    let prefix = if url_path.ends_with('/') {
        url_path.to_owned()
    } else {
        upstream.ensure_final_slash();
        format!("{url_path}/")
    };
    // The prefix is compared with decoded, normalized paths.
    let prefix = String::from_utf8_lossy(&crate::handoff::request_path::decode(prefix.as_bytes()))
        .into_owned();
    let prefix = if prefix.ends_with('/') {
        prefix
    } else {
        format!("{prefix}/")
    };
    Ok(Mount { prefix, upstream })
}

fn host_route(host: &str, url: &str) -> Result<HostRoute, RuleError> {
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
    if !valid {
        return Err(RuleError::BadHostName(host.to_owned()));
    }
    let mut upstream = Upstream::parse(url)?;
    // `ProxyPass / URL`: the request path's rest follows the URL's path, which so needs
    // its final `/` (Apache would glue `/x` onto `http://up/app` as `/appx`).
    upstream.ensure_final_slash();
    Ok(HostRoute {
        host: host.to_ascii_lowercase(),
        upstream,
    })
}

fn without_last_slash(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}

/// The upstream's target: its base path, then `rest` (decoded bytes) encoded again, then
/// the query as it came.
fn target(upstream: &Upstream, rest: &[u8], query: Option<&str>) -> String {
    let mut target = String::with_capacity(upstream.path.len() + rest.len() + 16);
    target.push_str(&upstream.path);
    encode_path(rest, &mut target);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    target
}

/// Percent-encodes a decoded path for the request line: what RFC 3986 allows in a path
/// segment, and `/`, stays as it is.
fn encode_path(path: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in path {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        if plain {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(mounts: &[(&str, &str)], hosts: &[(&str, &str)]) -> Proxy {
        let owned = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        };
        Proxy::new(
            &owned(mounts),
            &owned(hosts),
            Duration::from_secs(5),
            "localhost",
        )
        .expect("valid rules")
    }

    fn forwarded(route: Option<Route<'_>>) -> (String, String) {
        match route {
            Some(Route::Forward(forward)) => {
                (forward.upstream.authority.clone(), forward.path_and_query)
            }
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn a_mount_point_without_a_final_slash_maps_below_it() {
        let proxy = proxy(&[("/api", "http://127.0.0.1:9000/base")], &[]);
        assert_eq!(
            forwarded(proxy.route(None, "/api/users/1", Some("a=1"))),
            ("127.0.0.1:9000".to_owned(), "/base/users/1?a=1".to_owned())
        );
        assert_eq!(
            proxy.route(None, "/api", Some("a=1")),
            Some(Route::AddSlash {
                location: "/api/?a=1".to_owned()
            })
        );
        assert_eq!(proxy.route(None, "/apiary", None), None);
        assert_eq!(proxy.route(None, "/other", None), None);
    }

    #[test]
    fn a_mount_point_with_a_final_slash_keeps_the_url_as_given() {
        let proxy = proxy(&[("/api/", "http://up:81/x/")], &[]);
        assert_eq!(
            forwarded(proxy.route(None, "/api/", None)),
            ("up:81".to_owned(), "/x/".to_owned())
        );
        assert_eq!(
            proxy.route(None, "/api", None),
            Some(Route::AddSlash {
                location: "/api/".to_owned()
            })
        );
    }

    #[test]
    fn paths_are_matched_decoded_and_encoded_again() {
        let proxy = proxy(&[("/api", "http://up/")], &[]);
        assert_eq!(
            forwarded(proxy.route(None, "/%61pi/a%20b/../c%3F", None)).1,
            "/c%3F"
        );
        assert_eq!(
            forwarded(proxy.route(None, "/x/../api/a%20b", None)).1,
            "/a%20b"
        );
    }

    #[test]
    fn the_longest_mount_point_wins() {
        let proxy = proxy(&[("/a", "http://one/"), ("/a/b", "http://two/")], &[]);
        assert_eq!(forwarded(proxy.route(None, "/a/b/c", None)).0, "two:80");
        assert_eq!(forwarded(proxy.route(None, "/a/c", None)).0, "one:80");
    }

    #[test]
    fn a_virtual_host_takes_every_path_of_its_host() {
        let proxy = proxy(&[], &[("Api.Example.com", "http://up:8080")]);
        assert_eq!(
            forwarded(proxy.route(Some("api.example.COM:8000"), "/x/y", Some("q"))),
            ("up:8080".to_owned(), "/x/y?q".to_owned())
        );
        assert!(proxy.serves_host(Some("api.example.com")));
        assert!(!proxy.serves_host(Some("example.com")));
        assert!(!proxy.serves_host(None));
        assert_eq!(proxy.route(Some("example.com"), "/x", None), None);
    }

    #[test]
    fn bad_rules_are_refused() {
        let owned = |a: &str, b: &str| vec![(a.to_owned(), b.to_owned())];
        let error = Proxy::new(&owned("api", "http://up/"), &[], Duration::ZERO, "x").unwrap_err();
        assert_eq!(error, vec![(0, RuleError::RelativeMountPoint)]);
        let error = Proxy::new(&[], &owned("a b", "http://up/"), Duration::ZERO, "x").unwrap_err();
        assert_eq!(error, vec![(0, RuleError::BadHostName("a b".to_owned()))]);
    }
}

//! The reverse-proxy options validated into [`crate::proxy::Proxy`]:
//! `--proxy-mount-point` (and `--proxy-url-alias`), `--proxy-virtual-host`,
//! `--proxy-timeout`.

use std::time::Duration;

use super::config::ConfigError;
use crate::proxy::Proxy;

/// The proxy options as given.
pub(super) struct ProxyArgs {
    pub(super) mount_points: Vec<String>,
    pub(super) url_aliases: Vec<String>,
    pub(super) virtual_hosts: Vec<String>,
    pub(super) timeout: Option<u64>,
    /// `--socket-timeout`: the timeout when `--proxy-timeout` is not given, as in
    /// mod_wsgi-express (Apache's `ProxyTimeout` defaults to `Timeout`).
    pub(super) socket_timeout: u64,
}

/// The rules, or `None` when nothing is proxied.
pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: ProxyArgs,
    server_name: &str,
) -> Option<Proxy> {
    let ProxyArgs {
        mount_points,
        url_aliases,
        virtual_hosts,
        timeout,
        socket_timeout,
    } = args;
    let pairs = |values: &[String]| -> Vec<(String, String)> {
        values
            .chunks(2)
            .filter_map(|pair| match pair {
                [first, second] => Some((first.clone(), second.clone())),
                _ => None,
            })
            .collect()
    };
    let mut mounts = pairs(&mount_points);
    let aliases_from = mounts.len();
    mounts.extend(pairs(&url_aliases));
    let hosts = pairs(&virtual_hosts);
    if mounts.is_empty() && hosts.is_empty() {
        return None;
    }
    let timeout = Duration::from_secs(timeout.unwrap_or(socket_timeout).max(1));
    match Proxy::new(&mounts, &hosts, timeout, server_name) {
        Ok(proxy) => Some(proxy),
        Err(errors) => {
            for (index, error) in errors {
                let (option, (first, second)) = if index < aliases_from {
                    ("--proxy-mount-point", &mounts[index])
                } else if index < mounts.len() {
                    ("--proxy-url-alias", &mounts[index])
                } else {
                    ("--proxy-virtual-host", &hosts[index - mounts.len()])
                };
                problems.push(ConfigError::BadValue {
                    option,
                    value: format!("{first} {second}"),
                    reason: error.to_string(),
                });
            }
            None
        }
    }
}

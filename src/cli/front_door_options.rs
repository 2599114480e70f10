//! The options of the front door, validated: HTTPS (`--https-port` and the certificate
//! files, read and checked here so that a bad file stops start-up naming it), virtual
//! hosts and trusted proxies, into [`crate::front_door::FrontDoor`] and [`HttpsConfig`].

use std::path::{Path, PathBuf};

use super::config::ConfigError;
use crate::front_door::{FrontDoor, ProxyTrust, Subnet, VirtualHost};
use crate::tls::TlsFiles;

/// The HTTPS listener.
#[derive(Clone, Debug)]
pub struct HttpsConfig {
    /// `--https-port` (or `--ssl-port`).
    pub port: u16,
    pub files: TlsFiles,
    /// `--ssl-environment`.
    pub ssl_environment: bool,
}

/// The front door's options as given.
pub(super) struct FrontDoorArgs {
    pub(super) https_port: Option<u16>,
    pub(super) ssl_port: Option<u16>,
    pub(super) ssl_certificate_file: Option<PathBuf>,
    pub(super) ssl_certificate_key_file: Option<PathBuf>,
    pub(super) ssl_certificate: Option<PathBuf>,
    pub(super) ssl_ca_certificate_file: Option<PathBuf>,
    pub(super) ssl_verify_client: Vec<String>,
    pub(super) ssl_certificate_chain_file: Option<PathBuf>,
    pub(super) ssl_environment: bool,
    pub(super) https_only: bool,
    pub(super) hsts_policy: Option<String>,
    pub(super) server_name: Option<String>,
    pub(super) server_aliases: Vec<String>,
    pub(super) allow_localhost: bool,
    pub(super) trust_proxy_headers: Vec<String>,
    pub(super) trust_proxies: Vec<String>,
}

pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: FrontDoorArgs,
    http_port: u16,
    absolute: &dyn Fn(&Path) -> PathBuf,
    check_files: bool,
) -> (FrontDoor, Option<HttpsConfig>) {
    let FrontDoorArgs {
        https_port,
        ssl_port,
        ssl_certificate_file,
        ssl_certificate_key_file,
        ssl_certificate,
        ssl_ca_certificate_file,
        ssl_verify_client,
        ssl_certificate_chain_file,
        ssl_environment,
        https_only,
        hsts_policy,
        server_name,
        server_aliases,
        allow_localhost,
        trust_proxy_headers,
        trust_proxies,
    } = args;
    let port = match (https_port, ssl_port) {
        (Some(https), Some(ssl)) if https != ssl => {
            problems.push(ConfigError::Conflict {
                first: "--https-port",
                second: "--ssl-port",
                reason: "they are two names of one port",
            });
            None
        }
        (https, ssl) => https.or(ssl),
    };
    if port == Some(http_port) {
        problems.push(ConfigError::Conflict {
            first: "--https-port",
            second: "--port",
            reason: "HTTP and HTTPS need ports of their own",
        });
    }
    // --ssl-certificate STUB stands for STUB.crt and STUB.key, as in mod_wsgi-express
    // (where it wins over the two file options).
    let (certificate, key) = match ssl_certificate {
        Some(stub) => {
            let stub = absolute(&stub).into_os_string();
            let with = |extension: &str| {
                let mut path = stub.clone();
                path.push(extension);
                Some(PathBuf::from(path))
            };
            (with(".crt"), with(".key"))
        }
        None => (
            ssl_certificate_file.map(|path| absolute(&path)),
            ssl_certificate_key_file.map(|path| absolute(&path)),
        ),
    };
    let client_ca = ssl_ca_certificate_file.map(|path| absolute(&path));
    let https = match (port, certificate, key) {
        (Some(port), Some(certificate), Some(key)) => {
            let files = TlsFiles {
                certificate,
                key,
                chain: ssl_certificate_chain_file.map(|path| absolute(&path)),
                client_ca: client_ca.clone(),
            };
            if check_files {
                if let Err(error) = crate::tls::load(&files, false) {
                    problems.push(ConfigError::Tls { error });
                }
            }
            Some(HttpsConfig {
                port,
                files,
                ssl_environment,
            })
        }
        (Some(_), _, _) => {
            problems.push(ConfigError::Needs {
                option: "--https-port",
                needs: "a certificate and its key: --ssl-certificate STUB, or --ssl-certificate-file and --ssl-certificate-key-file",
            });
            None
        }
        (None, certificate, key) => {
            if certificate.is_some() || key.is_some() || client_ca.is_some() {
                problems.push(ConfigError::Needs {
                    option: "a certificate (--ssl-certificate, --ssl-certificate-file, --ssl-certificate-key-file or --ssl-ca-certificate-file)",
                    needs: "--https-port: the port HTTPS is served on",
                });
            }
            None
        }
    };
    for (given, option) in [
        (https_only, "--https-only"),
        (hsts_policy.is_some(), "--hsts-policy"),
        (ssl_environment, "--ssl-environment"),
        (!ssl_verify_client.is_empty(), "--ssl-verify-client"),
    ] {
        if given && port.is_none() {
            problems.push(ConfigError::Needs {
                option,
                needs: "--https-port",
            });
        }
    }
    if !ssl_verify_client.is_empty() && client_ca.is_none() {
        problems.push(ConfigError::Needs {
            option: "--ssl-verify-client",
            needs: "--ssl-ca-certificate-file: the authorities client certificates are checked against",
        });
    }
    for path in &ssl_verify_client {
        if !path.starts_with('/') {
            problems.push(ConfigError::BadValue {
                option: "--ssl-verify-client",
                value: path.clone(),
                reason: "a URL path starts with /".to_owned(),
            });
        }
    }
    let verify_client = match (&client_ca, ssl_verify_client.is_empty()) {
        (None, _) => Vec::new(),
        // As mod_wsgi-express: the CA file alone protects the whole site.
        (Some(_), true) => vec!["/".to_owned()],
        (Some(_), false) => ssl_verify_client,
    };
    let hsts_policy = hsts_policy.and_then(|policy| {
        http::HeaderValue::from_str(&policy)
            .map_err(|_| {
                problems.push(ConfigError::BadValue {
                    option: "--hsts-policy",
                    value: policy.clone(),
                    reason: "not a header value (printable ASCII, such as max-age=31536000)"
                        .to_owned(),
                });
            })
            .ok()
    });
    let virtual_host = server_name.and_then(|name| {
        let valid = |name: &str, wildcards: bool| {
            !name.is_empty()
                && name.bytes().all(|byte| {
                    byte.is_ascii_alphanumeric()
                        || matches!(byte, b'.' | b'-' | b'_')
                        || (wildcards && matches!(byte, b'*' | b'?'))
                })
        };
        for alias in &server_aliases {
            if !valid(alias, true) {
                problems.push(ConfigError::BadValue {
                    option: "--server-alias",
                    value: alias.clone(),
                    reason:
                        "not a host name (letters, digits, '.', '-', and the wildcards * and ?)"
                            .to_owned(),
                });
            }
        }
        if valid(&name, false) {
            Some(VirtualHost::new(&name, &server_aliases, allow_localhost))
        } else {
            problems.push(ConfigError::BadValue {
                option: "--server-name",
                value: name,
                reason: "not a host name (letters, digits, '.' and '-', no port)".to_owned(),
            });
            None
        }
    });
    if virtual_host.is_none() {
        for (given, option) in [
            (!server_aliases.is_empty(), "--server-alias"),
            (allow_localhost, "--allow-localhost"),
        ] {
            if given {
                problems.push(ConfigError::Needs {
                    option,
                    needs: "--server-name",
                });
            }
        }
    }
    let subnets = trust_proxies
        .iter()
        .filter_map(|text| {
            Subnet::parse(text)
                .map_err(|reason| {
                    problems.push(ConfigError::BadValue {
                        option: "--trust-proxy",
                        value: text.clone(),
                        reason: reason.to_owned(),
                    });
                })
                .ok()
        })
        .collect();
    if !trust_proxies.is_empty() && trust_proxy_headers.is_empty() {
        problems.push(ConfigError::Needs {
            option: "--trust-proxy",
            needs: "--trust-proxy-header: the headers believed from those proxies",
        });
    }
    let proxies = ProxyTrust::new(&trust_proxy_headers, subnets).unwrap_or_else(|header| {
        problems.push(ConfigError::BadValue {
            option: "--trust-proxy-header",
            value: header,
            reason: format!(
                "not a header mod_wsgi takes from proxies; one of: {}",
                crate::front_door::known_proxy_headers()
            ),
        });
        ProxyTrust::default()
    });
    let front_door = FrontDoor {
        virtual_host,
        https_port: https.as_ref().map(|https| https.port),
        https_only,
        hsts_policy,
        verify_client,
        proxies,
    };
    (front_door, https)
}

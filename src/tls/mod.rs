//! TLS for the front end (`--https-port`): the server's certificate, key and chain read
//! from PEM files into a rustls configuration (ring provider, TLS 1.2 and 1.3 only), the
//! client certificate authorities of `--ssl-ca-certificate-file`, and what a finished
//! handshake tells the environ (`facts.rs`).
//!
//! No PyO3 and no other module of the crate: `cli` calls [`load`] to check the files at
//! start-up, the processes that serve call it again to get their acceptor.

mod facts;

pub use facts::{ConnectionTls, server_variables};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The files a TLS listener is made from, as the options name them (absolute paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--ssl-certificate-file` (or `STUB.crt` of `--ssl-certificate`).
    pub certificate: PathBuf,
    /// `--ssl-certificate-key-file` (or `STUB.key`).
    pub key: PathBuf,
    /// `--ssl-certificate-chain-file`: intermediates sent after the certificate.
    pub chain: Option<PathBuf>,
    /// `--ssl-ca-certificate-file`: the authorities client certificates must come from.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS listener cannot be made; each names the option and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--{option} '{path}': cannot read it: {reason}")]
    Unreadable {
        option: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--{option} '{path}' holds no PEM certificate")]
    NoCertificate { option: &'static str, path: PathBuf },
    #[error(
        "--{option} '{path}' holds no private key (PEM: PKCS#8, PKCS#1 or SEC1; an encrypted key is not supported)"
    )]
    NoKey { option: &'static str, path: PathBuf },
    #[error("--{option} '{path}': the key does not fit the certificate: {reason}")]
    KeyMismatch {
        option: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--{option} '{path}': not a usable certificate authority: {reason}")]
    BadAuthority {
        option: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// A TLS listener's configuration, and the server's certificate (for the
/// `SSL_SERVER_*` variables).
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certificate: CertificateDer<'static>,
}

/// A rustls configuration for `files`: the certificate and its chain, the key, TLS 1.2
/// and 1.3 only; with a client CA file, client certificates are asked for but not
/// required at the handshake (the front end refuses requests below `--ssl-verify-client`
/// paths that came without one), and a certificate that does not verify ends the
/// handshake. ALPN offers `h2` before `http/1.1` when `http2` (`--http2`), else
/// `http/1.1` alone.
pub fn load(files: &TlsFiles, http2: bool) -> Result<ServerTls, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certificates = read_certificates("ssl-certificate-file", &files.certificate)?;
    let certificate = certificates[0].clone();
    if let Some(chain) = &files.chain {
        certificates.extend(read_certificates("ssl-certificate-chain-file", chain)?);
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| match error {
        rustls_pki_types::pem::Error::Io(error) => TlsError::Unreadable {
            option: "ssl-certificate-key-file",
            path: files.key.clone(),
            reason: error.to_string(),
        },
        _ => TlsError::NoKey {
            option: "ssl-certificate-key-file",
            path: files.key.clone(),
        },
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::KeyMismatch {
            option: "ssl-certificate-file",
            path: files.certificate.clone(),
            reason: error.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let bad = |reason: String| TlsError::BadAuthority {
                option: "ssl-ca-certificate-file",
                path: path.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates("ssl-ca-certificate-file", path)? {
                roots
                    .add(certificate)
                    .map_err(|error| bad(error.to_string()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|error| bad(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(|error| TlsError::KeyMismatch {
            option: "ssl-certificate-key-file",
            path: files.key.clone(),
            reason: error.to_string(),
        })?;
    // A client that offers ALPN learns at the handshake which protocol the connection speaks.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(ServerTls {
        config: Arc::new(config),
        certificate,
    })
}

fn read_certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |reason: String| TlsError::Unreadable {
        option,
        path: path.to_owned(),
        reason,
    };
    // Read first, so that a missing file says so rather than "no certificate"; std's
    // error, as the message names the option and the path itself.
    #[allow(clippy::disallowed_methods)]
    let text = std::fs::read(path).map_err(|error| unreadable(error.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            option,
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

//! What a finished TLS handshake tells a request: whether a client certificate was
//! verified, and the `SSL_*` variables of `--ssl-environment`, named as `mod_ssl`'s
//! `SSLOptions +StdEnvVars` names them (the list is in docs/tls.md).

use rustls::{CipherSuite, ServerConnection};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The TLS facts of one connection, worked out once after its handshake.
#[derive(Debug, Default)]
pub struct ConnectionTls {
    /// The client presented a certificate that chains to `--ssl-ca-certificate-file`
    /// (rustls ends the handshake for one that does not).
    pub client_verified: bool,
    /// `SSL_*` variables for the environ; empty unless `--ssl-environment`.
    pub variables: Vec<(String, String)>,
}

impl ConnectionTls {
    /// Reads `connection` after its handshake; `server` holds the `SSL_SERVER_*`
    /// variables of the listener's certificate, added when `environment` is on.
    pub fn new(
        connection: &ServerConnection,
        environment: bool,
        server: &[(String, String)],
    ) -> Self {
        let peer = connection.peer_certificates().and_then(<[_]>::first);
        let client_verified = peer.is_some();
        if !environment {
            return Self {
                client_verified,
                variables: Vec::new(),
            };
        }
        let mut variables: Vec<(String, String)> = Vec::with_capacity(32);
        let protocol = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            _ => "TLSv1.2",
        };
        variables.push(("SSL_PROTOCOL".to_owned(), protocol.to_owned()));
        if let Some(suite) = connection.negotiated_cipher_suite() {
            let (name, bits) = openssl_cipher(suite.suite());
            variables.push(("SSL_CIPHER".to_owned(), name.to_owned()));
            variables.push(("SSL_CIPHER_USEKEYSIZE".to_owned(), bits.to_string()));
            variables.push(("SSL_CIPHER_ALGKEYSIZE".to_owned(), bits.to_string()));
        }
        let resumed = matches!(
            connection.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let fixed = [
            ("SSL_CIPHER_EXPORT", "false"),
            (
                "SSL_SESSION_RESUMED",
                if resumed { "Resumed" } else { "Initial" },
            ),
            ("SSL_SECURE_RENEG", "false"),
            ("SSL_COMPRESS_METHOD", "NULL"),
            (
                "SSL_VERSION_INTERFACE",
                concat!("ferrule/", env!("CARGO_PKG_VERSION")),
            ),
            ("SSL_VERSION_LIBRARY", "rustls"),
            (
                "SSL_CLIENT_VERIFY",
                if client_verified { "SUCCESS" } else { "NONE" },
            ),
        ];
        variables.extend(
            fixed
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        if let Some(name) = connection.server_name() {
            variables.push(("SSL_TLS_SNI".to_owned(), name.to_owned()));
        }
        if let Some(certificate) = peer {
            variables.extend(certificate_variables("SSL_CLIENT", certificate));
        }
        variables.extend(server.iter().cloned());
        Self {
            client_verified,
            variables,
        }
    }
}

/// The `SSL_SERVER_*` variables of the server's own certificate (worked out once per
/// listener).
pub fn server_variables(certificate: &CertificateDer<'_>) -> Vec<(String, String)> {
    certificate_variables("SSL_SERVER", certificate)
}

/// The `PREFIX_*` variables of one certificate: version, serial, names, validity.
fn certificate_variables(prefix: &str, certificate: &CertificateDer<'_>) -> Vec<(String, String)> {
    let Ok((_, parsed)) = X509Certificate::from_der(certificate.as_ref()) else {
        return Vec::new();
    };
    let mut variables: Vec<(String, String)> = Vec::new();
    variables.push((
        format!("{prefix}_M_VERSION"),
        (parsed.version().0 + 1).to_string(),
    ));
    // As OpenSSL prints the number: whole bytes, without the DER sign byte.
    let raw = parsed.raw_serial();
    let significant = raw
        .iter()
        .position(|byte| *byte != 0)
        .map_or(&raw[raw.len().saturating_sub(1)..], |start| &raw[start..]);
    let serial: String = significant
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    variables.push((format!("{prefix}_M_SERIAL"), serial));
    for (part, name) in [("S", parsed.subject()), ("I", parsed.issuer())] {
        variables.push((format!("{prefix}_{part}_DN"), distinguished_name(name)));
        for (attribute, value) in attributes(name) {
            let key = format!("{prefix}_{part}_DN_{attribute}");
            // A repeated attribute: mod_ssl's plain name is the first one.
            if !variables.iter().any(|(existing, _)| *existing == key) {
                variables.push((key, value));
            }
        }
    }
    let validity = parsed.validity();
    let not_after = validity.not_after.timestamp();
    variables.push((
        format!("{prefix}_V_START"),
        asn1_date(validity.not_before.timestamp()),
    ));
    variables.push((format!("{prefix}_V_END"), asn1_date(not_after)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    variables.push((
        format!("{prefix}_V_REMAIN"),
        ((not_after - now).max(0) / 86_400).to_string(),
    ));
    variables
}

/// The attributes of a name in certificate order, by OpenSSL's short names (CN, O, OU,
/// C, ST, L, emailAddress).
fn attributes(name: &X509Name<'_>) -> Vec<(String, String)> {
    let registry = x509_parser::objects::oid_registry();
    name.iter_rdn()
        .flat_map(x509_parser::prelude::RelativeDistinguishedName::iter)
        .filter_map(|attribute| {
            let short = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                .map_or_else(|_| attribute.attr_type().to_id_string(), ToOwned::to_owned);
            let value = attribute.as_str().ok()?.to_owned();
            Some((short, value))
        })
        .collect()
}

/// A name as RFC 2253 writes it, most specific first (`CN=client,O=Example,C=SE`), as
/// `mod_ssl` 2.4 does; `,`, `+`, `"`, `\\`, `<`, `>`, `;` in values are escaped.
fn distinguished_name(name: &X509Name<'_>) -> String {
    attributes(name)
        .iter()
        .rev()
        .map(|(attribute, value)| {
            let mut escaped = String::with_capacity(value.len());
            for character in value.chars() {
                if matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                    escaped.push('\\');
                }
                escaped.push(character);
            }
            format!("{attribute}={escaped}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A time as OpenSSL prints certificate dates: `Dec  3 04:00:00 2026 GMT`.
fn asn1_date(timestamp: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = timestamp.div_euclid(86_400);
    let seconds = timestamp.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{} {day:>2} {:02}:{:02}:{:02} {year} GMT",
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
    )
}

/// OpenSSL's name of a cipher suite (what `mod_ssl`'s `SSL_CIPHER` holds) and its key
/// size in bits.
fn openssl_cipher(suite: CipherSuite) -> (&'static str, u32) {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => {
            ("ECDHE-ECDSA-AES128-GCM-SHA256", 128)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => {
            ("ECDHE-ECDSA-AES256-GCM-SHA384", 256)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-ECDSA-CHACHA20-POLY1305", 256)
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-RSA-CHACHA20-POLY1305", 256)
        }
        _ => ("UNKNOWN", 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_openssl_prints_them() {
        assert_eq!(asn1_date(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(asn1_date(1_796_270_400), "Dec  3 04:00:00 2026 GMT");
        assert_eq!(asn1_date(951_782_400), "Feb 29 00:00:00 2000 GMT");
    }
}

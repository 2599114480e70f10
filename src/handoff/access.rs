//! What the front end leaves to the Python side of access control: the credentials it
//! parsed and the challenge to answer with when the scripts refuse them. The front end
//! parses and checks everything that needs no Python (the Authorization header, Digest
//! nonces, their counts and URI); the Python side calls the scripts (`wsgi/access.rs`).

/// The access-control work of one request, sent with it whenever a host access or an
/// authentication script is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessCheck {
    /// What the client's Authorization header said; `None` when it said nothing usable
    /// for the configured scheme (the Python side then answers 401 once the host access
    /// script, if any, let the client through).
    pub credentials: Option<Credentials>,
    /// The `WWW-Authenticate` value of a 401 (for Digest, with a nonce made for it);
    /// empty when no authentication script is configured.
    pub challenge: String,
}

/// Credentials as the client sent them, decoded (latin-1, as the environ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `check_password(environ, user, password)` decides.
    Basic { user: String, password: String },
    /// `get_realm_hash(environ, user, realm)` gives HA1; the response is right when
    /// `MD5(HA1 + response_tail)` is `response` (`auth::digest::expected_response`).
    Digest {
        user: String,
        realm: String,
        /// `:nonce:nc:cnonce:qop:HA2`, everything of the response after HA1, made by the
        /// front end, which checked the nonce, the count and the URI.
        response_tail: String,
        /// The client's response, lowercase hex.
        response: String,
    },
}

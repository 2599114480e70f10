//! Access control in the front end: the HTTP side of `--auth-user-script`,
//! `--auth-type`, `--auth-group-script` and `--host-access-script`.
//!
//! The scripts are Python, and the daemon-mode front end never runs Python: this module
//! does everything that needs none (reads the Authorization header, Basic and Digest,
//! makes and checks Digest nonces and their counts, answers 400 and 401 itself when no
//! script could change the answer) and hands the rest to the Python side with the request
//! ([`AccessCheck`]), where `wsgi/access.rs` calls the scripts before the application.
//! - `basic`: the Basic token.
//! - `digest`: Digest nonces, answers and the response arithmetic.
//!
//! Never imports PyO3.

mod basic;
pub mod digest;

use std::time::SystemTime;

use crate::cli::{AccessConfig, AuthScheme};
use crate::handoff::{self, AccessCheck, Credentials};

/// Why an Authorization header cannot be read: the client gets 400 with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(&'static str);

/// The front end's side of access control, built once per front end.
pub struct Gate {
    scheme: Option<Scheme>,
    /// A host access script decides before authentication, so a request without
    /// credentials still goes to the Python side when there is one.
    host_access_script: bool,
}

enum Scheme {
    Basic {
        /// `Basic realm="host:port"`: the same for every 401.
        challenge: String,
    },
    Digest {
        realm: String,
        nonces: digest::Nonces,
    },
}

impl Gate {
    /// The gate `access` asks for; `None` when no script is configured (nothing to do).
    pub fn new(access: &AccessConfig) -> Option<Self> {
        if !access.is_enabled() {
            return None;
        }
        let scheme = access.user_script.as_ref().map(|user| match user.scheme {
            AuthScheme::Basic => Scheme::Basic {
                challenge: format!("Basic realm=\"{}\"", quote(&user.realm)),
            },
            AuthScheme::Digest => Scheme::Digest {
                realm: user.realm.clone(),
                nonces: digest::Nonces::new(user.nonce_lifetime),
            },
        });
        Some(Self {
            scheme,
            host_access_script: access.host_access_script.is_some(),
        })
    }
}

/// What the front end's access-control step decided.
pub enum Verdict {
    /// On to the backend, with the work left to the Python side, if any.
    Continue(Option<AccessCheck>),
    /// The answer is already known.
    Answer(handoff::Response),
}

/// The front end's access-control step, after the request checks: nothing to do when
/// no script is configured; the check that goes with the request when the Python side
/// must decide; an answer when it is already known (a malformed header: 400; no usable
/// credentials and no host script: 401; a stale or replayed Digest answer: 401 with a
/// new challenge).
pub fn check(
    gate: Option<&Gate>,
    method: &http::Method,
    target: &[u8],
    headers: &http::HeaderMap,
) -> Verdict {
    match gate.map(|gate| gate.check(method, target, headers)) {
        None => Verdict::Continue(None),
        Some(Ok(check)) => Verdict::Continue(Some(check)),
        Some(Err(response)) => Verdict::Answer(*response),
    }
}

impl Gate {
    fn check(
        &self,
        method: &http::Method,
        target: &[u8],
        headers: &http::HeaderMap,
    ) -> Result<AccessCheck, Box<handoff::Response>> {
        let Some(scheme) = &self.scheme else {
            return Ok(AccessCheck {
                credentials: None,
                challenge: String::new(),
            });
        };
        let now = SystemTime::now();
        let challenge = || match scheme {
            Scheme::Basic { challenge } => challenge.clone(),
            Scheme::Digest { realm, nonces } => digest::challenge(realm, &nonces.issue(now), false),
        };
        let mut authorizations = headers.get_all(http::header::AUTHORIZATION).iter();
        let authorization = authorizations.next();
        if authorizations.next().is_some() {
            return Err(Box::new(bad_request(Malformed(
                "the request has several Authorization headers",
            ))));
        }
        // `scheme-name SP credentials`; the scheme name is case-insensitive (RFC 9110 11.1).
        let sent = authorization.and_then(|value| {
            let text = value.to_str().ok()?.trim();
            let (name, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
            Some((name.to_owned(), rest.trim().to_owned()))
        });
        let credentials = match (scheme, sent) {
            (Scheme::Basic { .. }, Some((name, token))) if name.eq_ignore_ascii_case("basic") => {
                let (user, password) =
                    basic::parse(&token).map_err(|malformed| Box::new(bad_request(malformed)))?;
                Some(Credentials::Basic { user, password })
            }
            (Scheme::Digest { realm, nonces }, Some((name, parameters)))
                if name.eq_ignore_ascii_case("digest") =>
            {
                match digest::check(nonces, realm, &parameters, method, target, now) {
                    Ok(credentials) => Some(credentials),
                    Err(digest::Refusal::BadRequest(malformed)) => {
                        return Err(Box::new(bad_request(malformed)));
                    }
                    Err(digest::Refusal::Challenge { stale }) => {
                        return Err(Box::new(unauthorized(&digest::challenge(
                            realm,
                            &nonces.issue(now),
                            stale,
                        ))));
                    }
                }
            }
            // Nothing, or another scheme: the client is asked to log in.
            _ => None,
        };
        if credentials.is_none() && !self.host_access_script {
            return Err(Box::new(unauthorized(&challenge())));
        }
        Ok(AccessCheck {
            credentials,
            challenge: challenge(),
        })
    }
}

/// 401 with the challenge, as Apache words it.
pub fn unauthorized(challenge: &str) -> handoff::Response {
    let mut response = handoff::error_response(
        http::StatusCode::UNAUTHORIZED,
        "This server could not verify that you are authorized to access the document \
         requested: either you supplied the wrong credentials (such as a bad password), or \
         your browser does not understand how to supply the credentials required.",
    );
    if let Ok(value) = http::HeaderValue::from_str(challenge) {
        response
            .headers
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

/// 403: the host or the user is not allowed.
pub fn forbidden() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::FORBIDDEN,
        "You do not have permission to access this resource.",
    )
}

fn bad_request(malformed: Malformed) -> handoff::Response {
    handoff::error_response(
        http::StatusCode::BAD_REQUEST,
        &format!("The Authorization header cannot be read: {malformed}."),
    )
}

/// A realm inside a quoted-string.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

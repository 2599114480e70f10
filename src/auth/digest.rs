//! The Digest scheme (RFC 7616, with RFC 2617's MD5 and `qop=auth`): the challenge's
//! nonces, the checks of a client's answer that need no password (nonce, count, URI), and
//! the response computed from the HA1 a script gives.
//!
//! A nonce is `time, pid, serial, MAC` in hex: the MAC (MD5 over a random secret of this
//! process and the rest) shows that this process made it, the time when, so nothing is
//! stored per challenge. A nonce enters the count table only once a client used it; the
//! table forgets nonces once they expire, and is bounded (`MAX_NONCES_IN_USE`: past it
//! the oldest second's nonces are forgotten and answered as stale from then on). A nonce made by another process (another
//! embedded-mode process, or before a restart) is answered as stale: the client retries
//! with one of ours, and no process ever accepts a count another process already saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use md5::{Digest as _, Md5};

use super::Malformed;
use crate::handoff::Credentials;

/// Hex digits of each part of a nonce: seconds, pid, serial, MAC.
const NONCE_LENGTH: usize = 16 + 8 + 16 + 32;
/// Nonces whose counts are kept at most. Anyone may get a nonce and use it once, so the
/// table must be bounded: past this, the nonces made in the oldest second are forgotten,
/// and a forgotten nonce is answered as stale (its client retries with a new one) rather
/// than accepted with any count. About 12 MB at most.
const MAX_NONCES_IN_USE: usize = 100_000;

/// This process's Digest state: the secret its nonces are signed with and the counts
/// clients used them with.
pub(super) struct Nonces {
    secret: [u8; 16],
    pid: u32,
    serial: AtomicU64,
    lifetime: Duration,
    counts: Mutex<Counts>,
}

struct Counts {
    /// The second a nonce was made → its nonces → the highest count used with each: the
    /// oldest second first, so that expiry and eviction take whole seconds off the front.
    by_second: BTreeMap<u64, HashMap<String, u64>>,
    /// Nonces held, over every second.
    len: usize,
    /// Nonces made at or before this second were forgotten to bound the table.
    forgotten_until: Option<u64>,
}

/// What a nonce is worth now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NonceState {
    Fresh,
    /// Ours but expired, or another process's: the client may retry with a new one.
    Stale,
    /// Not made by this server.
    Invalid,
}

/// Why a Digest answer is refused before any script runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A 400: the header is broken or names another resource.
    BadRequest(Malformed),
    /// A 401 with a new challenge (`stale` says whether only the nonce was the problem).
    Challenge { stale: bool },
}

impl Nonces {
    pub(super) fn new(lifetime: Duration) -> Self {
        Self {
            secret: random_secret(),
            pid: std::process::id(),
            serial: AtomicU64::new(0),
            lifetime,
            counts: Mutex::new(Counts {
                by_second: BTreeMap::new(),
                len: 0,
                forgotten_until: None,
            }),
        }
    }

    /// A new nonce.
    pub(super) fn issue(&self, now: SystemTime) -> String {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let body = format!("{:016x}{:08x}{serial:016x}", seconds(now), self.pid);
        let mac = self.mac(&body);
        body + &mac
    }

    pub(super) fn state(&self, nonce: &str, now: SystemTime) -> NonceState {
        if nonce.len() != NONCE_LENGTH || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return NonceState::Invalid;
        }
        let (body, mac) = nonce.split_at(NONCE_LENGTH - 32);
        if u32::from_str_radix(&body[16..24], 16) != Ok(self.pid) {
            return NonceState::Stale;
        }
        if !constant_time_eq(self.mac(body).as_bytes(), mac.as_bytes()) {
            return NonceState::Invalid;
        }
        let made = u64::from_str_radix(&body[..16], 16).unwrap_or(0);
        if seconds(now) >= made.saturating_add(self.lifetime.as_secs()) {
            return NonceState::Stale;
        }
        NonceState::Fresh
    }

    /// Records `count` for a fresh `nonce`: `Fresh` when it is above every count used
    /// with that nonce before, `Invalid` when not (a replayed or reordered answer),
    /// `Stale` when the nonce was forgotten to bound the table.
    fn use_count(&self, nonce: &str, count: u64, now: SystemTime) -> NonceState {
        let now = seconds(now);
        let made = u64::from_str_radix(&nonce[..16], 16).unwrap_or(0);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.forget_expired(now, self.lifetime.as_secs());
        if let Some(last) = counts
            .by_second
            .get_mut(&made)
            .and_then(|nonces| nonces.get_mut(nonce))
        {
            if count <= *last {
                return NonceState::Invalid;
            }
            *last = count;
            return NonceState::Fresh;
        }
        if counts.forgotten_until.is_some_and(|until| made <= until) {
            return NonceState::Stale;
        }
        while counts.len >= MAX_NONCES_IN_USE {
            counts.forget_oldest_second();
        }
        if counts.forgotten_until.is_some_and(|until| made <= until) {
            return NonceState::Stale;
        }
        counts
            .by_second
            .entry(made)
            .or_default()
            .insert(nonce.to_owned(), count);
        counts.len += 1;
        NonceState::Fresh
    }

    fn mac(&self, body: &str) -> String {
        let mut hasher = Md5::new();
        hasher.update(self.secret);
        hasher.update(body.as_bytes());
        hex(&hasher.finalize())
    }
}

/// The challenge of a 401: `Digest realm=.., qop="auth", nonce=.., algorithm=MD5`.
pub(super) fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{}\", qop=\"auth\", nonce=\"{nonce}\", algorithm=MD5{stale}",
        realm.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// Checks a client's Digest answer (the parameters after `Digest `) as far as it can
/// without the password, and gives the credentials the script's HA1 completes.
pub(super) fn check(
    nonces: &Nonces,
    realm: &str,
    parameters: &str,
    method: &http::Method,
    target: &[u8],
    now: SystemTime,
) -> Result<Credentials, Refusal> {
    let fields = parse_parameters(parameters).map_err(Refusal::BadRequest)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let required = |name: &'static str| {
        field(name).ok_or(Refusal::BadRequest(Malformed(
            "the Digest credentials miss a field (username, realm, nonce, uri, response, qop, nc or cnonce)",
        )))
    };
    let user = required("username")?;
    let client_realm = required("realm")?;
    let nonce = required("nonce")?;
    let uri = required("uri")?;
    let response = required("response")?;
    let qop = required("qop")?;
    let count_text = required("nc")?;
    let cnonce = required("cnonce")?;
    // RFC 7616 3.4.6: the URI must name what is asked for (Apache: 400 otherwise).
    if uri.as_bytes() != target {
        return Err(Refusal::BadRequest(Malformed(
            "the Digest uri is not the request target",
        )));
    }
    let count = u64::from_str_radix(count_text, 16)
        .ok()
        .filter(|_| count_text.len() == 8)
        .ok_or(Refusal::BadRequest(Malformed(
            "the Digest nc is not 8 hex digits",
        )))?;
    let md5_algorithm = field("algorithm").is_none_or(|name| name.eq_ignore_ascii_case("MD5"));
    if client_realm != realm || !qop.eq_ignore_ascii_case("auth") || !md5_algorithm {
        return Err(Refusal::Challenge { stale: false });
    }
    match nonces.state(nonce, now) {
        NonceState::Fresh => {}
        NonceState::Stale => return Err(Refusal::Challenge { stale: true }),
        NonceState::Invalid => return Err(Refusal::Challenge { stale: false }),
    }
    // Taken before the password is known: an answer seen once is never good again, even
    // while its first use is still being checked.
    match nonces.use_count(nonce, count, now) {
        NonceState::Fresh => {}
        NonceState::Stale => return Err(Refusal::Challenge { stale: true }),
        NonceState::Invalid => return Err(Refusal::Challenge { stale: false }),
    }
    let ha2 = md5_hex(format!("{method}:{uri}").as_bytes());
    Ok(Credentials::Digest {
        user: user.to_owned(),
        realm: realm.to_owned(),
        response_tail: format!(":{nonce}:{count_text}:{cnonce}:auth:{ha2}"),
        response: response.to_ascii_lowercase(),
    })
}

/// The response a client that knows the password sends: `MD5(HA1 + response_tail)`.
pub fn expected_response(ha1: &str, response_tail: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(ha1.to_ascii_lowercase().as_bytes());
    hasher.update(response_tail.as_bytes());
    hex(&hasher.finalize())
}

/// Compares without stopping at the first difference, so timing tells nothing.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// `name=token` and `name="quoted \"string\""` pairs separated by commas (RFC 7235 2.1).
fn parse_parameters(text: &str) -> Result<Vec<(String, String)>, Malformed> {
    let mut fields = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let equals = rest
            .find('=')
            .ok_or(Malformed("a Digest parameter has no '='"))?;
        let name = rest[..equals].trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Malformed("a Digest parameter name is not a token"));
        }
        rest = rest[equals + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut characters = quoted.char_indices();
            let mut end = None;
            while let Some((index, character)) = characters.next() {
                match character {
                    '\\' => value.extend(characters.next().map(|(_, escaped)| escaped)),
                    '"' => {
                        end = Some(index + 1);
                        break;
                    }
                    other => value.push(other),
                }
            }
            let end = end.ok_or(Malformed("a Digest parameter's quotes are not closed"))?;
            rest = &quoted[end..];
            value
        } else {
            let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
            let value = rest[..end].to_owned();
            rest = &rest[end..];
            value
        };
        fields.push((name.to_owned(), value));
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(Malformed("Digest parameters are not separated by commas")),
        }
    }
    Ok(fields)
}

impl Counts {
    /// Drops the seconds whose nonces expired: no count of theirs matters any more.
    fn forget_expired(&mut self, now: u64, lifetime: u64) {
        while let Some(entry) = self.by_second.first_entry() {
            if now < entry.key().saturating_add(lifetime) {
                break;
            }
            self.len -= entry.remove().len();
        }
    }

    fn forget_oldest_second(&mut self) {
        if let Some((second, nonces)) = self.by_second.pop_first() {
            self.len -= nonces.len();
            self.forgotten_until = Some(
                self.forgotten_until
                    .map_or(second, |until| until.max(second)),
            );
        }
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// 16 bytes from the kernel's random source, read once per process when the front end
/// is built (never on the reactor's request path). Without it, the time and pid still
/// make nonces unique; they only become guessable, which the log says.
fn random_secret() -> [u8; 16] {
    let mut secret = [0u8; 16];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that much.
    let filled = unsafe { libc::getrandom(secret.as_mut_ptr().cast(), secret.len(), 0) };
    if usize::try_from(filled).ok() != Some(secret.len()) {
        crate::logs::error_log::log(
            crate::logs::Level::Warn,
            "auth_digest",
            "no random bytes for the Digest nonce secret; nonces are signed with the time only",
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        secret.copy_from_slice(&now.to_le_bytes());
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn answer(nonce: &str, uri: &str, count: &str) -> String {
        format!(
            "username=\"spy\", realm=\"r\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, \
             nc={count}, cnonce=\"c\", response=\"ABC\", algorithm=MD5"
        )
    }

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 3.5: Mufasa, "Circle Of Life", GET /dir/index.html.
        let ha1 = md5_hex(b"Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex(b"GET:/dir/index.html");
        let tail = format!(":dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}");
        assert_eq!(
            expected_response(&ha1, &tail),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn a_nonce_is_fresh_then_stale_and_a_changed_one_is_invalid() {
        let nonces = Nonces::new(Duration::from_secs(10));
        let nonce = nonces.issue(at(1000));
        assert_eq!(nonces.state(&nonce, at(1009)), NonceState::Fresh);
        assert_eq!(nonces.state(&nonce, at(1010)), NonceState::Stale);
        let mut forged = nonce.clone();
        forged.replace_range(
            NONCE_LENGTH - 1..,
            if nonce.ends_with('0') { "1" } else { "0" },
        );
        assert_eq!(nonces.state(&forged, at(1001)), NonceState::Invalid);
        // A later time with the old MAC is not ours either.
        let later = format!("{:016x}{}", 2000, &nonce[16..]);
        assert_eq!(nonces.state(&later, at(1001)), NonceState::Invalid);
        assert_eq!(nonces.state("short", at(1001)), NonceState::Invalid);
    }

    #[test]
    fn another_process_nonce_is_stale() {
        let nonces = Nonces::new(Duration::from_secs(10));
        let nonce = nonces.issue(at(1000));
        let other_pid = format!("{}{:08x}{}", &nonce[..16], nonces.pid ^ 1, &nonce[24..]);
        assert_eq!(nonces.state(&other_pid, at(1001)), NonceState::Stale);
    }

    #[test]
    fn a_count_is_good_once_and_only_upwards() {
        let nonces = Nonces::new(Duration::from_secs(10));
        let nonce = nonces.issue(at(1000));
        let get = http::Method::GET;
        let first = check(
            &nonces,
            "r",
            &answer(&nonce, "/a", "00000001"),
            &get,
            b"/a",
            at(1001),
        );
        assert!(matches!(first, Ok(Credentials::Digest { ref response, .. }) if response == "abc"));
        let again = check(
            &nonces,
            "r",
            &answer(&nonce, "/a", "00000001"),
            &get,
            b"/a",
            at(1001),
        );
        assert_eq!(again.unwrap_err(), Refusal::Challenge { stale: false });
        let next = check(
            &nonces,
            "r",
            &answer(&nonce, "/a", "00000002"),
            &get,
            b"/a",
            at(1001),
        );
        assert!(next.is_ok());
    }

    #[test]
    fn the_uri_must_be_the_target_and_fields_must_be_there() {
        let nonces = Nonces::new(Duration::from_secs(10));
        let nonce = nonces.issue(at(1000));
        let get = http::Method::GET;
        let elsewhere = check(
            &nonces,
            "r",
            &answer(&nonce, "/b", "00000001"),
            &get,
            b"/a",
            at(1001),
        );
        assert!(matches!(elsewhere, Err(Refusal::BadRequest(_))));
        let missing = check(&nonces, "r", "username=spy", &get, b"/a", at(1001));
        assert!(matches!(missing, Err(Refusal::BadRequest(_))));
        let other_realm = check(
            &nonces,
            "q",
            &answer(&nonce, "/a", "00000001"),
            &get,
            b"/a",
            at(1001),
        );
        assert_eq!(
            other_realm.unwrap_err(),
            Refusal::Challenge { stale: false }
        );
    }

    #[test]
    fn parameters_parse_tokens_and_quoted_strings() {
        let fields = parse_parameters(r#"a=1, b="x, \"y\"",c=z"#).unwrap();
        assert_eq!(
            fields,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x, \"y\"".to_owned()),
                ("c".to_owned(), "z".to_owned()),
            ]
        );
        assert!(parse_parameters("a=\"open").is_err());
        assert!(parse_parameters("novalue").is_err());
        assert!(parse_parameters("a=1 b=2").is_err());
    }

    #[test]
    fn the_count_table_forgets_expired_nonces() {
        let nonces = Nonces::new(Duration::from_secs(10));
        for second in 1000..1005 {
            let nonce = nonces.issue(at(second));
            assert_eq!(nonces.use_count(&nonce, 1, at(second)), NonceState::Fresh);
        }
        let nonce = nonces.issue(at(1012));
        assert_eq!(nonces.use_count(&nonce, 1, at(1012)), NonceState::Fresh);
        let counts = nonces.counts.lock().unwrap();
        assert_eq!(counts.len, 3, "1000-1002 expired at 1012");
        assert_eq!(counts.by_second.len(), 3);
    }

    #[test]
    fn a_full_table_forgets_its_oldest_second_and_calls_those_nonces_stale() {
        let nonces = Nonces::new(Duration::from_secs(3600));
        let old = nonces.issue(at(1000));
        assert_eq!(nonces.use_count(&old, 1, at(1000)), NonceState::Fresh);
        for _ in 1..MAX_NONCES_IN_USE {
            let nonce = nonces.issue(at(1001));
            assert_eq!(nonces.use_count(&nonce, 1, at(1001)), NonceState::Fresh);
        }
        let newest = nonces.issue(at(1002));
        assert_eq!(nonces.use_count(&newest, 1, at(1002)), NonceState::Fresh);
        // The second 1000 went; its nonce is stale now, never good with any count.
        assert_eq!(nonces.use_count(&old, 1, at(1002)), NonceState::Stale);
        assert_eq!(nonces.use_count(&old, 2, at(1002)), NonceState::Stale);
        assert_eq!(nonces.counts.lock().unwrap().len, MAX_NONCES_IN_USE);
    }
}

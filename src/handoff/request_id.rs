//! `mod_wsgi.request_id`: a short id naming one request, unique across the processes of a
//! server, for the environ and the logs (mod_wsgi passes Apache's log id, the one `%L`
//! prints).
//!
//! The front end makes one when it receives a request; in daemon mode it travels with the
//! request head. It is 64 bits written as 11 characters of URL-safe base64, like Apache's.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The id of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// A new id, different from every other this process made and, with overwhelming
    /// likelihood, from those of other processes: a per-process random start plus a
    /// counter, passed through a bijective mixer so that ids do not look sequential.
    pub fn generate() -> Self {
        static START: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // std's RandomState draws its keys from the operating system's random source.
        let start = *START.get_or_init(|| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(mix(start.wrapping_add(count)))
    }

    /// The id as carried between processes.
    pub fn to_bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }
}

/// The splitmix64 finalizer: a bijection on `u64`, so distinct inputs stay distinct.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

impl RequestId {
    /// The id as its 11 characters of URL-safe base64, without the formatting machinery
    /// (the environ writes one per request).
    pub fn text(&self) -> RequestIdText {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // 64 bits in 6-bit groups, most significant first: the last group has 4 bits.
        let mut text = [0_u8; 11];
        for (index, byte) in text.iter_mut().enumerate() {
            let shift = 58_i32 - 6 * i32::try_from(index).unwrap_or(0);
            let group = if shift >= 0 {
                self.0 >> shift
            } else {
                self.0 << -shift
            };
            *byte = ALPHABET[usize::try_from(group & 0x3f).unwrap_or(0)];
        }
        RequestIdText(text)
    }
}

/// A request id's characters, held on the stack.
pub struct RequestIdText([u8; 11]);

impl RequestIdText {
    pub fn as_str(&self) -> &str {
        // Every byte comes from the ASCII alphabet above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.text().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_distinct_and_printable() {
        let first = RequestId::generate();
        let second = RequestId::generate();
        assert_ne!(first, second);
        let text = first.to_string();
        assert_eq!(text.len(), 11);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(RequestId::from_bits(first.to_bits()), first);
    }

    #[test]
    fn every_bit_shows() {
        assert_eq!(RequestId::from_bits(0).to_string(), "AAAAAAAAAAA");
        assert_eq!(RequestId::from_bits(u64::MAX).to_string(), "__________8");
        assert_eq!(RequestId::from_bits(1).to_string(), "AAAAAAAAAAE");
    }
}

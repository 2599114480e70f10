//! The `Date` field of responses (RFC 9110 6.6.1), formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always 29 bytes: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: [0; DATE_LEN] }) };
}

/// Calls `use_date` with the current date as an HTTP date.
pub(super) fn with_current(use_date: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|cached| {
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            } else {
                use_date(text.as_bytes());
                return;
            }
        }
        use_date(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut text = String::new();
        super::with_current(|date| text = String::from_utf8_lossy(date).into_owned());
        let parsed = httpdate::parse_http_date(&text).expect("an HTTP date");
        let off = std::time::SystemTime::now()
            .duration_since(parsed)
            .expect("not in the future");
        assert!(off.as_secs() <= 1, "{text} is {off:?} old");
    }
}

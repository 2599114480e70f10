//! How long a client may take: to send a request head, to send a request body, to come
//! back on an idle keep-alive connection, and to take each piece of the response. Plain
//! data built by `cli` from the options and applied by `frontend`; a leaf both may use.
//!
//! The read timeouts follow Apache's `mod_reqtimeout`, which mod_wsgi-express configures
//! from the same options: a base time, extended by one second for every MIN-RATE bytes
//! received, up to a maximum. Only time spent waiting for the client counts: a body the
//! application is slow to ask for does not run the client's clock.

use std::time::Duration;

/// One of `mod_reqtimeout`'s rules (`header=15-30,MinRate=500`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadTimeout {
    /// Time allowed before any extension.
    pub base: Duration,
    /// The most the extensions may bring it to; `None` for no bound.
    pub max: Option<Duration>,
    /// Bytes that earn one more second; `None` for no extension.
    pub min_rate: Option<u64>,
}

impl ReadTimeout {
    /// The time allowed once `received` bytes came.
    pub fn allowed(&self, received: u64) -> Duration {
        let earned = self.min_rate.map_or(0, |rate| received / rate.max(1));
        let allowed = self.base.saturating_add(Duration::from_secs(earned));
        match self.max {
            Some(max) => allowed.min(max.max(self.base)),
            None => allowed,
        }
    }
}

/// Every client timeout of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    /// `--header-timeout`, `--header-max-timeout`, `--header-min-rate`; `None` when off.
    pub header: Option<ReadTimeout>,
    /// `--body-timeout`, `--body-max-timeout`, `--body-min-rate`; `None` when off.
    pub body: Option<ReadTimeout>,
    /// `--keep-alive-timeout`: how long a connection may stay idle between requests;
    /// `None` turns keep-alive off (every response closes its connection).
    pub keep_alive: Option<Duration>,
    /// `--response-socket-timeout` (or `--socket-timeout`): how long one write of the
    /// response may wait for the client to take bytes; `None` for no limit.
    pub write: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(base: u64, max: Option<u64>, min_rate: Option<u64>) -> ReadTimeout {
        ReadTimeout {
            base: Duration::from_secs(base),
            max: max.map(Duration::from_secs),
            min_rate,
        }
    }

    #[test]
    fn a_second_per_min_rate_bytes_up_to_the_max() {
        let header = rule(15, Some(30), Some(500));
        assert_eq!(header.allowed(0), Duration::from_secs(15));
        assert_eq!(header.allowed(499), Duration::from_secs(15));
        assert_eq!(header.allowed(500), Duration::from_secs(16));
        assert_eq!(header.allowed(5_000), Duration::from_secs(25));
        assert_eq!(header.allowed(1_000_000), Duration::from_secs(30));
        // No max: the body rule of mod_wsgi-express's defaults grows without bound.
        assert_eq!(
            rule(15, None, Some(500)).allowed(1_000_000),
            Duration::from_secs(2_015)
        );
        // No rate: the base alone.
        assert_eq!(
            rule(15, Some(30), None).allowed(1_000_000),
            Duration::from_secs(15)
        );
        // A max below the base does not shorten it.
        assert_eq!(
            rule(15, Some(5), Some(1)).allowed(0),
            Duration::from_secs(15)
        );
    }
}

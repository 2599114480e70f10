//! The byte and call counters of one request's input or output, as mod_wsgi's
//! `request_finished` event reports them (`input_reads`, `input_length`, `input_time`;
//! `output_writes`, `output_length`, `output_time`). Kept only for a request whose
//! events are published: `wsgi.input` and `start_response` hold an `Option` of it,
//! `None` otherwise, so nobody pays for a clock nobody reads.

use std::time::{Duration, Instant};

/// Calls, bytes and the time spent in them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoMeter {
    pub(crate) calls: u64,
    pub(crate) bytes: u64,
    pub(crate) time: Duration,
}

impl IoMeter {
    /// Counts `calls` that moved `bytes` in all, made from `started` to now.
    pub(crate) fn record(&mut self, calls: u64, bytes: usize, started: Instant) {
        self.calls += calls;
        self.bytes += bytes as u64;
        self.time += started.elapsed();
    }
}

/// The clock for a call, read only when `meter` is kept.
pub(crate) fn start(meter: Option<&IoMeter>) -> Option<Instant> {
    meter.map(|_| Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_bytes_and_time() {
        let mut meter = IoMeter::default();
        let started = Instant::now();
        meter.record(1, 5, started);
        meter.record(2, 0, started);
        assert_eq!(meter.calls, 3);
        assert_eq!(meter.bytes, 5);
        assert!(start(None).is_none());
        assert!(start(Some(&meter)).is_some());
    }
}

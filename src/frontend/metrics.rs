//! The server's counters, kept by the front end of each process without Python: requests
//! by method and status class, their latency, bytes received and sent, time spent waiting
//! for an application thread, connections open, and (daemon mode, bumped by the
//! supervisor) daemon processes started, crashed and replaced by cause. `--metrics-path`
//! and `--server-status` (`operations.rs`) draw from them.
//!
//! The request path only adds to relaxed atomics. They are sharded: each thread adds to
//! one of [`SHARDS`] cache-line-aligned shards, so reactors on several cores do not fight
//! over one line; a reader sums the shards.

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Shards of the hot counters; threads take them in turn.
const SHARDS: usize = 16;

/// The methods counted by name; anything else counts as `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the latency histogram's buckets, in seconds (Prometheus's defaults).
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why a daemon process was replaced although it did not crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecycleCause {
    MaximumRequests,
    CpuTimeLimit,
    MemoryLimit,
    RestartInterval,
    InactivityTimeout,
    RequestTimeout,
    CodeChanged,
    Signal,
    Other,
}

impl RecycleCause {
    const ALL: [Self; 9] = [
        Self::MaximumRequests,
        Self::CpuTimeLimit,
        Self::MemoryLimit,
        Self::RestartInterval,
        Self::InactivityTimeout,
        Self::RequestTimeout,
        Self::CodeChanged,
        Self::Signal,
        Self::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::MaximumRequests => "maximum-requests",
            Self::CpuTimeLimit => "cpu-time-limit",
            Self::MemoryLimit => "memory-limit",
            Self::RestartInterval => "restart-interval",
            Self::InactivityTimeout => "inactivity-timeout",
            Self::RequestTimeout => "request-timeout",
            Self::CodeChanged => "code-changed",
            Self::Signal => "signal",
            Self::Other => "other",
        }
    }

    /// The cause a recycle reason names (its log line names the option it reached).
    pub fn from_reason(reason: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|cause| reason.contains(&format!("--{}", cause.label())))
            .unwrap_or(Self::Other)
    }
}

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    /// Requests whose latency fell in each bucket (not cumulative); the last is +Inf.
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_micros: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    queue_wait_micros: AtomicU64,
    queue_waits: AtomicU64,
}

/// The counters of this process.
pub struct Metrics {
    shards: Box<[Shard]>,
    started: Instant,
    started_at: SystemTime,
    connections: AtomicI64,
    process_starts: AtomicU64,
    process_crashes: AtomicU64,
    recycles: [AtomicU64; RecycleCause::ALL.len()],
}

/// The process's counters.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The shard of the calling thread.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        shard.get()
    })
}

/// What one request was, for [`Metrics::request_done`].
#[derive(Clone, Copy, Debug)]
pub struct RequestMeasure {
    method: usize,
    status_class: usize,
    started: Instant,
}

impl RequestMeasure {
    pub fn new(method: &http::Method, status: http::StatusCode, started: Instant) -> Self {
        let name = method.as_str();
        let method = METHODS
            .iter()
            .position(|known| *known == name)
            .unwrap_or(METHODS.len() - 1);
        let status_class = usize::from(status.as_u16() / 100)
            .saturating_sub(1)
            .min(STATUS_CLASSES.len() - 1);
        Self {
            method,
            status_class,
            started,
        }
    }
}

/// The counters at one moment, summed (`Metrics::totals`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Requests by status class, 1xx to 5xx.
    pub by_class: [u64; STATUS_CLASSES.len()],
    /// Requests per latency bucket (not cumulative); the last is past `LATENCY_BOUNDS`.
    pub latency: [u64; LATENCY_BOUNDS.len() + 1],
    pub latency_micros: u64,
    pub process_starts: u64,
    pub process_crashes: u64,
    pub recycles: u64,
}

/// Values the metrics page reads from elsewhere at the time it is drawn.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub busy_threads: usize,
    pub idle_threads: usize,
    pub queue_length: usize,
    /// Time requests waited for a thread and how many waited, when the executor of this
    /// process measures it (embedded mode); `None` takes the front end's own (daemon mode).
    pub queue_wait: Option<(Duration, u64)>,
    /// Daemon processes serving (daemon mode).
    pub processes: Option<usize>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            connections: AtomicI64::new(0),
            process_starts: AtomicU64::new(0),
            process_crashes: AtomicU64::new(0),
            recycles: Default::default(),
        }
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index() % self.shards.len()]
    }

    /// A response is done (its last byte went out, or the client left).
    pub fn request_done(&self, measure: RequestMeasure) {
        let shard = self.shard();
        shard.requests[measure.method][measure.status_class].fetch_add(1, Ordering::Relaxed);
        let elapsed = measure.started.elapsed();
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        shard.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shard
            .latency_micros
            .fetch_add(micros(elapsed), Ordering::Relaxed);
    }

    pub fn received(&self, bytes: usize) {
        self.shard()
            .received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.shard().sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A request waited `waited` for a daemon thread (daemon mode).
    pub fn queue_waited(&self, waited: Duration) {
        let shard = self.shard();
        shard
            .queue_wait_micros
            .fetch_add(micros(waited), Ordering::Relaxed);
        shard.queue_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn process_started(&self) {
        self.process_starts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn process_crashed(&self) {
        self.process_crashes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn process_recycled(&self, cause: RecycleCause) {
        if let Some(index) = RecycleCause::ALL.iter().position(|known| *known == cause) {
            self.recycles[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Seconds since the process started counting.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn sum(&self, field: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| field(shard).load(Ordering::Relaxed))
            .sum()
    }

    /// Requests answered, all methods and statuses.
    pub fn total_requests(&self) -> u64 {
        (0..METHODS.len())
            .flat_map(|method| (0..STATUS_CLASSES.len()).map(move |class| (method, class)))
            .map(|(method, class)| self.sum(|shard| &shard.requests[method][class]))
            .sum()
    }

    pub fn total_sent(&self) -> u64 {
        self.sum(|shard| &shard.sent)
    }

    /// Total latency of the requests answered.
    pub fn total_latency(&self) -> Duration {
        Duration::from_micros(self.sum(|shard| &shard.latency_micros))
    }

    pub fn connections_open(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The counters summed over methods and shards, for the telemetry sampler.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (class, total) in totals.by_class.iter_mut().enumerate() {
            *total = (0..METHODS.len())
                .map(|method| self.sum(|shard| &shard.requests[method][class]))
                .sum();
        }
        totals.requests = totals.by_class.iter().sum();
        for (bucket, total) in totals.latency.iter_mut().enumerate() {
            *total = self.sum(|shard| &shard.latency[bucket]);
        }
        totals.latency_micros = self.sum(|shard| &shard.latency_micros);
        totals.process_starts = self.process_starts.load(Ordering::Relaxed);
        totals.process_crashes = self.process_crashes.load(Ordering::Relaxed);
        totals.recycles = self
            .recycles
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum();
        totals
    }

    /// The counters in Prometheus's text exposition format (version 0.0.4).
    pub fn render(&self, gauges: &Gauges) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(8 * 1024);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        // A family of one sample without labels.
        let single = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn std::fmt::Display| {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        };
        family(
            &mut out,
            "ferrule_requests_total",
            "counter",
            "Requests answered, by method and status class.",
        );
        for (method_index, method) in METHODS.iter().enumerate() {
            for (class_index, class) in STATUS_CLASSES.iter().enumerate() {
                let count = self.sum(|shard| &shard.requests[method_index][class_index]);
                let _ = writeln!(
                    out,
                    "ferrule_requests_total{{method=\"{method}\",status=\"{class}\"}} {count}"
                );
            }
        }
        family(
            &mut out,
            "ferrule_request_duration_seconds",
            "histogram",
            "Time from a request's head to its response's last byte.",
        );
        let mut cumulative = 0;
        for (index, bound) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += self.sum(|shard| &shard.latency[index]);
            let _ = writeln!(
                out,
                "ferrule_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.sum(|shard| &shard.latency[LATENCY_BOUNDS.len()]);
        let _ = writeln!(
            out,
            "ferrule_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             ferrule_request_duration_seconds_sum {}\n\
             ferrule_request_duration_seconds_count {cumulative}",
            self.total_latency().as_secs_f64()
        );
        family(
            &mut out,
            "ferrule_received_bytes_total",
            "counter",
            "Bytes received from clients (request heads and bodies).",
        );
        let _ = writeln!(
            out,
            "ferrule_received_bytes_total {}",
            self.sum(|shard| &shard.received)
        );
        family(
            &mut out,
            "ferrule_sent_bytes_total",
            "counter",
            "Bytes sent to clients (response heads and bodies).",
        );
        let _ = writeln!(out, "ferrule_sent_bytes_total {}", self.total_sent());
        family(
            &mut out,
            "ferrule_threads",
            "gauge",
            "Application threads, by state.",
        );
        let _ = writeln!(
            out,
            "ferrule_threads{{state=\"busy\"}} {}\nferrule_threads{{state=\"idle\"}} {}",
            gauges.busy_threads, gauges.idle_threads
        );
        single(
            &mut out,
            "ferrule_queue_length",
            "gauge",
            "Requests waiting for an application thread.",
            &gauges.queue_length,
        );
        let (waited, waits) = gauges.queue_wait.unwrap_or_else(|| {
            (
                Duration::from_micros(self.sum(|shard| &shard.queue_wait_micros)),
                self.sum(|shard| &shard.queue_waits),
            )
        });
        family(
            &mut out,
            "ferrule_queue_wait_seconds",
            "summary",
            "Time requests waited for an application thread.",
        );
        let _ = writeln!(
            out,
            "ferrule_queue_wait_seconds_sum {}\nferrule_queue_wait_seconds_count {waits}",
            waited.as_secs_f64()
        );
        single(
            &mut out,
            "ferrule_connections_open",
            "gauge",
            "Client connections open.",
            &self.connections_open(),
        );
        if let Some(processes) = gauges.processes {
            single(
                &mut out,
                "ferrule_daemon_processes",
                "gauge",
                "Daemon processes that loaded the application and take requests.",
                &processes,
            );
            single(
                &mut out,
                "ferrule_daemon_starts_total",
                "counter",
                "Daemon processes started.",
                &self.process_starts.load(Ordering::Relaxed),
            );
            single(
                &mut out,
                "ferrule_daemon_crashes_total",
                "counter",
                "Daemon processes that ended without being asked to.",
                &self.process_crashes.load(Ordering::Relaxed),
            );
            family(
                &mut out,
                "ferrule_daemon_recycles_total",
                "counter",
                "Daemon processes replaced although they did not crash, by cause.",
            );
            for (index, cause) in RecycleCause::ALL.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ferrule_daemon_recycles_total{{cause=\"{}\"}} {}",
                    cause.label(),
                    self.recycles[index].load(Ordering::Relaxed)
                );
            }
        }
        family(
            &mut out,
            "ferrule_start_time_seconds",
            "gauge",
            "When this process started counting, in seconds since the Unix epoch.",
        );
        let _ = writeln!(
            out,
            "ferrule_start_time_seconds {}",
            self.started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64())
        );
        out
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_class_and_latency() {
        let metrics = Metrics::new();
        let now = Instant::now();
        metrics.request_done(RequestMeasure::new(
            &http::Method::GET,
            http::StatusCode::OK,
            now,
        ));
        metrics.request_done(RequestMeasure::new(
            &http::Method::from_bytes(b"PROPFIND").unwrap(),
            http::StatusCode::NOT_FOUND,
            now.checked_sub(Duration::from_secs(20)).unwrap(),
        ));
        let text = metrics.render(&Gauges::default());
        assert!(text.contains("ferrule_requests_total{method=\"GET\",status=\"2xx\"} 1\n"));
        assert!(text.contains("ferrule_requests_total{method=\"other\",status=\"4xx\"} 1\n"));
        assert!(text.contains("ferrule_request_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("ferrule_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("ferrule_request_duration_seconds_count 2\n"));
        assert_eq!(metrics.total_requests(), 2);
        assert!(!text.contains("ferrule_daemon_starts_total"));
    }

    #[test]
    fn recycle_causes_come_from_the_option_named() {
        assert_eq!(
            RecycleCause::from_reason("reached --maximum-requests (5)"),
            RecycleCause::MaximumRequests
        );
        assert_eq!(
            RecycleCause::from_reason("has run for --restart-interval (3 s)"),
            RecycleCause::RestartInterval
        );
        assert_eq!(RecycleCause::from_reason("whatever"), RecycleCause::Other);
    }
}

//! `--enable-telemetry`: a live dashboard on `127.0.0.1:--telemetry-ui-port`, served by
//! the daemon-mode front end without Python.
//!
//! Every `--telemetry-interval` a sampler (on tokio's blocking pool: it reads `/proc`)
//! turns the front end's counters (`metrics.rs`) and the daemon pool into one sample:
//! request rate, status classes, latency percentiles, busy and idle threads, queue, and
//! memory and CPU per process; the last [`HISTORY`] samples are kept. The port answers
//! `/` with one HTML page (`telemetry.html`: inline script drawing SVG, no build step,
//! nothing fetched from elsewhere) and `/telemetry.json` with the samples, the server's
//! totals and the slowest of the last requests. Each connection carries one request and
//! is closed.

// Counters and clock ticks become rates as f64: they stay far below 2^52.
#![allow(clippy::cast_precision_loss)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::DaemonPool;
use super::metrics::{self, LATENCY_BOUNDS, Totals};
use crate::shutdown::Shutdown;

/// Samples kept: five minutes at the default interval of one second.
pub const HISTORY: usize = 300;
/// `metrics::LATENCY_BOUNDS` in milliseconds, the values percentiles are given in.
const LATENCY_BOUNDS_MS: [u64; LATENCY_BOUNDS.len()] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
/// Ended requests the page lists, the slowest first.
const SLOWEST: usize = 10;
/// The longest request head read, and how long a client may take to send it.
const HEAD_LIMIT: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("telemetry.html");

/// The dashboard of one front end: what the sampler keeps and the port serves.
pub struct Dashboard {
    pool: Arc<DaemonPool>,
    interval: Duration,
    started_at: SystemTime,
    /// The samples, oldest first, each already written as JSON.
    history: Mutex<VecDeque<String>>,
    sampler: Mutex<SamplerState>,
}

/// What a sample is measured against: the previous one.
#[derive(Default)]
struct SamplerState {
    previous: Option<(Instant, Totals)>,
    /// CPU clock ticks each process had used at the previous sample.
    cpu_ticks: HashMap<u32, u64>,
}

impl Dashboard {
    /// A dashboard sampling every `interval`; the pool starts keeping its ended requests.
    pub fn new(pool: Arc<DaemonPool>, interval: Duration) -> Arc<Self> {
        pool.keep_recent_requests();
        Arc::new(Self {
            pool,
            interval,
            started_at: SystemTime::now(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            sampler: Mutex::new(SamplerState::default()),
        })
    }

    /// Samples every interval and answers the port, until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let sampler = {
            let dashboard = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(dashboard.interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.wait() => return,
                        _ = ticks.tick() => {}
                    }
                    let dashboard = Arc::clone(&dashboard);
                    let _ = tokio::task::spawn_blocking(move || dashboard.sample()).await;
                }
            })
        };
        loop {
            let accepted = tokio::select! {
                () = shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            if let Ok((stream, _)) = accepted {
                tokio::spawn(Arc::clone(&self).answer(stream));
            }
        }
        sampler.abort();
    }

    /// Reads one request head and answers it.
    async fn answer(self: Arc<Self>, mut stream: TcpStream) {
        let mut head = Vec::with_capacity(1024);
        let read = tokio::time::timeout(HEAD_TIMEOUT, async {
            let mut buffer = [0_u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                if head.len() > HEAD_LIMIT {
                    return false;
                }
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            true
        })
        .await;
        if read != Ok(true) {
            return;
        }
        let line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
        let mut parts = line.split(|byte| *byte == b' ');
        let (method, target) = (parts.next().unwrap_or_default(), parts.next());
        let path = target.map(|target| {
            target
                .split(|byte| *byte == b'?')
                .next()
                .unwrap_or_default()
        });
        let (status, content_type, body) = match (method, path) {
            (b"GET" | b"HEAD", Some(b"/")) => {
                ("200 OK", "text/html; charset=utf-8", PAGE.to_owned())
            }
            (b"GET" | b"HEAD", Some(b"/telemetry.json")) => {
                let dashboard = Arc::clone(&self);
                let json = tokio::task::spawn_blocking(move || dashboard.json())
                    .await
                    .unwrap_or_default();
                ("200 OK", "application/json", json)
            }
            (b"GET" | b"HEAD", Some(_)) => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "The telemetry port serves / and /telemetry.json.\n".to_owned(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "The telemetry port answers GET and HEAD only.\n".to_owned(),
            ),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != b"HEAD" {
            response.extend_from_slice(body.as_bytes());
        }
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
    }

    /// Takes one sample (reads `/proc`: call it on the blocking pool).
    fn sample(&self) {
        let now = Instant::now();
        let totals = metrics::global().totals();
        let status = self.pool.status();
        let mut state = self.sampler.lock().unwrap_or_else(PoisonError::into_inner);
        let (previous_at, previous) = state.previous.unwrap_or((now, totals));
        let seconds = now.duration_since(previous_at).as_secs_f64();
        let requests = totals.requests - previous.requests;
        let mut latency = [0_u64; LATENCY_BOUNDS.len() + 1];
        for (bucket, count) in latency.iter_mut().enumerate() {
            *count = totals.latency[bucket] - previous.latency[bucket];
        }
        let mean_ms = if requests == 0 {
            0.0
        } else {
            (totals.latency_micros - previous.latency_micros) as f64 / requests as f64 / 1000.0
        };
        let (busy, idle) = status.busy_and_idle_threads();
        let mut sample = String::with_capacity(512);
        let _ = write!(
            sample,
            r#"{{"t":{:.3},"requests":{requests},"rate":{:.3},"classes":[{}],"p50_ms":{},"p95_ms":{},"p99_ms":{},"mean_ms":{mean_ms:.3},"busy":{busy},"idle":{idle},"queue":{},"processes":["#,
            unix_seconds(SystemTime::now()),
            if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            (0..5)
                .map(|class| (totals.by_class[class] - previous.by_class[class]).to_string())
                .collect::<Vec<_>>()
                .join(","),
            percentile_ms(&latency, 500),
            percentile_ms(&latency, 950),
            percentile_ms(&latency, 990),
            status.queued,
        );
        let processes = std::iter::once((std::process::id(), "front end".to_owned())).chain(
            status
                .processes
                .iter()
                .map(|process| (process.pid, format!("daemon {}", process.slot))),
        );
        let mut cpu_ticks = HashMap::new();
        for (index, (pid, role)) in processes.enumerate() {
            let Some((ticks, rss)) = process_usage(pid) else {
                continue;
            };
            let cpu_percent = match state.cpu_ticks.get(&pid) {
                Some(before) if seconds > 0.0 => {
                    (ticks.saturating_sub(*before)) as f64 / clock_ticks_per_second() / seconds
                        * 100.0
                }
                _ => 0.0,
            };
            cpu_ticks.insert(pid, ticks);
            let _ = write!(
                sample,
                r#"{}{{"pid":{pid},"role":"{role}","rss_bytes":{rss},"cpu_percent":{cpu_percent:.1}}}"#,
                if index == 0 { "" } else { "," },
            );
        }
        sample.push_str("]}");
        state.cpu_ticks = cpu_ticks;
        state.previous = Some((now, totals));
        drop(state);
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
    }

    /// What `/telemetry.json` answers.
    fn json(&self) -> String {
        let totals = metrics::global().totals();
        let mut recent = self.pool.recent_requests();
        recent.sort_by_key(|request| std::cmp::Reverse(request.took));
        recent.truncate(SLOWEST);
        let slowest = recent
            .iter()
            .map(|request| {
                format!(
                    r#"{{"request":"{}","pid":{},"seconds":{:.3},"ended":{:.3}}}"#,
                    json_escape(&request.description),
                    request.pid,
                    request.took.as_secs_f64(),
                    unix_seconds(request.ended_at),
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let samples = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"pid":{},"started":{:.3},"interval":{},"latency_bounds_ms":[{}],"totals":{{"requests":{},"classes":[{}],"process_starts":{},"process_crashes":{},"recycles":{}}},"slowest":[{slowest}],"samples":[{samples}]}}"#,
            std::process::id(),
            unix_seconds(self.started_at),
            self.interval.as_secs_f64(),
            LATENCY_BOUNDS_MS
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            totals.requests,
            totals
                .by_class
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            totals.process_starts,
            totals.process_crashes,
            totals.recycles,
        )
    }
}

/// The latency below which `per_mille` thousandths of the requests fell, as the upper
/// bound of its histogram bucket in milliseconds (the last bound for the overflow
/// bucket); 0 without requests.
fn percentile_ms(buckets: &[u64], per_mille: u64) -> u64 {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return 0;
    }
    let wanted = (count * per_mille).div_ceil(1000).max(1);
    let mut seen = 0;
    for (index, bucket) in buckets.iter().enumerate() {
        seen += bucket;
        if seen >= wanted {
            return LATENCY_BOUNDS_MS.get(index).copied().unwrap_or(10_000);
        }
    }
    10_000
}

/// CPU clock ticks used (user + system) and resident bytes of process `pid`, from /proc.
fn process_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces and parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let statm = fs_err::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    Some((ticks, pages * page_size))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u32::try_from(ticks).map_or(100.0, f64::from)
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// `text` as the inside of a JSON string.
fn json_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            character if u32::from(character) < 0x20 => {
                let _ = write!(escaped, "\\u{:04x}", u32::from(character));
            }
            character => escaped.push(character),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_bounds_of_the_buckets_they_fall_in() {
        let mut buckets = [0_u64; LATENCY_BOUNDS.len() + 1];
        buckets[0] = 90; // up to 5 ms
        buckets[5] = 9; // up to 250 ms
        buckets[LATENCY_BOUNDS.len()] = 1; // past 10 s
        assert_eq!(percentile_ms(&buckets, 500), 5);
        assert_eq!(percentile_ms(&buckets, 950), 250);
        assert_eq!(percentile_ms(&buckets, 990), 250);
        assert_eq!(percentile_ms(&buckets, 1000), 10_000);
        assert_eq!(percentile_ms(&[0; LATENCY_BOUNDS.len() + 1], 500), 0);
    }

    #[test]
    fn the_millisecond_bounds_are_the_histogram_bounds() {
        for (ms, seconds) in LATENCY_BOUNDS_MS.iter().zip(LATENCY_BOUNDS) {
            assert!(
                (*ms as f64 / 1000.0 - seconds).abs() < 1e-9,
                "{ms} ms, {seconds} s"
            );
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_escape("GET /a\"b\\c\n"), "GET /a\\\"b\\\\c\\u000a");
    }

    #[test]
    fn this_process_has_usage() {
        let (_, rss) = process_usage(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}

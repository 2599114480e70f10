//! The URL paths the front end answers for those who run the server, never handing them
//! to the application and never running Python: `--health-check-path` (is this server
//! ready for requests?), `--metrics-path` (the counters of `metrics.rs` in Prometheus's
//! text format) and `--server-status` (Apache's `/server-status` page, HTML or `?auto`).
//!
//! These requests are not counted in the request metrics (a probe every second would
//! swamp a quiet site's numbers) and are not written to the access log.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::metrics::{self, Gauges};
use super::{Backend, FrontendConfig};
use crate::handoff::{self, activity::ThreadState};

/// The operations paths of a front end.
#[derive(Debug, Default)]
pub struct Operations {
    health_check_path: Option<String>,
    metrics_path: Option<String>,
    /// `--server-status`: where the status page is (`/server-status`).
    server_status_path: Option<String>,
    /// `--threads`: application threads per process.
    threads_per_process: usize,
    /// When the server (the supervisor) started, for the status page.
    started_at: Option<SystemTime>,
}

/// Which operations page a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Page {
    Health,
    Metrics,
    Status { auto: bool },
}

impl Operations {
    /// The operations pages at these paths (each `None` when off).
    pub fn new(
        health_check_path: Option<String>,
        metrics_path: Option<String>,
        server_status_path: Option<String>,
        threads_per_process: usize,
    ) -> Self {
        Self {
            health_check_path,
            metrics_path,
            server_status_path,
            threads_per_process,
            started_at: Some(SystemTime::now()),
        }
    }

    /// Whether the status page is on (the executor then writes down each thread's request).
    pub fn shows_requests(&self) -> bool {
        self.server_status_path.is_some()
    }

    /// The page a request for `path` (as sent, not decoded) and `query` asks for, if any.
    pub(super) fn page(&self, path: &str, query: Option<&str>) -> Option<Page> {
        if self.health_check_path.is_none()
            && self.metrics_path.is_none()
            && self.server_status_path.is_none()
        {
            return None;
        }
        let is = |wanted: &Option<String>| wanted.as_deref() == Some(path);
        if is(&self.health_check_path) {
            Some(Page::Health)
        } else if is(&self.metrics_path) {
            Some(Page::Metrics)
        } else if is(&self.server_status_path) {
            Some(Page::Status {
                auto: query.is_some_and(|query| query.split('&').any(|part| part == "auto")),
            })
        } else {
            None
        }
    }
}

/// The answer to an operations page.
pub(super) fn answer(
    page: Page,
    method: &http::Method,
    client: IpAddr,
    config: &FrontendConfig,
    backend: &Backend,
) -> handoff::Response {
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut response = handoff::error_response(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "This page of the server answers GET and HEAD only.",
        );
        response.headers.insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    let draining = config.draining.load(std::sync::atomic::Ordering::Acquire);
    match page {
        Page::Health => health(draining, backend),
        Page::Metrics => text(
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::global().render(&gauges(config, backend)),
        ),
        Page::Status { .. } if !is_local(client) => handoff::error_response(
            http::StatusCode::FORBIDDEN,
            "The server status page is shown to clients on this machine only.",
        ),
        Page::Status { auto } => {
            let board = Board::of(config, backend, draining);
            if auto {
                text(
                    http::StatusCode::OK,
                    "text/plain; charset=utf-8",
                    board.auto(),
                )
            } else {
                text(
                    http::StatusCode::OK,
                    "text/html; charset=utf-8",
                    board.html(),
                )
            }
        }
    }
}

/// 200 while a process that loaded the application takes requests and no stop began.
/// Embedded mode: a process accepts connections only once it has loaded the application,
/// so the process that answers is ready unless it is stopping.
fn health(draining: bool, backend: &Backend) -> handoff::Response {
    let (ready, why) = if draining {
        (false, "stopping")
    } else {
        match backend {
            Backend::Daemon(pool) if !pool.ready() => {
                (false, "no daemon process has loaded the application")
            }
            _ => (true, "ok"),
        }
    };
    let status = if ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = text(status, "text/plain; charset=utf-8", format!("{why}\n"));
    response.headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn text(status: http::StatusCode, content_type: &'static str, body: String) -> handoff::Response {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    handoff::Response {
        status,
        reason: None,
        headers,
        body: handoff::ResponseBody::Full(vec![Bytes::from(body)]),
    }
}

/// Loopback clients (`Allow from localhost`, as mod_wsgi-express configures the page).
fn is_local(client: IpAddr) -> bool {
    match client {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn gauges(config: &FrontendConfig, backend: &Backend) -> Gauges {
    match backend {
        Backend::Daemon(pool) => {
            let status = pool.status();
            let (busy, idle) = status.busy_and_idle_threads();
            Gauges {
                busy_threads: busy,
                idle_threads: idle,
                queue_length: status.queued,
                queue_wait: None,
                processes: Some(
                    status
                        .processes
                        .iter()
                        .filter(|process| !process.retiring)
                        .count(),
                ),
            }
        }
        Backend::Embedded(executor) => {
            let activity = executor.activity();
            let threads = activity.threads();
            let busy = threads
                .iter()
                .filter(|thread| thread.busy_for.is_some())
                .count();
            Gauges {
                busy_threads: busy,
                idle_threads: threads.len() - busy,
                queue_length: activity.queue_length(),
                queue_wait: Some(activity.queue_wait()),
                processes: None,
            }
        }
        Backend::StaticOnly => {
            let _ = config;
            Gauges::default()
        }
    }
}

/// One application thread on the status page.
struct ThreadRow {
    process: String,
    pid: u32,
    thread: usize,
    /// Apache's scoreboard letter: `W` busy, `_` idle, `G` finishing (its process is being
    /// replaced), `.` not connected (starting or between connections).
    state: char,
    busy_for: Option<Duration>,
    request: String,
}

/// What the status page shows.
struct Board {
    draining: bool,
    started_at: SystemTime,
    rows: Vec<ThreadRow>,
    processes: usize,
    queued: usize,
}

impl Board {
    fn of(config: &FrontendConfig, backend: &Backend, draining: bool) -> Self {
        let mut rows = Vec::new();
        let mut processes = 0;
        let mut queued = 0;
        match backend {
            Backend::Daemon(pool) => {
                let status = pool.status();
                queued = status.queued;
                for process in &status.processes {
                    processes += 1;
                    let name = format!("daemon {}", process.slot);
                    let mut thread = 0;
                    let busy_letter = if process.retiring { 'G' } else { 'W' };
                    for (request, busy_for) in &process.busy {
                        rows.push(ThreadRow {
                            process: name.clone(),
                            pid: process.pid,
                            thread,
                            state: busy_letter,
                            busy_for: Some(*busy_for),
                            request: request.clone(),
                        });
                        thread += 1;
                    }
                    for _ in 0..process.idle {
                        rows.push(ThreadRow {
                            process: name.clone(),
                            pid: process.pid,
                            thread,
                            state: '_',
                            busy_for: None,
                            request: String::new(),
                        });
                        thread += 1;
                    }
                    while thread < config.operations.threads_per_process {
                        rows.push(ThreadRow {
                            process: name.clone(),
                            pid: process.pid,
                            thread,
                            state: '.',
                            busy_for: None,
                            request: String::new(),
                        });
                        thread += 1;
                    }
                }
            }
            Backend::Embedded(executor) => {
                processes = 1;
                let activity = executor.activity();
                queued = activity.queue_length();
                for (
                    thread,
                    ThreadState {
                        busy_for, request, ..
                    },
                ) in activity.threads().into_iter().enumerate()
                {
                    rows.push(ThreadRow {
                        process: "this process".to_owned(),
                        pid: std::process::id(),
                        thread,
                        state: if busy_for.is_some() { 'W' } else { '_' },
                        busy_for,
                        request,
                    });
                }
            }
            Backend::StaticOnly => {}
        }
        Self {
            draining,
            started_at: config.operations.started_at.unwrap_or_else(SystemTime::now),
            rows,
            processes,
            queued,
        }
    }

    fn busy(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| matches!(row.state, 'W' | 'G'))
            .count()
    }

    fn idle(&self) -> usize {
        self.rows.iter().filter(|row| row.state == '_').count()
    }

    fn scoreboard(&self) -> String {
        self.rows.iter().map(|row| row.state).collect()
    }

    /// Apache's machine-readable `?auto` format: `Key: value` lines.
    // Ratios of counters: f64's 52 bits of mantissa are plenty for a status page.
    #[allow(clippy::cast_precision_loss)]
    fn auto(&self) -> String {
        let counters = metrics::global();
        let uptime = counters.uptime();
        let uptime_seconds = uptime.as_secs();
        let accesses = counters.total_requests();
        let bytes = counters.total_sent();
        let duration_ms = counters.total_latency().as_millis();
        let per_second = |value: f64| value / uptime.as_secs_f64().max(1e-3);
        let per_request = |value: f64| {
            if accesses == 0 {
                0.0
            } else {
                value / accesses as f64
            }
        };
        let mut out = String::new();
        let _ = writeln!(out, "ServerVersion: ferrule/{}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            out,
            "CurrentTime: {}",
            httpdate::fmt_http_date(SystemTime::now())
        );
        let _ = writeln!(
            out,
            "RestartTime: {}",
            httpdate::fmt_http_date(self.started_at)
        );
        let _ = writeln!(out, "ServerUptimeSeconds: {uptime_seconds}");
        let _ = writeln!(out, "ServerUptime: {}", spell_duration(uptime_seconds));
        let _ = writeln!(out, "Total Accesses: {accesses}");
        let _ = writeln!(out, "Total kBytes: {}", bytes / 1024);
        let _ = writeln!(out, "Total Duration: {duration_ms}");
        let _ = writeln!(out, "Uptime: {uptime_seconds}");
        let _ = writeln!(out, "ReqPerSec: {:.6}", per_second(accesses as f64));
        let _ = writeln!(out, "BytesPerSec: {:.6}", per_second(bytes as f64));
        let _ = writeln!(out, "BytesPerReq: {:.6}", per_request(bytes as f64));
        let _ = writeln!(
            out,
            "DurationPerReq: {:.6}",
            per_request(duration_ms as f64)
        );
        let _ = writeln!(out, "BusyWorkers: {}", self.busy());
        let _ = writeln!(out, "IdleWorkers: {}", self.idle());
        let _ = writeln!(out, "Processes: {}", self.processes);
        let _ = writeln!(out, "Stopping: {}", u8::from(self.draining));
        let _ = writeln!(out, "QueuedRequests: {}", self.queued);
        let _ = writeln!(out, "ConnsTotal: {}", counters.connections_open().max(0));
        let _ = writeln!(out, "Scoreboard: {}", self.scoreboard());
        out
    }

    /// The page for people.
    fn html(&self) -> String {
        let auto = self.auto();
        let mut out = String::from(
            "<!DOCTYPE html>\n<html><head><title>Ferrule Server Status</title>\n\
             <style>body{font-family:sans-serif}table{border-collapse:collapse}\
             td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style>\n\
             </head><body>\n<h1>Ferrule Server Status</h1>\n<dl>\n",
        );
        for line in auto.lines() {
            if let Some((key, value)) = line.split_once(": ") {
                if key == "Scoreboard" {
                    continue;
                }
                let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(key), escape(value));
            }
        }
        let _ = write!(
            out,
            "</dl>\n<h2>Scoreboard</h2>\n<pre>{}</pre>\n\
             <p>Key: <code>W</code> running a request, <code>_</code> waiting for one, \
             <code>G</code> finishing before its process is replaced, <code>.</code> not \
             connected (starting).</p>\n<h2>Threads</h2>\n<table>\n\
             <tr><th>Process</th><th>PID</th><th>Thread</th><th>State</th>\
             <th>Seconds in request</th><th>Request</th></tr>\n",
            escape(&self.scoreboard())
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.process),
                row.pid,
                row.thread,
                row.state,
                row.busy_for
                    .map(|busy_for| format!("{:.3}", busy_for.as_secs_f64()))
                    .unwrap_or_default(),
                escape(&row.request)
            );
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }
}

/// `1 day 2 hours 3 minutes 4 seconds`, as Apache spells its uptime.
fn spell_duration(seconds: u64) -> String {
    let parts = [
        (seconds / 86_400, "day"),
        (seconds / 3_600 % 24, "hour"),
        (seconds / 60 % 60, "minute"),
        (seconds % 60, "second"),
    ];
    let spelled: Vec<String> = parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, unit)| format!("{count} {unit}{}", if *count == 1 { "" } else { "s" }))
        .collect();
    if spelled.is_empty() {
        "0 seconds".to_owned()
    } else {
        spelled.join(" ")
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations() -> Operations {
        Operations::new(
            Some("/healthz".to_owned()),
            Some("/metrics".to_owned()),
            Some("/server-status".to_owned()),
            5,
        )
    }

    #[test]
    fn pages_are_found_by_path_without_query() {
        let operations = operations();
        assert_eq!(operations.page("/healthz", None), Some(Page::Health));
        assert_eq!(
            operations.page("/healthz", Some("probe=1")),
            Some(Page::Health)
        );
        assert_eq!(operations.page("/metrics", None), Some(Page::Metrics));
        assert_eq!(
            operations.page("/server-status", Some("auto")),
            Some(Page::Status { auto: true })
        );
        assert_eq!(
            operations.page("/server-status", None),
            Some(Page::Status { auto: false })
        );
        assert_eq!(operations.page("/healthz/", None), None);
        assert_eq!(operations.page("/", None), None);
        assert_eq!(Operations::default().page("/server-status", None), None);
    }

    #[test]
    fn uptime_is_spelled_as_apache_does() {
        assert_eq!(spell_duration(0), "0 seconds");
        assert_eq!(spell_duration(3_661), "1 hour 1 minute 1 second");
        assert_eq!(spell_duration(2 * 86_400 + 120), "2 days 2 minutes");
    }

    #[test]
    fn only_loopback_clients_see_the_status_page() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_local("10.0.0.1".parse().unwrap()));
    }
}

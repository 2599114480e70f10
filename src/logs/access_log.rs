//! The access log: one line per response in the format `--access-log-format` chose
//! (`access_format.rs`; Apache's common format by default), written by the front end after
//! the last body byte went out (so the byte count is the real one).
//!
//! A record keeps only what its format reads: the headers and variables it names are
//! copied when the request arrives and when the response head is made, nothing else.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use super::access_format::{AccessFormat, Piece};
use super::time::LocalTime;
use super::writer::{self, Destination, LogId};

/// What the access log needs to know about one exchange.
pub struct AccessRecord {
    pub remote_host: String,
    /// The request line as the client sent it: `GET /path?query HTTP/1.1`.
    pub request_line: String,
    pub status: u16,
    pub body_bytes: u64,
    /// The user the request's credentials named, when access control is configured.
    pub user: Option<String>,
    received: SystemTime,
    started: Instant,
    /// `mod_wsgi.request_id`, as text when the format prints it.
    request_id: Option<String>,
    /// The values of the format's `%{..}i`, in its order.
    request_headers: Vec<Option<String>>,
    /// The values of the format's `%{..}o`, in its order.
    response_headers: Vec<Option<String>>,
    /// The values of the format's `%{..}e`, in its order.
    env: Vec<Option<String>>,
}

/// An open access log shared by all connections of one process.
pub struct AccessLog {
    sink: LogId,
    format: AccessFormat,
}

impl AccessLog {
    pub fn new(destination: Destination, format: AccessFormat) -> Self {
        Self {
            sink: writer::register(destination, "access log"),
            format,
        }
    }

    /// Starts the record of a request that just arrived, copying what the format reads
    /// of it.
    pub fn begin(
        &self,
        remote_ip: std::net::IpAddr,
        head: &http::request::Parts,
        request_id: &dyn std::fmt::Display,
    ) -> AccessRecord {
        let request_line = format!("{} {} {:?}", head.method, head.uri, head.version);
        let request_headers = self
            .format
            .request_headers
            .iter()
            .map(|name| header_text(&head.headers, name))
            .collect();
        let env = self
            .format
            .env
            .iter()
            .map(|name| cgi_variable(name, remote_ip, head))
            .collect();
        AccessRecord {
            remote_host: remote_ip.to_canonical().to_string(),
            request_line,
            status: 0,
            body_bytes: 0,
            user: None,
            received: SystemTime::now(),
            started: Instant::now(),
            request_id: self
                .format
                .uses_request_id()
                .then(|| request_id.to_string()),
            request_headers,
            response_headers: Vec::new(),
            env,
        }
    }

    /// Copies what the format reads of the response head.
    pub fn response_head(&self, record: &mut AccessRecord, status: u16, headers: &http::HeaderMap) {
        record.status = status;
        record.response_headers = self
            .format
            .response_headers
            .iter()
            .map(|name| header_text(headers, name))
            .collect();
    }

    /// Queues the record's line for the log writer thread: the caller (the reactor) never
    /// waits on the disk.
    pub fn record(&self, record: &AccessRecord) {
        let line = format_line(&self.format, record, Instant::now());
        writer::queue(self.sink, line.as_bytes());
    }
}

/// A header's value as text (latin-1, as the environ), or `None` when absent.
fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|value| {
            value
                .as_bytes()
                .iter()
                .map(|&byte| char::from(byte))
                .collect()
        })
        .collect();
    // Apache joins repeated headers with ", " as the HTTP table does.
    (!values.is_empty()).then(|| values.join(", "))
}

/// The CGI variables of a request that `%{NAME}e` can print (those Apache puts in the
/// request's environment before the application runs, less the server's own).
fn cgi_variable(
    name: &str,
    remote_ip: std::net::IpAddr,
    head: &http::request::Parts,
) -> Option<String> {
    match name {
        "REQUEST_METHOD" => Some(head.method.to_string()),
        "REQUEST_URI" => Some(head.uri.to_string()),
        "QUERY_STRING" => Some(head.uri.query().unwrap_or_default().to_owned()),
        "SERVER_PROTOCOL" => Some(format!("{:?}", head.version)),
        "REMOTE_ADDR" => Some(remote_ip.to_canonical().to_string()),
        _ => {
            let header = name.strip_prefix("HTTP_")?.replace('_', "-");
            header_text(&head.headers, &header.to_ascii_lowercase())
        }
    }
}

fn format_line(format: &AccessFormat, record: &AccessRecord, now: Instant) -> String {
    let mut line = String::with_capacity(128);
    let mut words = record.request_line.splitn(3, ' ');
    let (method, target, protocol) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(path, query)| (path, Some(query)));
    let elapsed = now.saturating_duration_since(record.started);
    for piece in &format.pieces {
        match piece {
            Piece::Text(text) => line.push_str(text),
            Piece::RemoteHost => line.push_str(&record.remote_host),
            Piece::RemoteLogname => line.push('-'),
            Piece::RemoteUser => push_or_dash(&mut line, record.user.as_deref()),
            Piece::Time => {
                line.push('[');
                line.push_str(&LocalTime::at(record.received).access_log_stamp());
                line.push(']');
            }
            Piece::RequestLine => push_escaped(&mut line, &record.request_line),
            Piece::Status => {
                let _ = write!(line, "{}", record.status);
            }
            Piece::BytesClf if record.body_bytes == 0 => line.push('-'),
            Piece::BytesClf | Piece::Bytes => {
                let _ = write!(line, "{}", record.body_bytes);
            }
            Piece::Micros => {
                let _ = write!(line, "{}", elapsed.as_micros());
            }
            Piece::Seconds => {
                let _ = write!(line, "{}", elapsed.as_secs());
            }
            Piece::RequestHeader(place) => {
                push_or_dash(&mut line, nth(&record.request_headers, *place));
            }
            Piece::ResponseHeader(place) => {
                push_or_dash(&mut line, nth(&record.response_headers, *place));
            }
            Piece::Env(place) => {
                let value = if format
                    .env
                    .get(*place)
                    .is_some_and(|name| name == "REMOTE_USER")
                {
                    record.user.as_deref()
                } else {
                    nth(&record.env, *place)
                };
                push_or_dash(&mut line, value);
            }
            Piece::Pid => {
                let _ = write!(line, "{}", std::process::id());
            }
            Piece::RequestId => push_or_dash(&mut line, record.request_id.as_deref()),
            Piece::Method => push_escaped(&mut line, method),
            Piece::Path => push_escaped(&mut line, path),
            Piece::Query => {
                if let Some(query) = query {
                    line.push('?');
                    push_escaped(&mut line, query);
                }
            }
            Piece::Protocol => push_escaped(&mut line, protocol),
        }
    }
    line.push('\n');
    line
}

fn nth(values: &[Option<String>], place: usize) -> Option<&str> {
    values.get(place).and_then(Option::as_deref)
}

/// Apache writes `-` for a value that is absent or empty.
fn push_or_dash(line: &mut String, value: Option<&str>) {
    match value {
        Some(value) if !value.is_empty() => push_escaped(line, value),
        _ => line.push('-'),
    }
}

/// Apache escapes quotes, backslashes and control bytes in what the client chose, so that
/// a line stays one line and a quoted field stays one field.
fn push_escaped(line: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            ch if ch.is_control() => {
                let _ = write!(line, "\\x{:02x}", u32::from(ch));
            }
            ch => line.push(ch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(request_line: &str) -> AccessRecord {
        AccessRecord {
            remote_host: "127.0.0.1".into(),
            request_line: request_line.into(),
            status: 200,
            body_bytes: 0,
            user: None,
            received: SystemTime::now(),
            started: Instant::now(),
            request_id: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            env: Vec::new(),
        }
    }

    #[test]
    fn common_format_matches_apache() {
        let format = AccessFormat::parse("common").unwrap();
        let record = record("GET /a\"b HTTP/1.1");
        let line = format_line(&format, &record, record.started);
        let stamp = LocalTime::at(record.received).access_log_stamp();
        assert_eq!(
            line,
            format!("127.0.0.1 - - [{stamp}] \"GET /a\\\"b HTTP/1.1\" 200 -\n")
        );
    }

    #[test]
    fn parts_of_the_request_line_and_times() {
        let format = AccessFormat::parse("%m|%U|%q|%H|%D|%T|%u").unwrap();
        let mut record = record("POST /p?x=1 HTTP/1.0");
        record.user = Some("a\nb".into());
        let later = record.started + std::time::Duration::from_millis(2500);
        assert_eq!(
            format_line(&format, &record, later),
            "POST|/p|?x=1|HTTP/1.0|2500000|2|a\\x0ab\n"
        );
    }
}

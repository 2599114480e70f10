//! The access log: one line per response in Apache's common log format, written by the
//! front end after the last body byte went out (so the byte count is the real one).

use super::time::LocalTime;
use super::writer::{self, Destination, LogId};

/// What the access log needs to know about one finished exchange.
pub struct AccessRecord {
    pub remote_host: String,
    /// The request line as the client sent it: `GET /path?query HTTP/1.1`.
    pub request_line: String,
    pub status: u16,
    pub body_bytes: u64,
}

/// An open access log shared by all connections of one process.
pub struct AccessLog {
    sink: LogId,
}

impl AccessLog {
    pub fn new(destination: Destination) -> Self {
        Self {
            sink: writer::register(destination, "access log"),
        }
    }

    /// Queues one line, `%h %l %u %t "%r" %>s %b`, for the log writer thread: the caller
    /// (the reactor) never waits on the disk. The time is the one of this call.
    pub fn record(&self, record: &AccessRecord) {
        let line = format_common(record, &LocalTime::now().access_log_stamp());
        writer::queue(self.sink, line.as_bytes());
    }
}

fn format_common(record: &AccessRecord, stamp: &str) -> String {
    let body_bytes = if record.body_bytes == 0 {
        "-".to_owned()
    } else {
        record.body_bytes.to_string()
    };
    format!(
        "{} - - [{stamp}] \"{}\" {} {body_bytes}\n",
        record.remote_host,
        escape(&record.request_line),
        record.status
    )
}

/// Apache escapes quotes, backslashes and control bytes in `%r` so that a line stays one line.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            ch if ch.is_control() => escaped.push_str(&format!("\\x{:02x}", u32::from(ch))),
            ch => escaped.push(ch),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_format_matches_apache() {
        let record = AccessRecord {
            remote_host: "127.0.0.1".into(),
            request_line: "GET /a\"b HTTP/1.1".into(),
            status: 200,
            body_bytes: 0,
        };
        assert_eq!(
            format_common(&record, "25/Nov/2026:05:43:55 +0000"),
            "127.0.0.1 - - [25/Nov/2026:05:43:55 +0000] \"GET /a\\\"b HTTP/1.1\" 200 -\n"
        );
    }
}

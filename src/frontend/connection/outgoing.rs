//! Writing one response: the head (status line, the application's fields, and the ones
//! that frame the body), then the body with the framing chosen, gathered into vectored
//! writes; file bytes go out with `sendfile(2)`.
//!
//! Framing (RFC 9112 6.3): no body for HEAD, 1xx, 204 and 304; else the Content-Length
//! the response declared or its exact size; else chunked for an HTTP/1.1 client; else the
//! end of the body is the end of the connection. The bytes written always match the
//! framing: [`LoggedBody`] holds a body to its declared length, and a body that fails or
//! ends short makes this writer stop, after writing what came before, and the connection
//! close.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http_body::Body;

use super::ConnectionSettings;
use super::transport::ResponseWriter;
use crate::frontend::body::{LoggedBody, ResponseAborted};
use crate::frontend::sendfile::{FileSlot, is_marker};
use crate::frontend::timeouts::{TimedOut, within};

/// Gathered body bytes written at once; more is written before polling the body again.
const GATHER_LIMIT: usize = 256 * 1024;
/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// A response ready to be written.
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    /// The application's own reason phrase, when it gave one.
    pub(crate) reason: Option<Bytes>,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: LoggedBody,
}

/// What the request said that shapes its response.
#[derive(Clone, Copy)]
pub(super) struct Asked {
    pub(super) head: bool,
    pub(super) version: http::Version,
    /// The client is willing to keep the connection open after this response.
    pub(super) keep_alive: bool,
}

/// How a response ended on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Whole, and the connection may carry another request.
    KeepAlive,
    /// Whole, but its framing or its `Connection: close` ends the connection.
    Close,
    /// Cut short (the body failed or ended before its length): the connection must
    /// close now, so that the client sees an incomplete response.
    Cut,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Writes `reply` to `writer`; I/O errors mean the client is gone.
pub(super) async fn write_reply<W: ResponseWriter>(
    writer: &mut W,
    slot: &FileSlot,
    settings: &ConnectionSettings,
    asked: Asked,
    reply: Reply,
) -> std::io::Result<Written> {
    let writer = &mut Writer {
        half: writer,
        slot,
        settings,
    };
    let Reply {
        status,
        reason,
        mut headers,
        mut body,
    } = reply;
    let framing = choose_framing(asked, status, &mut headers, &body);
    let closes = headers
        .get(http::header::CONNECTION)
        .is_some_and(|value| has_token(value.as_bytes(), b"close"));
    let keep_alive = asked.keep_alive && !closes && framing != Framing::UntilClose;
    if !keep_alive && !closes {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    } else if keep_alive && asked.version == http::Version::HTTP_10 {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("keep-alive"),
        );
    }
    let mut out = Outgoing::default();
    out.push(encode_head(status, reason.as_deref(), &headers));
    let ended = match framing {
        Framing::NoBody => true,
        Framing::Length(length) => {
            write_body(writer, &mut out, &mut body, Some(length), false).await?
        }
        Framing::Chunked => write_body(writer, &mut out, &mut body, None, true).await?,
        Framing::UntilClose => write_body(writer, &mut out, &mut body, None, false).await?,
    };
    out.flush(writer).await?;
    drop(body);
    // TLS: the records of the last bytes still have to reach the socket.
    while writer.half.has_pending() {
        within(
            &settings.timer,
            settings.timeouts.write,
            writer.half.writable(),
        )
        .await
        .map_err(timed_out)??;
    }
    Ok(match (ended, keep_alive) {
        (false, _) => Written::Cut,
        (true, true) => Written::KeepAlive,
        (true, false) => Written::Close,
    })
}

/// Picks the framing and sets the fields that announce it.
fn choose_framing(
    asked: Asked,
    status: http::StatusCode,
    headers: &mut http::HeaderMap,
    body: &LoggedBody,
) -> Framing {
    let bodyless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    let exact = body.size_hint().exact();
    // An empty answer to HEAD says nothing of the GET's length (the dispatcher declares
    // a 0 it knows to be the GET's).
    let exact = exact.filter(|&length| !(asked.head && length == 0));
    if declared.is_none() && !bodyless {
        if let Some(exact) = exact {
            headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(exact));
        }
    }
    if bodyless || asked.head {
        return Framing::NoBody;
    }
    if let Some(length) = declared.or(exact) {
        return Framing::Length(length);
    }
    if asked.version == http::Version::HTTP_11 {
        headers.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    } else {
        Framing::UntilClose
    }
}

/// Writes the body; true when it ended whole, false when it failed or fell short of
/// `length`, which the caller answers by closing the connection.
///
/// While the client is slow to take bytes, frames are still taken from the body, until
/// `--response-buffer-size` bytes wait here: a response that fits is soon all in the
/// front end, and the application thread (or daemon thread) that made it is free again,
/// so a slow reader holds memory, not a thread.
async fn write_body<W: ResponseWriter>(
    writer: &mut Writer<'_, W>,
    out: &mut Outgoing,
    body: &mut LoggedBody,
    length: Option<u64>,
    chunked: bool,
) -> std::io::Result<bool> {
    let buffer_limit = writer.settings.response_buffer_size;
    let mut taker = FrameTaker {
        sent: 0,
        length,
        chunked,
        ended: None,
    };
    loop {
        while taker.ended.is_none() && out.bytes < GATHER_LIMIT {
            let ready =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
            match ready {
                Poll::Ready(frame) => taker.take(frame, out),
                Poll::Pending => break,
            }
        }
        if out.is_empty() {
            if let Some(whole) = taker.ended {
                return Ok(whole);
            }
            if writer.half.has_pending() {
                // TLS records of what was written wait for the socket: send them while
                // the body makes its next bytes, so a slow stream is never held back.
                let timer = &writer.settings.timer;
                let limit = writer.settings.timeouts.write;
                tokio::select! {
                    biased;
                    sent = within(timer, limit, writer.half.writable()) => sent.map_err(timed_out)??,
                    frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)) => {
                        taker.take(frame, out);
                    }
                }
                continue;
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
            taker.take(frame, out);
            continue;
        }
        if out.write_now(writer)? {
            continue;
        }
        let timer = &writer.settings.timer;
        let limit = writer.settings.timeouts.write;
        let taking = taker.ended.is_none() && out.bytes < buffer_limit;
        tokio::select! {
            biased;
            writable = within(timer, limit, writer.half.writable()) => writable.map_err(timed_out)??,
            frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)), if taking => {
                taker.take(frame, out);
            }
        }
    }
}

/// Turns body frames into queued bytes, with chunk framing where it applies, and knows
/// when the body is over.
struct FrameTaker {
    sent: u64,
    /// The length the response is framed with, if any.
    length: Option<u64>,
    chunked: bool,
    /// `Some(whole)` once the body ended (`false`: it failed or fell short).
    ended: Option<bool>,
}

impl FrameTaker {
    fn take(
        &mut self,
        frame: Option<Result<http_body::Frame<Bytes>, ResponseAborted>>,
        out: &mut Outgoing,
    ) {
        match frame {
            None => {
                if self.chunked {
                    out.push(Bytes::from_static(b"0\r\n\r\n"));
                }
                self.ended = Some(self.length.is_none_or(|length| self.sent >= length));
            }
            Some(Err(ResponseAborted)) => self.ended = Some(false),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    return;
                };
                if data.is_empty() {
                    return;
                }
                self.sent += data.len() as u64;
                if self.chunked {
                    out.push(Bytes::from(format!("{:X}\r\n", data.len())));
                    out.push(data);
                    out.push(Bytes::from_static(b"\r\n"));
                } else {
                    out.push(data);
                }
                if self.length.is_some_and(|length| self.sent >= length) {
                    // The declared length is out: the body is done, whatever it still holds.
                    self.ended = Some(true);
                }
            }
        }
    }
}

/// The status line and fields, with a Date.
fn encode_head(
    status: http::StatusCode,
    reason: Option<&[u8]>,
    headers: &http::HeaderMap,
) -> Bytes {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    match reason {
        Some(reason) => head.extend_from_slice(reason),
        None => head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(http::header::DATE) {
        head.extend_from_slice(b"date: ");
        super::date::with_current(|date| head.extend_from_slice(date));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

/// True when the comma-separated `value` holds `token` (ASCII case-insensitive).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|element| element.trim_ascii().eq_ignore_ascii_case(token))
}

/// Where a response goes, and what its writes need.
pub(super) struct Writer<'w, W> {
    half: &'w mut W,
    slot: &'w FileSlot,
    settings: &'w ConnectionSettings,
}

fn timed_out(TimedOut: TimedOut) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the client took no response bytes for --response-socket-timeout",
    )
}

/// Bytes waiting to be written, in order.
#[derive(Default)]
struct Outgoing {
    segments: VecDeque<Bytes>,
    bytes: usize,
}

impl Outgoing {
    fn push(&mut self, segment: Bytes) {
        self.bytes += segment.len();
        self.segments.push_back(segment);
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Writes everything queued; each wait for the client waits at most the write timeout.
    async fn flush<W: ResponseWriter>(
        &mut self,
        writer: &mut Writer<'_, W>,
    ) -> std::io::Result<()> {
        while !self.is_empty() {
            if !self.write_now(writer)? {
                let limit = writer.settings.timeouts.write;
                within(&writer.settings.timer, limit, writer.half.writable())
                    .await
                    .map_err(timed_out)??;
            }
        }
        Ok(())
    }

    /// One write without waiting: a run of bytes with `writev`, or a file marker with
    /// sendfile. False when the socket is full.
    fn write_now<W: ResponseWriter>(
        &mut self,
        writer: &mut Writer<'_, W>,
    ) -> std::io::Result<bool> {
        let Some(front) = self.segments.front() else {
            return Ok(true);
        };
        let written = if is_marker(front) {
            writer.half.try_send_file(writer.slot, front.len())
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for segment in self.segments.iter().take(MAX_SLICES) {
                if is_marker(segment) {
                    break;
                }
                slices[count] = IoSlice::new(segment);
                count += 1;
            }
            writer.half.try_write_vectored(&slices[..count])
        };
        match written {
            Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                crate::frontend::metrics::global().sent(written);
                self.advance(written);
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.segments.pop_front();
            } else {
                bytes::Buf::advance(front, written);
                written = 0;
            }
        }
    }
}

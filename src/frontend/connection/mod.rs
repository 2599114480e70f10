//! One HTTP/1 connection, from accept to close: read a request head into the connection's
//! buffer and parse it (`http1/`), hand the request to [`Service::dispatch`] while its body
//! is fed from the socket (`incoming.rs`), write the response (`outgoing.rs`), and go on
//! with the next request on the connection, in order (pipelined requests wait in the
//! buffer).
//!
//! The buffer is allocated when bytes arrive and freed when a request leaves it empty, so
//! an idle keep-alive connection holds no buffer at all; it grows only for a large head.
//! A request the parser refuses is answered with its status and reason, and the
//! connection is closed: after a malformed message nothing on it can be trusted.

mod date;
mod incoming;
mod outgoing;
mod transport;

pub(crate) use incoming::{BodyError, IncomingBody, IncomingError};
pub(crate) use outgoing::Reply;
pub(super) use transport::{TlsConnection, Transport};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::coarse_timer::{CoarseSleep, CoarseTimer};
use super::dispatch::Service;
use super::http1::Rejection;
use super::http1::head::{Head, HeadParser, Limits};
use super::sendfile::FileSlot;
use crate::client_timeouts::ClientTimeouts;
use crate::handoff;
use crate::logs::{Level, error_log};
use incoming::Fed;
use outgoing::{Asked, Written, has_token, write_reply};
use transport::ResponseWriter;

/// Room made in the buffer before reading a head: most heads fit in one read.
const HEAD_READ_SIZE: usize = 4 * 1024;
/// Longest time spent reading and dropping a request body nobody read, after its response.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection of a listener shares.
pub(super) struct ConnectionSettings {
    pub(super) timeouts: ClientTimeouts,
    /// `--response-buffer-size`: response bytes taken ahead of a slow client.
    pub(super) response_buffer_size: usize,
    pub(super) timer: CoarseTimer,
    /// Turns true when a stop asks idle connections to close.
    pub(super) closing: watch::Receiver<bool>,
    /// `--http2` on the plain listener: a connection that opens with the HTTP/2
    /// preface is served as h2c.
    pub(super) h2c: bool,
}

/// The start of the HTTP/2 connection preface (RFC 9113 3.4), which the HTTP/1 parser
/// refuses as a request line of version 2.0.
const HTTP2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Serves `stream` until the client or an error closes it, or a stop closes it idle.
/// `accepted` starts the first head's `--header-timeout` clock (a TLS handshake counts
/// in it). A connection that opens with the HTTP/2 preface, where h2c is served, goes on
/// as HTTP/2 (`frontend/http2.rs`), the bytes read so far first.
pub(super) async fn serve_connection<S: Transport>(
    mut stream: S,
    service: Service,
    slot: FileSlot,
    settings: Arc<ConnectionSettings>,
    accepted: Instant,
) {
    let Some(read) = serve_requests(&mut stream, &service, &slot, &settings, accepted).await else {
        stream.close().await;
        return;
    };
    if let Some(plain) = stream.into_plain() {
        // Boxed: only h2c connections pay for the size of this future.
        let stream = super::http2::Rewind::new(read, plain);
        Box::pin(super::http2::serve(stream, service, settings, accepted)).await;
    }
}

/// Serves HTTP/1 requests one after another; the read buffer when the connection
/// turned out to open with the HTTP/2 preface (and h2c is served).
async fn serve_requests<S: Transport>(
    stream: &mut S,
    service: &Service,
    slot: &FileSlot,
    settings: &ConnectionSettings,
    accepted: Instant,
) -> Option<BytesMut> {
    let mut closing = settings.closing.clone();
    let mut buffer = BytesMut::new();
    let mut parser = HeadParser::new(Limits::default());
    let mut first = true;
    loop {
        let read = read_head(
            stream,
            &mut buffer,
            &mut parser,
            settings,
            &mut closing,
            first.then_some(accepted),
        );
        let opening = std::mem::replace(&mut first, false);
        let head = match read.await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => return None,
            HeadRead::TimedOut => {
                let response = handoff::error_response(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "The server timed out waiting for the request head (--header-timeout).",
                );
                Box::pin(refuse(stream, service, slot, settings, response)).await;
                return None;
            }
            HeadRead::Rejected(_)
                if opening && settings.h2c && buffer.starts_with(HTTP2_PREFACE_LINE) =>
            {
                return Some(buffer);
            }
            HeadRead::Rejected(rejection) => {
                if error_log::enabled(Level::Info) {
                    error_log::log(
                        Level::Info,
                        "ferrule",
                        &format!(
                            "refused a request from {}: {rejection}",
                            service.remote_addr()
                        ),
                    );
                }
                let response = handoff::error_response(rejection.status(), &rejection.to_string());
                Box::pin(refuse(stream, service, slot, settings, response)).await;
                return None;
            }
        };
        buffer.advance(head.length);
        // Boxed: the request's futures (dispatch, response) are large, and an idle
        // connection's task should hold only what waiting for a head needs.
        let keep_going = Box::pin(serve_request(
            stream,
            &mut buffer,
            service,
            slot,
            settings,
            head,
        ))
        .await;
        if !keep_going {
            return None;
        }
        if buffer.is_empty() {
            // An idle connection holds no buffer.
            buffer = BytesMut::new();
        }
    }
}

enum HeadRead {
    Head(Head),
    /// The client closed the connection (or a stop closed it) between requests.
    Closed,
    TimedOut,
    Rejected(Rejection),
}

/// Reads until the buffer holds a whole head. The head's clock (`--header-timeout`) starts
/// at once on a new connection or for a pipelined request, and at the first byte after an
/// idle keep-alive wait (which `--keep-alive-timeout` bounds), as Apache counts them.
async fn read_head<S: Transport>(
    stream: &mut S,
    buffer: &mut BytesMut,
    parser: &mut HeadParser,
    settings: &ConnectionSettings,
    closing: &mut watch::Receiver<bool>,
    accepted: Option<Instant>,
) -> HeadRead {
    let idle_since = Instant::now();
    let mut started = accepted.or_else(|| (!buffer.is_empty()).then_some(idle_since));
    let mut received = buffer.len() as u64;
    let mut timeout: Option<(Instant, CoarseSleep)> = None;
    loop {
        if !buffer.is_empty() {
            match parser.parse(buffer) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {}
                Err(rejection) => return HeadRead::Rejected(rejection),
            }
        }
        let deadline = match started {
            Some(start) => settings
                .timeouts
                .header
                .map(|rule| start + rule.allowed(received)),
            None => settings.timeouts.keep_alive.map(|limit| idle_since + limit),
        };
        if timeout.as_ref().map(|(armed, _)| *armed) != deadline {
            timeout = deadline.map(|deadline| (deadline, settings.timer.sleep_until(deadline)));
        }
        let idle = buffer.is_empty();
        let read = async {
            // The buffer is made only once bytes are there: an idle connection holds none.
            stream.readable().await?;
            if buffer.capacity() - buffer.len() < HEAD_READ_SIZE / 4 {
                buffer.reserve(HEAD_READ_SIZE);
            }
            // Through `AsyncRead`, not `try_read_buf`: a read shorter than the room given
            // tells tokio the socket is drained, which saves the read that would only
            // have said EAGAIN (one system call per request).
            let (mut reader, _) = stream.split();
            reader.read_buf(buffer).await
        };
        let expired = async {
            match timeout.as_mut() {
                Some((_, sleep)) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            read = read => match read {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(count) => {
                    super::metrics::global().received(count);
                    received += count as u64;
                    started.get_or_insert_with(Instant::now);
                }
            },
            () = expired => return if idle { HeadRead::Closed } else { HeadRead::TimedOut },
            _ = closing.wait_for(|closing| *closing), if idle => return HeadRead::Closed,
        }
    }
}

/// Answers a request refused before dispatch, then lets the connection close.
async fn refuse<S: Transport>(
    stream: &mut S,
    service: &Service,
    slot: &FileSlot,
    settings: &ConnectionSettings,
    response: handoff::Response,
) {
    let reply = service.front_end_reply(response);
    let asked = Asked {
        head: false,
        version: http::Version::HTTP_11,
        keep_alive: false,
    };
    let (_, mut writer) = stream.split();
    let _ = write_reply(&mut writer, slot, settings, asked, reply).await;
}

/// Serves one request whose head was parsed; true when the connection can carry the next.
async fn serve_request<S: Transport>(
    stream: &mut S,
    buffer: &mut BytesMut,
    service: &Service,
    slot: &FileSlot,
    settings: &ConnectionSettings,
    head: Head,
) -> bool {
    let Ok(target) = http::Uri::from_maybe_shared(head.target.clone()) else {
        let response = handoff::error_response(
            http::StatusCode::BAD_REQUEST,
            "The request target is not a valid URI.",
        );
        Box::pin(refuse(stream, service, slot, settings, response)).await;
        return false;
    };
    let asked = Asked {
        head: head.method == http::Method::HEAD,
        version: head.version,
        keep_alive: settings.timeouts.keep_alive.is_some() && wants_keep_alive(&head),
    };
    let expects_continue = head.version == http::Version::HTTP_11
        && head
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (body, mut feeder) =
        incoming::body_channel(head.framing, expects_continue, &Limits::default(), settings);
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = head.method;
    parts.uri = target;
    parts.version = head.version;
    parts.headers = head.headers;

    let (mut reader, mut writer) = stream.split();
    // Each phase is one await here, so that the compiler can lay the dispatch and the
    // response writer over the same bytes of this future: boxed once per request, its
    // size is copied once per request.
    // Until the response head: the body flows to whoever reads it.
    let replied = {
        let dispatched = std::pin::pin!(service.dispatch(&mut parts, body));
        while_feeding(
            dispatched,
            &mut feeder,
            &mut reader,
            buffer,
            Some(&mut writer),
        )
        .await
    };
    let Some(reply) = replied else {
        return false;
    };
    // The response, while the body still flows (an application may read and write at once).
    let written = {
        let writing = std::pin::pin!(write_reply(&mut writer, slot, settings, asked, reply));
        while_feeding::<_, _, S::Writer<'_>>(writing, &mut feeder, &mut reader, buffer, None).await
    };
    let Some(written) = written else {
        return false;
    };
    let keep_alive = matches!(written, Ok(Written::KeepAlive));
    if !keep_alive {
        return false;
    }
    // What the application left of the body is read and dropped, so the client can send
    // its next request; a client still waiting for `100 Continue` sent no body at all.
    match feeder {
        None => true,
        Some(feeder) if feeder.is_complete() => true,
        Some(feeder) if feeder.awaits_continue() => false,
        Some(mut feeder) => {
            feeder.discard_rest();
            let discard = async {
                while !feeder.is_finished() {
                    feeder.step(&mut reader, buffer).await;
                }
            };
            tokio::time::timeout(DISCARD_TIMEOUT, discard).await.is_ok() && feeder.is_complete()
        }
    }
}

/// Runs `work` to its end while the request body keeps flowing from the socket to
/// whoever reads it. A client waiting for `100 Continue` gets it on `continue_to` once
/// the body is asked for; with no writer (the response head is already out) none can be
/// sent, but the client may still send the body (RFC 9110 10.1.1). `None`: the interim
/// response could not be written, the client is gone.
async fn while_feeding<T, R: tokio::io::AsyncRead + Unpin, W: ResponseWriter>(
    mut work: std::pin::Pin<&mut impl Future<Output = T>>,
    feeder: &mut Option<incoming::BodyFeeder>,
    reader: &mut R,
    buffer: &mut BytesMut,
    mut continue_to: Option<&mut W>,
) -> Option<T> {
    loop {
        let fed = match feeder.as_mut() {
            Some(feeder) if !feeder.is_finished() => feeder,
            _ => return Some(work.await),
        };
        // The step is taken out of `select!` before anything else is awaited: its output
        // (as large as `T`) would otherwise be kept across that await.
        let step = tokio::select! {
            done = &mut work => return Some(done),
            step = fed.step(reader, buffer) => step,
        };
        if let Fed::WantsContinue = step {
            if let Some(writer) = continue_to.as_deref_mut() {
                send_continue(writer).await.ok()?;
            }
            fed.continue_sent();
        }
    }
}

/// `HTTP/1.1 100 Continue`: the client may send the body it announced.
async fn send_continue<W: ResponseWriter>(writer: &mut W) -> std::io::Result<()> {
    let mut line: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    while !line.is_empty() || writer.has_pending() {
        if !line.is_empty() {
            match writer.try_write_vectored(&[std::io::IoSlice::new(line)]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    line = &line[written..];
                    continue;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        writer.writable().await?;
    }
    Ok(())
}

/// RFC 9112 9.3: HTTP/1.1 stays open unless the client says `close`; HTTP/1.0 closes
/// unless it says `keep-alive`.
fn wants_keep_alive(head: &Head) -> bool {
    let says = |token: &[u8]| {
        head.headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|value| has_token(value.as_bytes(), token))
    };
    if head.version == http::Version::HTTP_11 {
        !says(b"close")
    } else {
        says(b"keep-alive")
    }
}

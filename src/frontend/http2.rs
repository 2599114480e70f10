//! HTTP/2 connections (`--http2`): over TLS when ALPN chose `h2`, and in the clear (h2c)
//! when a plain connection opened with the HTTP/2 preface (prior knowledge; the HTTP/1
//! connection hands it over with the bytes it read, replayed by [`Rewind`]).
//!
//! hyper's HTTP/2 server does the framing, HPACK and flow control; the request path stays
//! the front end's own: each stream's request becomes `http::request::Parts` and an
//! [`IncomingBody`] (fed from hyper's body by a small task, within `--body-timeout`), goes
//! through the same [`Service::dispatch`] as an HTTP/1 request, and its [`Reply`] is
//! turned into a response for hyper: no hop-by-hop fields, no body for HEAD, file bodies
//! as bytes (no sendfile slot: every byte is framed). hyper spawns a task per stream, so
//! streams of one connection are answered at once.
//!
//! Bounds: [`MAX_CONCURRENT_STREAMS`] per connection, a window of [`STREAM_WINDOW`] bytes
//! per stream and [`CONNECTION_WINDOW`] per connection (what a client may send before a
//! reader took it), [`MAX_SEND_BUFFER`] per stream queued towards a slow client, and the
//! HTTP/1 parser's limits on header fields. A connection with no stream open is closed
//! with GOAWAY after `--keep-alive-timeout` (before its first request, after
//! `--header-timeout`), and when a stop closes idle connections: streams in flight end
//! first (hyper's graceful shutdown). A client that reads nothing for
//! `--response-socket-timeout` does not answer hyper's ping, and its connection is closed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::body::{LoggedBody, ResponseAborted};
use super::connection::{ConnectionSettings, IncomingBody, IncomingError, Reply};
use super::dispatch::Service;
use super::http1::head::Limits;
use super::timeouts::{TimedOut, within};
use crate::handoff;

/// Streams a client may have open at once on one connection (`mod_http2`'s
/// `H2MaxSessionStreams` default); more wait in the client.
pub(super) const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Request body bytes one stream may have in flight before the application reads them.
pub(super) const STREAM_WINDOW: u32 = 256 * 1024;
/// Request body bytes all streams of a connection may have in flight together.
pub(super) const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes queued for one stream ahead of the client's window.
pub(super) const MAX_SEND_BUFFER: usize = 256 * 1024;
/// How long a connection that was sent GOAWAY, with no stream open, waits for the client
/// to acknowledge it before it is closed anyway.
const GOAWAY_GRACE: Duration = Duration::from_secs(2);
/// The largest header block accepted (HPACK-decoded, 32 bytes counted per field); each
/// field is also held to the HTTP/1 limits.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// Serves one HTTP/2 connection until the client closes it, it stays idle too long, or a
/// stop closes it (after its streams end). `io` starts with the client's preface.
pub(super) async fn serve<IO>(
    io: IO,
    service: Service,
    settings: Arc<ConnectionSettings>,
    accepted: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Arc::new(service.without_file_slot());
    let activity = Arc::new(Activity::new(accepted));
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buf_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST);
    if let Some(limit) = settings.timeouts.write {
        // `--response-socket-timeout`: a client that takes nothing for that long (not
        // even a ping, so not the stream's window) is closed, and its streams' threads
        // are let go.
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(limit)
            .keep_alive_timeout(limit);
    }
    let answer = {
        let settings = Arc::clone(&settings);
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let open = activity.open();
            let service = Arc::clone(&service);
            let settings = Arc::clone(&settings);
            async move {
                Ok::<_, std::convert::Infallible>(answer(&service, &settings, request, open).await)
            }
        })
    };
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), answer);
    let mut connection = std::pin::pin!(connection);
    let mut closing = settings.closing.clone();
    // GOAWAY went out (hyper's graceful shutdown, which ends the connection once the
    // client answered its ping and the streams in flight ended).
    let mut goaway_sent = false;
    loop {
        let deadline = if goaway_sent {
            Some(Instant::now() + GOAWAY_GRACE)
        } else {
            activity.idle_deadline(&settings)
        };
        let expired = async {
            match deadline {
                Some(deadline) => settings.timer.sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            () = expired => {
                if !goaway_sent {
                    if activity.idle_past(&settings) {
                        connection.as_mut().graceful_shutdown();
                        goaway_sent = true;
                    }
                } else if activity.open_streams() == 0 {
                    // A client that never answers the ping after GOAWAY would hold the
                    // connection open: once no stream is open, it is closed.
                    return;
                }
            }
            // The last open stream ended: the idle clock starts now.
            () = activity.became_idle.notified() => {}
            _ = closing.wait_for(|closing| *closing), if !goaway_sent => {
                connection.as_mut().graceful_shutdown();
                goaway_sent = true;
            }
        }
    }
}

/// The HTTP/2 connection, boxed, when the TLS handshake chose h2 by ALPN; else the stream
/// back, for HTTP/1. Not async: the stream is not kept across an await of the caller's
/// (whose future is the TLS connection's task).
// The stream goes back by value once per connection: boxing it would cost every HTTP/1
// TLS connection an allocation.
#[allow(clippy::result_large_err)]
pub(super) fn over_tls(
    stream: TlsStream<TcpStream>,
    service: &Service,
    settings: &Arc<ConnectionSettings>,
    accepted: Instant,
) -> Result<Pin<Box<dyn Future<Output = ()> + Send>>, TlsStream<TcpStream>> {
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Ok(Box::pin(serve(
            stream,
            service.clone(),
            Arc::clone(settings),
            accepted,
        )))
    } else {
        Err(stream)
    }
}

/// One stream's request, answered.
async fn answer(
    service: &Service,
    settings: &ConnectionSettings,
    request: hyper::Request<Incoming>,
    open: OpenStream,
) -> hyper::Response<StreamBody> {
    let (mut parts, incoming) = request.into_parts();
    let head = parts.method == http::Method::HEAD;
    // First: cookie crumbs count as one field, as the HTTP/1 request would carry them.
    to_origin_form(&mut parts);
    let reply = if let Some(response) = refusal(&parts) {
        service.front_end_reply(response)
    } else {
        let body = request_body(incoming, settings);
        service.dispatch(&mut parts, body).await
    };
    response(reply, head, open)
}

/// What the front end answers itself: the HTTP/1 parser's limits on fields and the
/// target, and CONNECT (no tunnels here).
fn refusal(parts: &http::request::Parts) -> Option<handoff::Response> {
    let limits = Limits::default();
    if parts.headers.len() > limits.max_fields {
        return Some(handoff::error_response(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "The request has more than {} header fields.",
                limits.max_fields
            ),
        ));
    }
    // As on HTTP/1: name, colon, space and value.
    if parts
        .headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > limits.max_field_size)
    {
        return Some(handoff::error_response(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "A request header field is longer than {} bytes.",
                limits.max_field_size
            ),
        ));
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > limits.max_request_line {
        return Some(handoff::error_response(
            http::StatusCode::URI_TOO_LONG,
            &format!(
                "The request target is longer than {} bytes.",
                limits.max_request_line
            ),
        ));
    }
    if parts.method == http::Method::CONNECT {
        return Some(handoff::error_response(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served here.",
        ));
    }
    None
}

/// An HTTP/2 request names its target with `:scheme`, `:authority` and `:path`, which
/// hyper gives as an absolute URI: the request goes on as an HTTP/1 one would, with the
/// path and query as its target and `:authority` as Host when the client sent no Host.
/// Cookies split into several fields are joined again (RFC 9113 8.2.3).
fn to_origin_form(parts: &mut http::request::Parts) {
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(http::header::HOST, host);
            }
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = http::Uri::from(target);
    }
    let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for cookie in parts.headers.get_all(http::header::COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(cookie.as_bytes());
        }
        if let Ok(joined) = http::HeaderValue::from_bytes(&joined) {
            parts.headers.insert(http::header::COOKIE, joined);
        }
    }
}

/// The stream's request body as the backend reads it: a task takes hyper's frames (which
/// gives the client its window back) only as the reader makes room, within
/// `--body-timeout`.
fn request_body(incoming: Incoming, settings: &ConnectionSettings) -> IncomingBody {
    if incoming.is_end_stream() {
        return IncomingBody::empty();
    }
    let (body, sender) = IncomingBody::channel();
    let rule = settings.timeouts.body;
    let timer = settings.timer.clone();
    tokio::spawn(async move {
        let mut incoming = incoming;
        let mut received = 0_u64;
        let mut waited = Duration::ZERO;
        loop {
            let Some(permit) = sender.reserve().await else {
                // Nobody reads: dropping `incoming` resets the stream.
                return;
            };
            let limit = rule.map(|rule| rule.allowed(received).saturating_sub(waited));
            let began = Instant::now();
            let frame = within(&timer, limit, incoming.frame()).await;
            waited += began.elapsed();
            let error = match frame {
                Ok(Some(Ok(frame))) => {
                    // Trailers are not passed on (nor are they on HTTP/1).
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            received += data.len() as u64;
                            super::metrics::global().received(data.len());
                            permit.send(Ok(data));
                        }
                    }
                    continue;
                }
                Ok(None) => {
                    drop(permit);
                    sender.finish();
                    return;
                }
                Ok(Some(Err(error))) => IncomingError::Io(std::io::Error::other(error)),
                Err(TimedOut) => IncomingError::TimedOut,
            };
            permit.send(Err(Box::new(error)));
            return;
        }
    });
    body
}

/// The fields HTTP/2 forbids (RFC 9113 8.2.2): they describe an HTTP/1 connection.
const HOP_BY_HOP: [http::HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TE,
    http::HeaderName::from_static("keep-alive"),
];

fn response(reply: Reply, head: bool, open: OpenStream) -> hyper::Response<StreamBody> {
    let Reply {
        status,
        reason: _,
        mut headers,
        body,
    } = reply;
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    let mut response = hyper::Response::new(StreamBody {
        body,
        head,
        _open: open,
    });
    *response.status_mut() = status;
    *response.version_mut() = http::Version::HTTP_2;
    *response.headers_mut() = headers;
    response
}

/// A stream's response body: the front end's [`LoggedBody`] (whose drop writes the access
/// log line), or nothing for HEAD; it keeps its stream counted as open until hyper is
/// done with it.
struct StreamBody {
    body: LoggedBody,
    head: bool,
    _open: OpenStream,
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = ResponseAborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseAborted>>> {
        if self.head {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.head {
            // Not exact: hyper would write it as the Content-Length of the GET.
            SizeHint::default()
        } else {
            self.body.size_hint()
        }
    }
}

/// How many streams of a connection are open, and since when none is: the idle clock.
struct Activity {
    accepted: Instant,
    open: AtomicUsize,
    /// Nanoseconds from `accepted` to the moment the last open stream ended; `u64::MAX`
    /// until a first request came.
    idle_since: AtomicU64,
    /// Told when the last open stream ends, so that the connection's task arms the
    /// keep-alive deadline from then.
    became_idle: tokio::sync::Notify,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(u64::MAX),
            became_idle: tokio::sync::Notify::new(),
        }
    }

    fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(self))
    }

    /// When an idle connection is closed: `--header-timeout`'s allowance from the accept
    /// before the first request; `--keep-alive-timeout` (or, with keep-alive off, the
    /// header allowance) from the end of the last stream after. With streams open, the
    /// same span from now, to look again.
    fn idle_deadline(&self, settings: &ConnectionSettings) -> Option<Instant> {
        let header = settings.timeouts.header.map(|rule| rule.allowed(0));
        let since = self.idle_since.load(Ordering::Relaxed);
        if since == u64::MAX {
            return header.map(|limit| self.accepted + limit);
        }
        let limit = settings.timeouts.keep_alive.or(header)?;
        if self.open.load(Ordering::Relaxed) > 0 {
            return Some(Instant::now() + limit);
        }
        Some(self.accepted + Duration::from_nanos(since) + limit)
    }

    fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// True when no stream is open and the connection has been idle past its limit.
    fn idle_past(&self, settings: &ConnectionSettings) -> bool {
        self.open.load(Ordering::Relaxed) == 0
            && self
                .idle_deadline(settings)
                .is_some_and(|deadline| deadline <= Instant::now())
    }
}

/// A stream counted as open (from its request to the end of its response).
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let since = u64::try_from(self.0.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.0.idle_since.store(since, Ordering::Relaxed);
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.became_idle.notify_one();
        }
    }
}

/// A stream that gives `read` first, then the rest of `inner`: an h2c connection whose
/// first bytes the HTTP/1 connection already read.
pub(super) struct Rewind<S> {
    read: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(read: BytesMut, inner: S) -> Self {
        Self { read, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let count = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..count]);
            self.read.advance(count);
            if self.read.is_empty() {
                self.read = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! One proxied exchange with hyper's HTTP/1 client: a connection to the upstream (kept
//! for the next request for a second, per reactor thread), the request body streamed to
//! it as the client sends it, the response body streamed back through a bounded channel,
//! `--proxy-timeout` as the longest wait for the connection, and then for any progress
//! (the request body going out, the response head, each piece of the response body), as
//! Apache's `ProxyTimeout` is.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::Forward;
use super::headers::{self, Client};
use crate::handoff::{self, ConnectionInfo, StreamAborted};
use crate::logs::{Level, error_log};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a proxied request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The connection could not be made (502).
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    /// No connection, or no progress, within `--proxy-timeout` (504).
    #[error("{url} did not answer within --proxy-timeout ({seconds} seconds)")]
    TimedOut { url: String, seconds: u64 },
    /// The upstream broke the exchange or answered with something that is not HTTP (502).
    #[error("{url} failed: {source}")]
    Upstream { url: String, source: hyper::Error },
    /// The client's body could not be read; the caller answers it (400, 408, 413).
    #[error("the request body could not be read: {0}")]
    RequestBody(BoxError),
}

impl ForwardError {
    /// The status a client gets for it; `None` for a request body error, which the
    /// caller maps.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Self::Connect { .. } | Self::Upstream { .. } => Some(http::StatusCode::BAD_GATEWAY),
            Self::TimedOut { .. } => Some(http::StatusCode::GATEWAY_TIMEOUT),
            Self::RequestBody(_) => None,
        }
    }
}

/// Forwards one request (`method`, the client's `headers`, its `body`) to the upstream
/// `forward` names, and gives the upstream's response with its body streaming.
pub async fn forward<B>(
    forward: &Forward<'_>,
    timeout: Duration,
    method: http::Method,
    mut request_headers: http::HeaderMap,
    body: B,
    connection: &ConnectionInfo,
) -> Result<handoff::Response, ForwardError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let url = forward.upstream.url.clone();
    let timed_out = || ForwardError::TimedOut {
        url: url.clone(),
        seconds: timeout.as_secs(),
    };
    let request_host = request_headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned);
    headers::request(
        &mut request_headers,
        forward,
        &Client {
            address: connection.remote_addr.ip(),
            local_port: connection.local_addr.port(),
            https: connection.https,
        },
    );
    let progress = Progress::new();
    // hyper never reads a body that says it is empty.
    progress
        .body_ended
        .store(body.is_end_stream(), Ordering::Relaxed);
    let mut request = http::Request::new(
        Watched {
            body,
            progress: Arc::clone(&progress),
        }
        .boxed_unsync(),
    );
    *request.method_mut() = method;
    *request.uri_mut() = forward
        .path_and_query
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    *request.headers_mut() = request_headers;

    let authority = forward.upstream.authority.as_str();
    let (sender, response) = loop {
        let (mut sender, reused) = match idle::checkout(authority) {
            Some(sender) => (sender, true),
            None => (connect(authority, timeout, &url).await?, false),
        };
        // A kept connection is ready at once unless it closed meanwhile: then the next.
        if reused
            && !matches!(
                tokio::time::timeout(timeout, sender.ready()).await,
                Ok(Ok(()))
            )
        {
            continue;
        }
        // The connection was had within its own timeout: the wait for progress starts now.
        progress.touch();
        let sending = sender.try_send_request(request);
        tokio::pin!(sending);
        let sent = loop {
            let deadline = progress.last() + timeout;
            tokio::select! {
                sent = &mut sending => break sent,
                () = tokio::time::sleep_until(deadline.into()) => {
                    if progress.last() + timeout <= Instant::now() {
                        return Err(timed_out());
                    }
                }
            }
        };
        match sent {
            Ok(response) => break (sender, response),
            Err(mut error) => {
                // A kept connection the upstream closed before the request went out:
                // the request is whole, and goes on a new connection.
                if reused {
                    if let Some(message) = error.take_message() {
                        request = message;
                        continue;
                    }
                }
                return Err(upstream_error(error.into_error(), &url));
            }
        }
    };
    let (mut parts, incoming) = response.into_parts();
    headers::response(
        &mut parts.headers,
        forward,
        request_host.as_deref(),
        connection.https,
    );
    parts
        .headers
        .insert(super::PROXIED, http::HeaderValue::from_static("1"));
    let keep = Keep {
        sender,
        authority: authority.to_owned(),
        progress,
    };
    let body = if incoming.is_end_stream() {
        keep.check_in();
        handoff::ResponseBody::Full(Vec::new())
    } else {
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        tokio::spawn(pump(
            incoming,
            sender,
            timeout,
            url,
            connection.remote_addr,
            keep,
        ));
        handoff::ResponseBody::Stream(receiver)
    };
    Ok(handoff::Response {
        status: parts.status,
        reason: None,
        headers: parts.headers,
        body,
    })
}

/// Moves the upstream's response body to the client's writer, a piece at a time: the
/// channel holds a few pieces, so a slow client slows the upstream down instead of
/// filling memory.
async fn pump(
    mut incoming: hyper::body::Incoming,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, StreamAborted>>,
    timeout: Duration,
    url: String,
    client: std::net::SocketAddr,
    keep: Keep,
) {
    loop {
        let problem = match tokio::time::timeout(timeout, incoming.frame()).await {
            Ok(None) => {
                keep.check_in();
                return;
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() && sender.send(Ok(data)).await.is_err() {
                        // The client left: dropping the body closes the upstream connection.
                        return;
                    }
                }
                continue;
            }
            Ok(Some(Err(error))) => format!("the response body from {url} failed: {error}"),
            Err(_) => format!(
                "the response body from {url} stalled for --proxy-timeout ({} seconds)",
                timeout.as_secs()
            ),
        };
        error_log::log_with_context(Level::Error, "proxy", Some(&client.to_string()), &problem);
        let _ = sender.send(Err(StreamAborted)).await;
        return;
    }
}

/// Opens a connection to `authority` and starts its task (which ends when the connection
/// closes: dropped from the pool, closed by the upstream, or failed).
async fn connect(authority: &str, timeout: Duration, url: &str) -> Result<Sender, ForwardError> {
    let stream =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
            Err(_) => {
                return Err(ForwardError::TimedOut {
                    url: url.to_owned(),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(Err(source)) => {
                return Err(ForwardError::Connect {
                    url: url.to_owned(),
                    source,
                });
            }
            Ok(Ok(stream)) => stream,
        };
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| upstream_error(source, url))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A hyper error as the caller sees it: the client's body failing is told apart.
fn upstream_error(source: hyper::Error, url: &str) -> ForwardError {
    match source
        .source()
        .and_then(|cause| cause.downcast_ref::<BodyFailed>())
    {
        Some(_) => ForwardError::RequestBody(take_body_error(source)),
        None => ForwardError::Upstream {
            url: url.to_owned(),
            source,
        },
    }
}

type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyFailed>;
type Sender = hyper::client::conn::http1::SendRequest<ProxyBody>;

/// A connection whose exchange is under way, to be kept for the next request once the
/// response body has ended (and the request body too: a connection still sending a body
/// the upstream did not wait for is not ready for anyone else).
struct Keep {
    sender: Sender,
    authority: String,
    progress: Arc<Progress>,
}

impl Keep {
    fn check_in(self) {
        if self.progress.body_ended.load(Ordering::Relaxed) && !self.sender.is_closed() {
            idle::check_in(self.authority, self.sender);
        }
    }
}

/// Connections to upstreams kept between requests, per reactor thread (each reactor's
/// connections are driven by its own runtime): a few per upstream, for a short while,
/// newest first.
mod idle {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::Sender;

    /// Shorter than the keep-alive timeouts of common upstreams (gunicorn's is 2 s), so
    /// that a kept connection is rarely one the upstream is closing.
    const KEPT_FOR: Duration = Duration::from_secs(1);
    const PER_UPSTREAM: usize = 16;

    thread_local! {
        static IDLE: RefCell<HashMap<String, Vec<(Sender, Instant)>>> =
            RefCell::new(HashMap::new());
    }

    pub(super) fn checkout(authority: &str) -> Option<Sender> {
        IDLE.with_borrow_mut(|idle| {
            let kept = idle.get_mut(authority)?;
            while let Some((sender, since)) = kept.pop() {
                if since.elapsed() < KEPT_FOR && !sender.is_closed() {
                    return Some(sender);
                }
            }
            None
        })
    }

    pub(super) fn check_in(authority: String, sender: Sender) {
        IDLE.with_borrow_mut(|idle| {
            let kept = idle.entry(authority).or_default();
            kept.retain(|(sender, since)| since.elapsed() < KEPT_FOR && !sender.is_closed());
            if kept.len() < PER_UPSTREAM {
                kept.push((sender, Instant::now()));
            }
        });
    }
}

/// When the exchange last made progress (the request body moved), shared with the body.
struct Progress {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
    /// The request body went out to its end.
    body_ended: AtomicBool,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            body_ended: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// The client's request body on its way to the upstream, noting progress; its errors
/// are wrapped so that they can be told from the upstream's.
struct Watched<B> {
    body: B,
    progress: Arc<Progress>,
}

/// A request body error, as hyper carries it back.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read")]
struct BodyFailed(std::sync::Mutex<Option<BoxError>>);

fn take_body_error(error: hyper::Error) -> BoxError {
    error
        .source()
        .and_then(|cause| cause.downcast_ref::<BodyFailed>())
        .and_then(|failed| failed.0.lock().ok()?.take())
        .unwrap_or_else(|| Box::new(error))
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.progress.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(BodyFailed(
                std::sync::Mutex::new(Some(error.into())),
            )))),
            Poll::Ready(None) => {
                self.progress.touch();
                self.progress.body_ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

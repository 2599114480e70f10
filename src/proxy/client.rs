//! One proxied exchange with hyper's HTTP/1 client: a connection to the upstream per
//! request, the request body streamed to it as the client sends it, the response body
//! streamed back through a bounded channel, `--proxy-timeout` as the longest wait for
//! the connection, and then for any progress (the request body going out, the response
//! head, each piece of the response body), as Apache's `ProxyTimeout` is.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    let stream = match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect(forward.upstream.authority.as_str()),
    )
    .await
    {
        Err(_) => return Err(timed_out()),
        Ok(Err(source)) => {
            return Err(ForwardError::Connect {
                url: url.clone(),
                source,
            });
        }
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, exchange) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| ForwardError::Upstream {
                url: url.clone(),
                source,
            })?;
    // Ends when the response body is read to its end or dropped; its errors reach the
    // response or its body.
    tokio::spawn(async move {
        let _ = exchange.await;
    });

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
    let mut request = http::Request::new(Watched {
        body,
        progress: Arc::clone(&progress),
    });
    *request.method_mut() = method;
    *request.uri_mut() = forward
        .path_and_query
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    *request.headers_mut() = request_headers;

    let sending = sender.send_request(request);
    tokio::pin!(sending);
    let response = loop {
        let deadline = progress.last() + timeout;
        tokio::select! {
            response = &mut sending => break response,
            () = tokio::time::sleep_until(deadline.into()) => {
                if progress.last() + timeout <= Instant::now() {
                    return Err(timed_out());
                }
            }
        }
    };
    let response = response.map_err(|source| {
        match source
            .source()
            .and_then(|cause| cause.downcast_ref::<BodyFailed>())
        {
            Some(_) => ForwardError::RequestBody(take_body_error(source)),
            None => ForwardError::Upstream {
                url: url.clone(),
                source,
            },
        }
    })?;
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
    let body = if incoming.is_end_stream() {
        handoff::ResponseBody::Full(Vec::new())
    } else {
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        tokio::spawn(pump(incoming, sender, timeout, url, connection.remote_addr));
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
) {
    loop {
        let problem = match tokio::time::timeout(timeout, incoming.frame()).await {
            Ok(None) => return,
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

/// When the exchange last made progress (the request body moved), shared with the body.
struct Progress {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
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

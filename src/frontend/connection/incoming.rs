//! A request body on its way off the connection: the connection task decodes it
//! (Content-Length or chunked, [`BodyFeeder`]) and passes the bytes through a small
//! channel to whoever reads them (an application thread, the daemon pump), which holds the
//! other end, [`IncomingBody`].
//!
//! The channel holds two chunks: a reader that stops reading stops the connection reading
//! too. A body that ends for any reason other than its last byte (the client left, sent a
//! broken chunk, the connection task ended) reads as an error, never as a shorter body:
//! the end is good only when the feeder said so (`Shared::complete`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, mpsc};

use super::ConnectionSettings;
use crate::client_timeouts::ReadTimeout;
use crate::frontend::coarse_timer::CoarseTimer;
use crate::frontend::http1::head::{BodyFraming, Limits};
use crate::frontend::http1::{ChunkedDecoder, Decoded, Rejection};
use crate::frontend::timeouts::{TimedOut, within};

/// The error a request body's frames carry.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Chunks in flight between the connection and the reader.
const CHANNEL_CHUNKS: usize = 2;
/// Room made in the read buffer before each read of body bytes.
const BODY_READ_SIZE: usize = 64 * 1024;
/// Most unread request body bytes read and thrown away to keep a connection alive, as
/// Apache does; past it the connection is closed instead.
const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IncomingError {
    #[error("the client closed the connection before sending the whole request body")]
    ClientLeft,
    #[error("the request body is malformed: {0}")]
    Malformed(Rejection),
    #[error("reading the request body failed: {0}")]
    Io(std::io::Error),
    #[error("the client took longer than --body-timeout allows to send the request body")]
    TimedOut,
}

/// What the feeder and the reading end share.
#[derive(Default)]
struct Shared {
    /// The last byte of the body was handed over: the channel's end is the body's end.
    complete: AtomicBool,
    /// The reader asked for the body (the client of an `Expect: 100-continue` waits for it).
    wanted: Notify,
}

/// The reading end of a request body.
pub(crate) struct IncomingBody {
    chunks: Option<mpsc::Receiver<Result<Bytes, BodyError>>>,
    shared: Arc<Shared>,
    /// Set until the first poll, when the client waits for `100 Continue`.
    announce_want: bool,
}

impl IncomingBody {
    /// A request without a body.
    pub(crate) fn empty() -> Self {
        Self {
            chunks: None,
            shared: Arc::default(),
            announce_want: false,
        }
    }

    /// A body fed by another protocol's connection (HTTP/2: `frontend/http2.rs`), which
    /// hands its chunks to the [`BodySender`] and says when the body is whole.
    pub(crate) fn channel() -> (Self, BodySender) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let shared = Arc::new(Shared::default());
        let body = Self {
            chunks: Some(receiver),
            shared: Arc::clone(&shared),
            announce_want: false,
        };
        (
            body,
            BodySender {
                chunks: sender,
                shared,
            },
        )
    }

    /// The client waits for `100 Continue` (which the first read sends) before it sends
    /// the body: reading ahead would wait for nothing.
    pub(crate) fn awaits_continue(&self) -> bool {
        self.announce_want
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if std::mem::take(&mut self.announce_want) {
            self.shared.wanted.notify_one();
        }
        let Some(chunks) = self.chunks.as_mut() else {
            return Poll::Ready(None);
        };
        match chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(Some(Err(error))) => {
                self.chunks = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.chunks = None;
                if self.shared.complete.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Box::new(IncomingError::ClientLeft))))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_none()
    }
}

/// The sending end of [`IncomingBody::channel`]: the same two-chunk channel as an HTTP/1
/// body, so a reader that stops reading stops the sender too. Dropped without
/// [`BodySender::finish`], the body reads as cut short.
pub(crate) struct BodySender {
    chunks: mpsc::Sender<Result<Bytes, BodyError>>,
    shared: Arc<Shared>,
}

impl BodySender {
    /// Waits for room for one chunk; `None` once the reader is gone.
    pub(crate) async fn reserve(&self) -> Option<mpsc::Permit<'_, Result<Bytes, BodyError>>> {
        self.chunks.reserve().await.ok()
    }

    /// The body is whole: the reader sees its end once it took what is in the channel.
    pub(crate) fn finish(self) {
        self.shared.complete.store(true, Ordering::Release);
    }
}

/// How far the feeder got.
pub(super) enum Fed {
    /// Body bytes were handed over (or dropped): call again.
    Progress,
    /// The reader asked for the body of an `Expect: 100-continue` request: the connection
    /// sends `100 Continue` (if no response went out yet) and calls
    /// [`BodyFeeder::continue_sent`].
    WantsContinue,
    /// The body is read to its end.
    Complete,
    /// The body cannot be read to its end; the connection must close after the response.
    Failed,
}

enum Decoding {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// The connection's end of a request body: decodes it from the connection's read buffer
/// and socket and hands it to the reader, or drops it once nobody reads it.
pub(super) struct BodyFeeder {
    decoding: Decoding,
    /// `None` once the reader is gone: the rest of the body is read and dropped.
    chunks: Option<mpsc::Sender<Result<Bytes, BodyError>>>,
    shared: Arc<Shared>,
    /// The client waits for `100 Continue` before it sends the body.
    awaiting_continue: bool,
    discarded: u64,
    state: FeedState,
    /// `--body-timeout` and its companions; `None` when off.
    timeout: Option<ReadTimeout>,
    timer: CoarseTimer,
    /// Body bytes received, and time spent waiting for them.
    received: u64,
    waited: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FeedState {
    Reading,
    Complete,
    Failed,
}

/// The two ends of the body of a request with this framing; `None` for no body.
pub(super) fn body_channel(
    framing: BodyFraming,
    expects_continue: bool,
    limits: &Limits,
    settings: &ConnectionSettings,
) -> (IncomingBody, Option<BodyFeeder>) {
    let decoding = match framing {
        BodyFraming::None | BodyFraming::Length(0) => return (IncomingBody::empty(), None),
        BodyFraming::Length(length) => Decoding::Length { remaining: length },
        BodyFraming::Chunked => Decoding::Chunked(ChunkedDecoder::new(limits)),
    };
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let shared = Arc::new(Shared::default());
    let body = IncomingBody {
        chunks: Some(receiver),
        shared: Arc::clone(&shared),
        announce_want: expects_continue,
    };
    let feeder = BodyFeeder {
        decoding,
        chunks: Some(sender),
        shared,
        awaiting_continue: expects_continue,
        discarded: 0,
        state: FeedState::Reading,
        timeout: settings.timeouts.body,
        timer: settings.timer.clone(),
        received: 0,
        waited: Duration::ZERO,
    };
    (body, Some(feeder))
}

/// What the read buffer gave.
enum Taken {
    /// Body bytes; `last` when they end the body.
    Data {
        data: Bytes,
        last: bool,
    },
    NeedMore,
    Complete,
    Invalid(Rejection),
}

impl BodyFeeder {
    /// True once nothing is left to do: the body ended or failed.
    pub(super) fn is_finished(&self) -> bool {
        self.state != FeedState::Reading
    }

    /// True when the body was read to its end: the connection can carry another request.
    pub(super) fn is_complete(&self) -> bool {
        self.state == FeedState::Complete
    }

    /// The client still waits for `100 Continue` and has sent no body.
    pub(super) fn awaits_continue(&self) -> bool {
        self.awaiting_continue
    }

    /// `100 Continue` went out (or will never be sent: a response came first).
    pub(super) fn continue_sent(&mut self) {
        self.awaiting_continue = false;
    }

    /// Stops handing the body over: what is left is read and dropped (up to a limit).
    pub(super) fn discard_rest(&mut self) {
        self.chunks = None;
    }

    /// One step: waits for what is needed (the reader's demand, bytes from the client) and
    /// hands over or drops one piece of the body. Cancel-safe: state changes only after
    /// the await that completes, so it may be raced against the response in `select!`.
    pub(super) async fn step<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buffer: &mut BytesMut,
    ) -> Fed {
        if self.is_finished() {
            return std::future::pending().await;
        }
        if self.awaiting_continue {
            if let Some(chunks) = &self.chunks {
                tokio::select! {
                    () = self.shared.wanted.notified() => return Fed::WantsContinue,
                    () = chunks.closed() => {}
                }
            }
            // Read by nobody, and the client sends nothing before 100: the connection
            // cannot carry another request.
            self.chunks = None;
            self.state = FeedState::Failed;
            return Fed::Failed;
        }
        if let Some(chunks) = &self.chunks {
            // Room in the channel before reading from the client: a reader that stops
            // reading stops the connection reading. The feeder is the only sender, so the
            // room is still there when the bytes are handed over.
            if chunks.reserve().await.is_err() {
                self.chunks = None;
                return Fed::Progress;
            }
        }
        let taken = match self.take_from(buffer) {
            Taken::NeedMore => {
                if buffer.capacity() - buffer.len() < BODY_READ_SIZE / 4 {
                    buffer.reserve(BODY_READ_SIZE);
                }
                match self.read(reader, buffer).await {
                    Ok(0) => return self.fail(IncomingError::ClientLeft),
                    Ok(_) => self.take_from(buffer),
                    Err(error) => return self.fail(error),
                }
            }
            taken => taken,
        };
        match taken {
            Taken::Data { data, last } => {
                if let Some(chunks) = &self.chunks {
                    let _ = chunks.try_send(Ok(data));
                } else {
                    self.discarded += data.len() as u64;
                    if self.discarded > DISCARD_LIMIT {
                        self.state = FeedState::Failed;
                        return Fed::Failed;
                    }
                }
                if last {
                    self.finish();
                    Fed::Complete
                } else {
                    Fed::Progress
                }
            }
            Taken::NeedMore => Fed::Progress,
            Taken::Complete => {
                self.finish();
                Fed::Complete
            }
            Taken::Invalid(rejection) => self.fail(IncomingError::Malformed(rejection)),
        }
    }

    /// Reads more of the body from the client, within what is left of `--body-timeout`.
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buffer: &mut BytesMut,
    ) -> Result<usize, IncomingError> {
        let Some(rule) = self.timeout else {
            let read = reader.read_buf(buffer).await.map_err(IncomingError::Io);
            if let Ok(count) = read {
                crate::frontend::metrics::global().received(count);
            }
            return read;
        };
        let left = rule.allowed(self.received).saturating_sub(self.waited);
        let began = Instant::now();
        let read = within(&self.timer, Some(left), reader.read_buf(buffer)).await;
        self.waited += began.elapsed();
        match read {
            Ok(Ok(count)) => {
                crate::frontend::metrics::global().received(count);
                self.received += count as u64;
                Ok(count)
            }
            Ok(Err(error)) => Err(IncomingError::Io(error)),
            Err(TimedOut) => Err(IncomingError::TimedOut),
        }
    }

    /// Takes the next piece of body from the front of `buffer`.
    fn take_from(&mut self, buffer: &mut BytesMut) -> Taken {
        match &mut self.decoding {
            Decoding::Length { remaining } => {
                if buffer.is_empty() {
                    return Taken::NeedMore;
                }
                let take =
                    usize::try_from(*remaining).map_or(buffer.len(), |r| r.min(buffer.len()));
                *remaining -= take as u64;
                Taken::Data {
                    data: buffer.split_to(take).freeze(),
                    last: *remaining == 0,
                }
            }
            Decoding::Chunked(decoder) => loop {
                if buffer.is_empty() {
                    return Taken::NeedMore;
                }
                match decoder.decode(buffer) {
                    Err(rejection) => return Taken::Invalid(rejection),
                    Ok((consumed, Decoded::Data(data))) => {
                        let length = data.len();
                        buffer.advance(consumed - length);
                        return Taken::Data {
                            data: buffer.split_to(length).freeze(),
                            last: false,
                        };
                    }
                    Ok((consumed, Decoded::NeedMore)) => buffer.advance(consumed),
                    Ok((consumed, Decoded::Done)) => {
                        buffer.advance(consumed);
                        return Taken::Complete;
                    }
                }
            },
        }
    }

    fn finish(&mut self) {
        self.state = FeedState::Complete;
        self.shared.complete.store(true, Ordering::Release);
        // The reader sees the end once it took what is in the channel.
        self.chunks = None;
    }

    fn fail(&mut self, error: IncomingError) -> Fed {
        if let Some(chunks) = &self.chunks {
            // Room was reserved before the read that failed.
            let _ = chunks.try_send(Err(Box::new(error)));
        }
        self.state = FeedState::Failed;
        self.chunks = None;
        Fed::Failed
    }
}

//! The request body of a connection as the backends read it: held to
//! `--limit-request-body`, with what was read ahead; and as the executor's blocking
//! [`BodySource`].
//!
//! The connection de-chunks and enforces Content-Length (`connection/incoming.rs`); the
//! blocking adapter only blocks the calling application thread (which has released the
//! GIL) on the next frame. The first read is also what makes the connection answer
//! `Expect: 100-continue`. A body dropped half read is read to its end and thrown away by
//! the connection, up to a limit, so that the client can reuse it (as Apache does).

use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use http_body_util::{LengthLimitError, Limited};

use super::connection::{BodyError, IncomingBody, IncomingError};
use crate::handoff::{BodyReadError, BodySource};

/// A request body as the backends read it: held to `--limit-request-body` (reading past
/// the limit fails), and starting with what the front end may already have read ahead
/// (the whole of a small body, read before an application thread is taken, so that a slow
/// client never holds one).
pub(crate) struct RequestBody {
    read_ahead: VecDeque<Bytes>,
    /// What went wrong while reading ahead, given after the bytes read before it.
    read_ahead_error: Option<BodyError>,
    /// The connection's part of the body ended while reading ahead.
    rest_ended: bool,
    rest: Limited<IncomingBody>,
    /// The client waits for `100 Continue` before it sends the body.
    awaits_continue: bool,
}

/// `body` held to `limit` bytes (`None`: any size).
pub(super) fn limit_body(body: IncomingBody, limit: Option<u64>) -> RequestBody {
    let limit = limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    RequestBody {
        awaits_continue: body.awaits_continue(),
        read_ahead: VecDeque::new(),
        read_ahead_error: None,
        rest_ended: false,
        rest: Limited::new(body, limit),
    }
}

impl RequestBody {
    /// Reads the body from the connection until it ends or `bound` bytes are held, so
    /// that the application thread that takes the request finds them at hand.
    pub(super) async fn read_ahead(&mut self, bound: usize) {
        let mut held = 0;
        while held < bound && !self.rest_ended && self.read_ahead_error.is_none() {
            match self.rest.frame().await {
                None => self.rest_ended = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        held += data.len();
                        self.read_ahead.push_back(data);
                    }
                }
                Some(Err(error)) => self.read_ahead_error = Some(error),
            }
        }
    }
}

impl RequestBody {
    /// The client sent `Expect: 100-continue` and waits for the body to be asked for.
    pub(super) fn awaits_continue(&self) -> bool {
        self.awaits_continue
    }

    /// The answer to a body that reading ahead found malformed (a bad chunk), too slow
    /// (`--body-timeout`) or cut short (the client left): the front end gives it instead
    /// of running the application.
    pub(super) fn refusal(&self) -> Option<(http::StatusCode, String)> {
        incoming_refusal(self.read_ahead_error.as_deref()?)
    }
}

/// The answer to a request whose body could not be read (see [`RequestBody::refusal`]);
/// also a body past `--limit-request-body` (413), which a proxied request meets while it
/// streams. `None` for an error that is not about the body.
pub(super) fn refusal_of(
    error: &(dyn std::error::Error + 'static),
) -> Option<(http::StatusCode, String)> {
    if error.is::<LengthLimitError>() {
        return Some((
            http::StatusCode::PAYLOAD_TOO_LARGE,
            read_error_reason(error),
        ));
    }
    incoming_refusal(error)
}

fn incoming_refusal(
    error: &(dyn std::error::Error + 'static),
) -> Option<(http::StatusCode, String)> {
    {
        let error = error.downcast_ref::<IncomingError>()?;
        match error {
            IncomingError::Malformed(rejection) => {
                Some((rejection.status(), rejection.to_string()))
            }
            IncomingError::TimedOut => Some((http::StatusCode::REQUEST_TIMEOUT, error.to_string())),
            // Nobody is left to answer: the application is not run for it (its read would
            // fail, and its traceback fill the error log); the access log says 400.
            IncomingError::ClientLeft | IncomingError::Io(_) => {
                Some((http::StatusCode::BAD_REQUEST, error.to_string()))
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(chunk) = self.read_ahead.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(error) = self.read_ahead_error.take() {
            self.rest_ended = true;
            return Poll::Ready(Some(Err(error)));
        }
        if self.rest_ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read_ahead.is_empty()
            && self.read_ahead_error.is_none()
            && (self.rest_ended || self.rest.is_end_stream())
    }
}

/// Why reading a request body failed, in words for the application and the error log.
pub(super) fn read_error_reason(error: &(dyn std::error::Error + 'static)) -> String {
    if error.is::<LengthLimitError>() {
        "the request body is larger than --limit-request-body allows".to_owned()
    } else {
        error.to_string()
    }
}

/// A request body read by an application thread, which blocks on the next frame.
pub(super) struct BlockingRequestBody {
    body: RequestBody,
    runtime: tokio::runtime::Handle,
}

impl BlockingRequestBody {
    pub(super) fn new(body: RequestBody, runtime: tokio::runtime::Handle) -> Self {
        Self { body, runtime }
    }
}

impl BodySource for BlockingRequestBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        loop {
            match self.runtime.block_on(self.body.frame()) {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    // Trailers carry no body bytes; skip them and empty frames.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(error)) => {
                    return Err(BodyReadError {
                        reason: read_error_reason(error.as_ref()),
                    });
                }
            }
        }
    }
}

//! The request body of a hyper connection as the executor's blocking [`BodySource`].
//!
//! hyper de-chunks and enforces Content-Length; this adapter only blocks the calling
//! application thread (which has released the GIL) on the next frame. The first read is
//! also what makes hyper answer `Expect: 100-continue`.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::{LengthLimitError, Limited};
use hyper::body::{Body, Incoming};

use crate::handoff::{BodyReadError, BodySource};

/// Most unread request body bytes read and thrown away to keep a connection alive.
const DISCARD_LIMIT: u64 = 16 * 1024 * 1024;
/// Longest time spent doing so.
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body held to `--limit-request-body`: reading past the limit fails.
pub(crate) type RequestBody = Limited<Incoming>;

/// `body` held to `limit` bytes (`None`: any size).
pub(super) fn limit_body(body: Incoming, limit: Option<u64>) -> RequestBody {
    let limit = limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    Limited::new(body, limit)
}

/// Why reading a request body failed, in words for the application and the error log.
pub(super) fn read_error_reason(error: &(dyn std::error::Error + 'static)) -> String {
    if error.is::<LengthLimitError>() {
        "the request body is larger than --limit-request-body allows".to_owned()
    } else {
        error.to_string()
    }
}

pub(super) struct HyperRequestBody {
    body: Option<RequestBody>,
    runtime: tokio::runtime::Handle,
}

impl HyperRequestBody {
    pub(super) fn new(body: RequestBody, runtime: tokio::runtime::Handle) -> Self {
        Self {
            body: Some(body),
            runtime,
        }
    }
}

impl Drop for HyperRequestBody {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            if !body.is_end_stream() {
                self.runtime.spawn(discard_unread_body(body));
            }
        }
    }
}

/// Reads and drops what the application left of a request body, as Apache does, so that
/// the client can finish sending it and reuse the connection (hyper closes a connection
/// whose request body was dropped half read). Gives up past a size and time limit.
pub(super) async fn discard_unread_body(mut body: RequestBody) {
    let mut discarded = 0_u64;
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                discarded += data.len() as u64;
                if discarded > DISCARD_LIMIT {
                    return;
                }
            }
        }
    })
    .await;
}

impl BodySource for HyperRequestBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        loop {
            match self.runtime.block_on(body.frame()) {
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

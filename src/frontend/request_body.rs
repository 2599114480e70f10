//! The request body of a hyper connection as the executor's blocking [`BodySource`].
//!
//! hyper de-chunks and enforces Content-Length; this adapter only blocks the calling
//! application thread (which has released the GIL) on the next frame. The first read is
//! also what makes hyper answer `Expect: 100-continue`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::wsgi::{BodyReadError, BodySource};

pub(super) struct HyperRequestBody {
    body: Incoming,
    runtime: tokio::runtime::Handle,
}

impl HyperRequestBody {
    pub(super) fn new(body: Incoming, runtime: tokio::runtime::Handle) -> Self {
        Self { body, runtime }
    }
}

impl BodySource for HyperRequestBody {
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
                        reason: error.to_string(),
                    });
                }
            }
        }
    }
}

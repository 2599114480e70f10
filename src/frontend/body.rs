//! The response body as hyper sees it, and the access log line written when it is done.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::FrontendConfig;
use super::sendfile::{FileSlot, MARKER_LEN, marker};
use crate::logs::access_log::AccessRecord;
use crate::wsgi::{ResponseBody, StreamAborted};

/// Size of the blocks read from a file being sent.
const FILE_BLOCK_SIZE: usize = 64 * 1024;

/// A response body that counts the bytes it yields and writes the access log line when
/// hyper drops it (after the last byte, or when the client went away).
pub(super) struct LoggedBody {
    chunks: Chunks,
    bytes_sent: u64,
    /// The pending access log entry; `None` when access logging is off.
    access: Option<(Arc<FrontendConfig>, AccessRecord)>,
}

enum Chunks {
    Full {
        chunks: VecDeque<Bytes>,
        remaining: u64,
    },
    Stream(mpsc::Receiver<Result<Bytes, StreamAborted>>),
    /// A file sent by the socket with sendfile; the body yields marker frames.
    Sendfile {
        slot: FileSlot,
        /// Handed to the slot on the first poll, once hyper is writing this body.
        file: Option<(std::fs::File, u64)>,
        remaining: u64,
    },
}

/// The application failed after the head was sent; hyper cuts the connection.
#[derive(Debug, thiserror::Error)]
#[error("the application failed while streaming its response")]
pub(super) struct ResponseAborted;

impl LoggedBody {
    pub(super) fn new(
        body: ResponseBody,
        access: Option<(Arc<FrontendConfig>, AccessRecord)>,
        file_slot: Option<FileSlot>,
    ) -> Self {
        let chunks = match body {
            ResponseBody::Full(chunks) => {
                let remaining = chunks.iter().map(|chunk| chunk.len() as u64).sum();
                Chunks::Full {
                    chunks: chunks.into(),
                    remaining,
                }
            }
            ResponseBody::Stream(body_rx) => Chunks::Stream(body_rx),
            ResponseBody::File {
                file,
                offset,
                length,
            } => match file_slot {
                Some(slot) => Chunks::Sendfile {
                    slot,
                    file: Some((file, offset)),
                    remaining: length,
                },
                None => Chunks::Stream(stream_file(file, offset, length)),
            },
        };
        Self {
            chunks,
            bytes_sent: 0,
            access,
        }
    }
}

/// Reads the file on the blocking pool, a block at a time, as the client takes them.
fn stream_file(
    file: std::fs::File,
    offset: u64,
    length: u64,
) -> mpsc::Receiver<Result<Bytes, StreamAborted>> {
    use std::os::unix::fs::FileExt;
    let (block_tx, block_rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut position = offset;
        let end = offset + length;
        while position < end {
            let block_size = usize::try_from(end - position)
                .map_or(FILE_BLOCK_SIZE, |left| left.min(FILE_BLOCK_SIZE));
            let mut block = vec![0; block_size];
            let read = match file.read_at(&mut block, position) {
                Ok(0) | Err(_) => {
                    // The file shrank or failed under us: cut the response rather than
                    // send fewer bytes than the Content-Length promised.
                    let _ = block_tx.blocking_send(Err(StreamAborted));
                    return;
                }
                Ok(read) => read,
            };
            block.truncate(read);
            position += read as u64;
            if block_tx.blocking_send(Ok(Bytes::from(block))).is_err() {
                return;
            }
        }
    });
    block_rx
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = ResponseAborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseAborted>>> {
        let next = match &mut self.chunks {
            Chunks::Full { chunks, remaining } => {
                let chunk = chunks.pop_front();
                if let Some(chunk) = &chunk {
                    *remaining -= chunk.len() as u64;
                }
                chunk.map(Ok)
            }
            Chunks::Stream(body_rx) => match body_rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
            Chunks::Sendfile {
                slot,
                file,
                remaining,
            } => {
                if let Some((file, offset)) = file.take() {
                    slot.set(file, offset);
                }
                let frame_len =
                    usize::try_from(*remaining).map_or(MARKER_LEN, |left| left.min(MARKER_LEN));
                *remaining -= frame_len as u64;
                (frame_len > 0).then(|| Ok(marker(frame_len)))
            }
        };
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.bytes_sent += chunk.len() as u64;
                Some(Ok(Frame::data(chunk)))
            }
            Some(Err(StreamAborted)) => Some(Err(ResponseAborted)),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        match &self.chunks {
            Chunks::Full { chunks, .. } => chunks.is_empty(),
            Chunks::Sendfile { remaining, .. } => *remaining == 0,
            Chunks::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.chunks {
            Chunks::Full { remaining, .. } | Chunks::Sendfile { remaining, .. } => {
                SizeHint::with_exact(*remaining)
            }
            Chunks::Stream(_) => SizeHint::default(),
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((config, mut record)) = self.access.take() {
            if let Some(access_log) = &config.access_log {
                record.body_bytes = self.bytes_sent;
                access_log.record(&record);
            }
        }
    }
}

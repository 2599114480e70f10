//! The response body as the connection's writer sees it, the check that its bytes match
//! the Content-Length it declared, and the access log line written when it is done.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::FrontendConfig;
use super::sendfile::{FileSlot, MARKER_LEN, marker};
use crate::handoff::{ResponseBody, StreamAborted};
use crate::logs::access_log::AccessRecord;
use crate::logs::{Level, error_log};

/// Size of the blocks read from a file being sent.
const FILE_BLOCK_SIZE: usize = 64 * 1024;

/// A response body that counts the bytes it yields and writes the access log line when
/// the writer drops it (after the last byte, or when the client went away).
///
/// When the response declared a Content-Length, the bytes it yields are held to it: a
/// client keeping the connection open reads exactly that many bytes as this response, so
/// a body that ends early, or runs past it, must not leave the connection open (the
/// client would read the start of the next response as this one's body). Such a body is
/// sent as far as the declared length allows and then fails, which makes the writer close
/// the connection; one line in the error log names the request and both counts.
pub(super) struct LoggedBody {
    chunks: Chunks,
    bytes_sent: u64,
    /// The pending access log entry; `None` when access logging is off.
    access: Option<(Arc<FrontendConfig>, AccessRecord)>,
    /// The length the response declared; `None` when it has no Content-Length or sends
    /// no body (HEAD, 204, 304).
    declared: Option<DeclaredLength>,
    /// The complete body ran past its declared length and was cut there.
    cut: bool,
    /// What the request metrics count once the response is done; `None` for pages that
    /// are not counted (the operations pages).
    measure: Option<super::metrics::RequestMeasure>,
}

/// A declared Content-Length and the request it answers (for the log line).
pub(super) struct DeclaredLength {
    pub(super) length: u64,
    pub(super) method: http::Method,
    pub(super) target: http::Uri,
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
        /// Handed to the slot on the first poll, once the writer is writing this body.
        file: Option<(std::fs::File, u64)>,
        remaining: u64,
    },
}

/// The application failed after the head was sent; the writer cuts the connection.
#[derive(Debug, thiserror::Error)]
#[error("the application failed while streaming its response")]
pub(super) struct ResponseAborted;

impl LoggedBody {
    pub(super) fn new(
        body: ResponseBody,
        access: Option<(Arc<FrontendConfig>, AccessRecord)>,
        file_slot: Option<FileSlot>,
        declared: Option<DeclaredLength>,
        measure: Option<super::metrics::RequestMeasure>,
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
        let mut body = Self {
            chunks,
            bytes_sent: 0,
            access,
            declared,
            cut: false,
            measure,
        };
        body.cut_full_body_to_declared();
        body
    }

    /// True when the response must close its connection after it: its complete body was
    /// longer than the length it declared and was cut there (the writer stops reading a
    /// body once the declared length went out, so the cut must be known before the head).
    pub(super) fn closes_connection(&self) -> bool {
        self.cut
    }

    fn cut_full_body_to_declared(&mut self) {
        let (Some(declared), Chunks::Full { chunks, remaining }) =
            (&self.declared, &mut self.chunks)
        else {
            return;
        };
        if *remaining <= declared.length {
            return;
        }
        let produced = *remaining;
        let mut left = declared.length;
        chunks.retain_mut(|chunk| {
            let keep = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            chunk.truncate(keep);
            left -= keep as u64;
            !chunk.is_empty()
        });
        *remaining = declared.length;
        self.cut = true;
        self.log_mismatch(produced, declared.length);
    }

    /// Holds `chunk` to the declared length. Only a stream can run past it here (a
    /// complete body was cut in `new`), and the writer stops polling a body once the declared
    /// length went out, so this is a guard: the framing stays right whatever comes.
    fn hold_to_declared(&self, mut chunk: Bytes) -> Bytes {
        if let Some(declared) = &self.declared {
            let left = declared.length.saturating_sub(self.bytes_sent);
            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        }
        chunk
    }

    fn declared_reached(&self) -> bool {
        self.declared
            .as_ref()
            .is_none_or(|declared| self.bytes_sent >= declared.length)
    }

    /// True (and logged) when the body ended before its declared length: the response
    /// must fail.
    fn ended_short(&self) -> bool {
        match &self.declared {
            Some(declared) if self.bytes_sent < declared.length => {
                self.log_mismatch(self.bytes_sent, self.bytes_sent);
                true
            }
            _ => false,
        }
    }

    fn log_mismatch(&self, produced: u64, sent: u64) {
        if let Some(declared) = &self.declared {
            error_log::log(
                Level::Error,
                "ferrule",
                &format!(
                    "the application declared Content-Length: {} for {} {} but produced {produced} bytes; \
                     sent {sent} and closed the connection",
                    declared.length, declared.method, declared.target,
                ),
            );
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
                // A marker frame keeps its address when truncated, so it still stands
                // for the (fewer) file bytes it now covers.
                let chunk = self.hold_to_declared(chunk);
                if chunk.is_empty() {
                    if self.declared_reached() {
                        return Poll::Ready(None);
                    }
                    return self.poll_frame(cx);
                }
                self.bytes_sent += chunk.len() as u64;
                Some(Ok(Frame::data(chunk)))
            }
            Some(Err(StreamAborted)) => Some(Err(ResponseAborted)),
            None if self.ended_short() => Some(Err(ResponseAborted)),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        // A body short of its declared length is not at its end: the writer must poll it
        // once more, and get the error that closes the connection.
        self.declared_reached()
            && match &self.chunks {
                Chunks::Full { chunks, .. } => chunks.is_empty(),
                Chunks::Sendfile { remaining, .. } => *remaining == 0,
                Chunks::Stream(_) => false,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let exact = match &self.chunks {
            Chunks::Full { remaining, .. } | Chunks::Sendfile { remaining, .. } => Some(*remaining),
            Chunks::Stream(_) => None,
        };
        match (exact, &self.declared) {
            // The writer takes an exact hint as the length it frames with; give none when
            // the body and its declared length disagree, so the declared one is used.
            (Some(exact), Some(declared)) if self.bytes_sent + exact != declared.length => {
                SizeHint::default()
            }
            (Some(exact), _) => SizeHint::with_exact(exact),
            (None, _) => SizeHint::default(),
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(measure) = self.measure.take() {
            super::metrics::global().request_done(measure);
        }
        if let Some((config, mut record)) = self.access.take() {
            if let Some(access_log) = &config.access_log {
                record.body_bytes = self.bytes_sent;
                access_log.record(&record);
            }
        }
    }
}

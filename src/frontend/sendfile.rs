//! Kernel `sendfile(2)` for `wsgi.file_wrapper` responses over plain HTTP/1: the file's
//! bytes go from the page cache to the socket without passing through this process.
//!
//! hyper owns the response framing, so the body stands in for the file with *marker*
//! frames: slices of a static block of zeros whose length is the length of file data to
//! send. hyper queues them unchanged (vectored writes, Content-Length framing: no copy,
//! no chunk headers), and [`SendfileStream`], the connection's socket, recognises a marker
//! by its address and calls sendfile for that many bytes instead of writing it. Marker
//! bytes are never written: a marker without a pending file fails the connection.
//! Connections that transform bytes on the way out (TLS) must not use this path.

use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Longest marker frame; each stands for this much file data at most.
pub(super) const MARKER_LEN: usize = 256 * 1024;
static MARKER: [u8; MARKER_LEN] = [0; MARKER_LEN];

/// A marker frame standing for `len` bytes of the pending file.
pub(super) fn marker(len: usize) -> Bytes {
    Bytes::from_static(&MARKER[..len.min(MARKER_LEN)])
}

fn is_marker(bytes: &[u8]) -> bool {
    let start = MARKER.as_ptr() as usize;
    let address = bytes.as_ptr() as usize;
    !bytes.is_empty() && address >= start && address < start + MARKER_LEN
}

/// What a response body and its connection's socket share (one per connection: HTTP/1
/// sends one response at a time): the file a response is sending, set by the body and
/// sent from by the socket; and a wait for the next flush, so that a body that must fail
/// lets the bytes it already yielded reach the client first (hyper drops what it still
/// buffers when a body fails).
#[derive(Clone, Default)]
pub(super) struct FileSlot(Arc<SlotShared>);

#[derive(Default)]
struct SlotShared {
    file: Mutex<Option<PendingFile>>,
    /// Set while a body waits for a flush, so that flushes cost no lock otherwise.
    flush_awaited: AtomicBool,
    flush_wait: Mutex<FlushWait>,
}

#[derive(Default)]
enum FlushWait {
    #[default]
    Idle,
    Waiting(Waker),
    Flushed,
}

struct PendingFile {
    file: std::fs::File,
    offset: u64,
}

impl FileSlot {
    pub(super) fn set(&self, file: std::fs::File, offset: u64) {
        *self.0.file.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(PendingFile { file, offset });
    }

    /// True once hyper flushed everything it buffered since the first call (hyper calls
    /// the socket's `poll_flush` only when its own write buffer is empty); until then,
    /// the task is woken by that flush.
    pub(super) fn flushed_since_first_asked(&self, cx: &Context<'_>) -> bool {
        let mut wait = self
            .0
            .flush_wait
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(*wait, FlushWait::Flushed) {
            *wait = FlushWait::Idle;
            self.0.flush_awaited.store(false, Ordering::Release);
            return true;
        }
        *wait = FlushWait::Waiting(cx.waker().clone());
        self.0.flush_awaited.store(true, Ordering::Release);
        false
    }

    fn flushed(&self) {
        if self.0.flush_awaited.load(Ordering::Acquire) {
            let mut wait = self
                .0
                .flush_wait
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let FlushWait::Waiting(waker) = std::mem::replace(&mut *wait, FlushWait::Flushed) {
                waker.wake();
            }
        }
    }
}

/// A TCP connection that performs sendfile for marker frames.
pub(super) struct SendfileStream {
    io: TokioIo<TcpStream>,
    slot: FileSlot,
}

impl SendfileStream {
    pub(super) fn new(stream: TcpStream, slot: FileSlot) -> Self {
        Self {
            io: TokioIo::new(stream),
            slot,
        }
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        count: usize,
    ) -> Poll<std::io::Result<usize>> {
        let mut slot = self
            .slot
            .0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(pending) = slot.as_mut() else {
            return Poll::Ready(Err(std::io::Error::other(
                "response body marker without a file to send",
            )));
        };
        let stream = self.io.inner();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let result = stream.try_io(Interest::WRITABLE, || {
                let mut offset =
                    libc::off_t::try_from(pending.offset).map_err(std::io::Error::other)?;
                // SAFETY: both descriptors are open for the duration of the call and
                // `offset` is a valid, exclusive pointer.
                let sent = unsafe {
                    libc::sendfile(
                        stream.as_raw_fd(),
                        pending.file.as_raw_fd(),
                        &raw mut offset,
                        count,
                    )
                };
                if sent < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(sent.unsigned_abs())
            });
            match result {
                Ok(0) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file being sent shrank",
                    )));
                }
                Ok(sent) => {
                    pending.offset += sent as u64;
                    return Poll::Ready(Ok(sent));
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl hyper::rt::Read for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if is_marker(buf) {
            return self.poll_sendfile(cx, buf.len());
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Write what comes before the first marker in one go; a marker first is a sendfile.
        match bufs.iter().position(|buf| is_marker(buf)) {
            Some(0) => self.poll_sendfile(cx, bufs[0].len()),
            Some(first_marker) => {
                Pin::new(&mut self.io).poll_write_vectored(cx, &bufs[..first_marker])
            }
            None => Pin::new(&mut self.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.slot.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised_by_address_only() {
        assert!(is_marker(&marker(10)));
        assert!(is_marker(&marker(MARKER_LEN)[100..]));
        assert!(!is_marker(&[0_u8; 10]));
        assert!(!is_marker(&marker(0)));
    }
}

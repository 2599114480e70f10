//! Kernel `sendfile(2)` for `wsgi.file_wrapper` responses over plain HTTP/1: the file's
//! bytes go from the page cache to the socket without passing through this process.
//!
//! The response body stands in for the file with *marker* frames: slices of a static block
//! of zeros whose length is the length of file data to send, so that the body keeps one
//! shape (frames of bytes) and counts, cuts and logs file bytes like any others. The
//! connection's writer (`connection/outgoing.rs`) recognises a marker by its address and
//! calls [`try_send_file`] for that many bytes instead of writing it. Marker bytes are never
//! written: a marker without a pending file fails the connection. Connections that
//! transform bytes on the way out (TLS) must not use this path.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Longest marker frame; each stands for this much file data at most.
pub(super) const MARKER_LEN: usize = 256 * 1024;
static MARKER: [u8; MARKER_LEN] = [0; MARKER_LEN];

/// A marker frame standing for `len` bytes of the pending file.
pub(super) fn marker(len: usize) -> Bytes {
    Bytes::from_static(&MARKER[..len.min(MARKER_LEN)])
}

pub(super) fn is_marker(bytes: &[u8]) -> bool {
    let start = MARKER.as_ptr() as usize;
    let address = bytes.as_ptr() as usize;
    !bytes.is_empty() && address >= start && address < start + MARKER_LEN
}

/// The file a response is sending, set by its body and sent from by the connection's
/// writer (one per connection: HTTP/1 sends one response at a time).
#[derive(Clone, Default)]
pub(super) struct FileSlot(Arc<Mutex<Option<PendingFile>>>);

struct PendingFile {
    file: std::fs::File,
    offset: u64,
}

impl FileSlot {
    pub(super) fn set(&self, file: std::fs::File, offset: u64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(PendingFile { file, offset });
    }
}

/// Sends up to `count` bytes of the pending file to `stream` without waiting: the bytes
/// sent, or `WouldBlock` when the socket is full.
pub(super) fn try_send_file(
    stream: &TcpStream,
    slot: &FileSlot,
    count: usize,
) -> std::io::Result<usize> {
    let mut pending = slot.0.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(pending) = pending.as_mut() else {
        return Err(std::io::Error::other(
            "response body marker without a file to send",
        ));
    };
    let sent = stream.try_io(Interest::WRITABLE, || {
        let mut offset = libc::off_t::try_from(pending.offset).map_err(std::io::Error::other)?;
        // SAFETY: both descriptors are open for the duration of the call and `offset` is
        // a valid, exclusive pointer.
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
    })?;
    if sent == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file being sent shrank",
        ));
    }
    pending.offset += sent as u64;
    Ok(sent)
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

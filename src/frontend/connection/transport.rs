//! What a connection runs over: plain TCP, or TLS on TCP. The connection code is written
//! once over [`Transport`] (reading heads and bodies, splitting into a reader and a
//! [`ResponseWriter`]); each transport says how it waits and writes.
//!
//! Plain TCP writes with `writev` and `sendfile(2)` straight to the socket. TLS
//! (rustls through tokio-rustls) takes plaintext into its own buffer and sends records
//! as the socket takes them, so its writer can hold bytes not yet sent
//! ([`ResponseWriter::has_pending`]): the response writer waits for them before it
//! waits for anything else, and never hands TLS a file to `sendfile`. The two halves of a
//! TLS stream share it behind a mutex that is only held while one of them is polled:
//! both are polled by the connection's one task, so it is never contended.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::frontend::sendfile::{FileSlot, try_send_file};

/// A connection's byte stream.
pub(in crate::frontend) trait Transport: Send {
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Writer<'a>: ResponseWriter + Send
    where
        Self: 'a;

    /// A reader and a writer over the same stream, used at once by one task.
    fn split(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);

    /// Waits until reading would find something (bytes or the end), without reading: an
    /// idle connection then holds no buffer. TLS cannot tell without decrypting, so it
    /// does not wait.
    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Ends the stream politely where the protocol asks for it (TLS `close_notify`).
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The plain TCP stream underneath, for h2c (`--http2` on the plain listener); `None`
    /// for TLS, where HTTP/2 is chosen by ALPN at the handshake instead.
    fn into_plain(self) -> Option<TcpStream>;
}

/// Where a response is written, without waiting inside a write.
pub(in crate::frontend) trait ResponseWriter {
    /// Writes what it can now; `WouldBlock` when nothing can go.
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> std::io::Result<usize>;

    /// Waits until more can be written (TLS: until the records already made are sent).
    fn writable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Bytes accepted by a write but not yet on the socket (TLS records).
    fn has_pending(&self) -> bool;

    /// Sends up to `count` bytes of the slot's file with `sendfile(2)`.
    fn try_send_file(&mut self, slot: &FileSlot, count: usize) -> std::io::Result<usize>;
}

impl Transport for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn split(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        TcpStream::split(self)
    }

    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    async fn close(&mut self) {}

    fn into_plain(self) -> Option<TcpStream> {
        Some(self)
    }
}

impl ResponseWriter for tokio::net::tcp::WriteHalf<'_> {
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let stream: &TcpStream = self.as_ref();
        stream.try_write_vectored(slices)
    }

    fn writable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        let half: &Self = self;
        let stream: &TcpStream = half.as_ref();
        stream.writable()
    }

    fn has_pending(&self) -> bool {
        false
    }

    fn try_send_file(&mut self, slot: &FileSlot, count: usize) -> std::io::Result<usize> {
        try_send_file(self.as_ref(), slot, count)
    }
}

/// A TLS connection after its handshake.
pub(in crate::frontend) struct TlsConnection(Mutex<TlsStream<TcpStream>>);

impl TlsConnection {
    pub(in crate::frontend) fn new(stream: TlsStream<TcpStream>) -> Self {
        Self(Mutex::new(stream))
    }
}

/// Either half of a [`TlsConnection`].
pub(in crate::frontend) struct TlsHalf<'a>(&'a Mutex<TlsStream<TcpStream>>);

impl TlsHalf<'_> {
    fn with<T>(&self, run: impl FnOnce(Pin<&mut TlsStream<TcpStream>>) -> T) -> T {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        run(Pin::new(&mut *stream))
    }
}

impl Transport for TlsConnection {
    type Reader<'a> = TlsHalf<'a>;
    type Writer<'a> = TlsHalf<'a>;

    fn split(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        (TlsHalf(&self.0), TlsHalf(&self.0))
    }

    async fn readable(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn close(&mut self) {
        let half = TlsHalf(&self.0);
        let shutdown = std::future::poll_fn(|cx| half.with(|stream| stream.poll_shutdown(cx)));
        // A client that reads nothing more must not hold the task.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), shutdown).await;
    }

    fn into_plain(self) -> Option<TcpStream> {
        None
    }
}

impl AsyncRead for TlsHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.with(|stream| stream.poll_read(cx, buf))
    }
}

impl ResponseWriter for TlsHalf<'_> {
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
        // One try: the waker is thrown away, and `writable` registers a real one before
        // anything waits.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.with(|stream| stream.poll_write_vectored(&mut cx, slices)) {
            Poll::Ready(written) => written,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn writable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.with(|stream| stream.poll_flush(cx)))
    }

    fn has_pending(&self) -> bool {
        self.with(|stream| stream.get_ref().1.wants_write())
    }

    fn try_send_file(&mut self, _slot: &FileSlot, _count: usize) -> std::io::Result<usize> {
        Err(std::io::Error::other(
            "a file marker reached a TLS connection, which cannot use sendfile",
        ))
    }
}

//! The bytes spoken between the front end and daemon processes over their UNIX socket.
//! This module is the only place that knows them.
//!
//! Every frame is `kind: u8`, `length: u32` (little endian), then `length` bytes of
//! payload. Strings and byte strings inside a payload are a `u32` length and the bytes.
//!
//! A connection belongs to one daemon thread's slot and carries one request at a time:
//! ```text
//! daemon → front end   Hello                       once, after connecting; then either
//!                                                  (role Thread) requests, or
//! daemon → front end   Recycle* Watch* CodeChanged* (role Control) requests to be
//!                                                  replaced; the entry file to watch;
//!                                                  news that the code changed
//! front end → daemon   RequestHead                 has_body says whether body frames follow;
//!                                                  access, what the access-control
//!                                                  scripts decide first
//! front end → daemon   BodyChunk* (BodyEnd | BodyAbort)
//! daemon → front end   ResponseFull                the whole response in one frame, or
//!                      ResponseHead ResponseChunk* (ResponseEnd | ResponseAbort)
//! front end → daemon   Stop                        between requests: leave, do not reconnect
//! ```
//! The daemon reads body frames up to BodyEnd/BodyAbort even when the application did not
//! ask for them, so the next `RequestHead` is always at a frame boundary.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload accepted; a bigger length means the stream is corrupt.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Largest chunk frame written: bigger chunks go out as several frames.
const MAX_CHUNK_FRAME: usize = 1024 * 1024;
const HEADER_LEN: usize = 5;

/// Why a frame could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("reading from the daemon socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame from the peer: {0}")]
    Malformed(&'static str),
}

/// Who is at the other end of a daemon connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub pid: u32,
    /// The daemon process's slot in its group (0-based).
    pub slot: u32,
    /// Requests this daemon has served so far (0 at start-up).
    pub served: u64,
    pub role: Role,
}

/// What a daemon connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// One application thread: carries requests, one at a time.
    Thread,
    /// The process's own channel: carries `Recycle` at any time.
    Control,
}

/// A request head as the daemon needs it to build the environ.
#[derive(Debug)]
pub struct RequestHead {
    pub method: http::Method,
    pub target: http::Uri,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub remote_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub https: bool,
    pub received_at: SystemTime,
    pub request_id: crate::handoff::RequestId,
    /// Body frames follow this head.
    pub has_body: bool,
    /// What the access-control scripts must decide before the application runs.
    pub access: Option<crate::handoff::AccessCheck>,
    /// Environ variables set by the front end (`handoff::Request::variables`).
    pub variables: Vec<(String, String)>,
    /// The `--add-handler` script that answers instead of the application.
    pub handler: Option<crate::handoff::HandlerTarget>,
}

/// A response head as the application produced it.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: http::StatusCode,
    pub reason: Option<Bytes>,
    pub headers: http::HeaderMap,
}

/// One frame of the protocol.
#[derive(Debug)]
pub enum Frame {
    Hello(Hello),
    RequestHead(Box<RequestHead>),
    BodyChunk(Bytes),
    BodyEnd,
    /// The client went away before sending the whole body.
    BodyAbort,
    /// A response whose body is complete (a list or tuple result).
    ResponseFull {
        head: Box<ResponseHead>,
        body: Bytes,
    },
    ResponseHead(Box<ResponseHead>),
    ResponseChunk(Bytes),
    /// The response is complete.
    ResponseEnd,
    /// The application failed after the head went out; the client's connection must be cut.
    ResponseAbort,
    Stop,
    /// The daemon asks to be replaced, for the reason given (a limit it reached).
    Recycle(String),
    /// The file the application was loaded from: the front end reloads the application
    /// when it changes.
    Watch(String),
    /// A file the application imported changed (`--reload-on-changes`): every daemon
    /// must be replaced.
    CodeChanged(String),
}

mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const REQUEST_HEAD: u8 = 2;
    pub(super) const BODY_CHUNK: u8 = 3;
    pub(super) const BODY_END: u8 = 4;
    pub(super) const BODY_ABORT: u8 = 5;
    pub(super) const RESPONSE_FULL: u8 = 6;
    pub(super) const RESPONSE_HEAD: u8 = 7;
    pub(super) const RESPONSE_CHUNK: u8 = 8;
    pub(super) const RESPONSE_END: u8 = 9;
    pub(super) const RESPONSE_ABORT: u8 = 10;
    pub(super) const STOP: u8 = 11;
    pub(super) const RECYCLE: u8 = 12;
    pub(super) const WATCH: u8 = 13;
    pub(super) const CODE_CHANGED: u8 = 14;
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_bytes(0, HEADER_LEN);
        let frame_kind = match self {
            Self::Hello(hello) => {
                out.put_u32_le(hello.pid);
                out.put_u32_le(hello.slot);
                out.put_u64_le(hello.served);
                out.put_u8(match hello.role {
                    Role::Thread => 0,
                    Role::Control => 1,
                });
                kind::HELLO
            }
            Self::RequestHead(head) => {
                encode_request_head(head, out);
                kind::REQUEST_HEAD
            }
            Self::BodyChunk(chunk) => {
                out.put_slice(chunk);
                kind::BODY_CHUNK
            }
            Self::BodyEnd => kind::BODY_END,
            Self::BodyAbort => kind::BODY_ABORT,
            Self::ResponseFull { head, body } => {
                encode_response_head(head, out);
                out.put_slice(body);
                kind::RESPONSE_FULL
            }
            Self::ResponseHead(head) => {
                encode_response_head(head, out);
                kind::RESPONSE_HEAD
            }
            Self::ResponseChunk(chunk) => {
                out.put_slice(chunk);
                kind::RESPONSE_CHUNK
            }
            Self::ResponseEnd => kind::RESPONSE_END,
            Self::ResponseAbort => kind::RESPONSE_ABORT,
            Self::Stop => kind::STOP,
            Self::Recycle(reason) => {
                out.put_slice(reason.as_bytes());
                kind::RECYCLE
            }
            Self::Watch(path) => {
                out.put_slice(path.as_bytes());
                kind::WATCH
            }
            Self::CodeChanged(reason) => {
                out.put_slice(reason.as_bytes());
                kind::CODE_CHANGED
            }
        };
        let length = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
        out[start] = frame_kind;
        out[start + 1..start + HEADER_LEN].copy_from_slice(&length.to_le_bytes());
    }

    /// The frame header that goes before a chunk written separately (no copy of the
    /// chunk): `ResponseChunk` or `BodyChunk` of `length` bytes.
    pub fn chunk_header(response: bool, length: usize) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        header[0] = if response {
            kind::RESPONSE_CHUNK
        } else {
            kind::BODY_CHUNK
        };
        header[1..].copy_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
        header
    }

    fn decode(frame_kind: u8, mut payload: Bytes) -> Result<Self, ProtocolError> {
        let frame = match frame_kind {
            kind::HELLO => {
                need(&payload, 17)?;
                Self::Hello(Hello {
                    pid: payload.get_u32_le(),
                    slot: payload.get_u32_le(),
                    served: payload.get_u64_le(),
                    role: if payload.get_u8() == 1 {
                        Role::Control
                    } else {
                        Role::Thread
                    },
                })
            }
            kind::REQUEST_HEAD => Self::RequestHead(Box::new(decode_request_head(&mut payload)?)),
            kind::BODY_CHUNK => Self::BodyChunk(payload),
            kind::BODY_END => Self::BodyEnd,
            kind::BODY_ABORT => Self::BodyAbort,
            kind::RESPONSE_FULL => {
                let head = decode_response_head(&mut payload)?;
                Self::ResponseFull {
                    head: Box::new(head),
                    body: payload,
                }
            }
            kind::RESPONSE_HEAD => {
                Self::ResponseHead(Box::new(decode_response_head(&mut payload)?))
            }
            kind::RESPONSE_CHUNK => Self::ResponseChunk(payload),
            kind::RESPONSE_END => Self::ResponseEnd,
            kind::RESPONSE_ABORT => Self::ResponseAbort,
            kind::STOP => Self::Stop,
            kind::RECYCLE => Self::Recycle(String::from_utf8_lossy(&payload).into_owned()),
            kind::WATCH => Self::Watch(String::from_utf8_lossy(&payload).into_owned()),
            kind::CODE_CHANGED => Self::CodeChanged(String::from_utf8_lossy(&payload).into_owned()),
            _ => return Err(ProtocolError::Malformed("unknown frame kind")),
        };
        Ok(frame)
    }
}

/// Takes the first frame off `buffer` if it holds a whole one. Public for the fuzz target
/// of the frame decoder (`frontend::http1::fuzz_entry`).
/// (tokio-util's `LengthDelimitedCodec` does this too, measured twice as slow per frame:
/// docs/benchmarks.md, "Levers tried".)
pub fn split_frame(buffer: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let frame_kind = buffer[0];
    let mut length_bytes = [0; 4];
    length_bytes.copy_from_slice(&buffer[1..HEADER_LEN]);
    let length = u32::from_le_bytes(length_bytes) as usize;
    if length > MAX_PAYLOAD {
        return Err(ProtocolError::Malformed("frame longer than the limit"));
    }
    if buffer.len() < HEADER_LEN + length {
        buffer.reserve(HEADER_LEN + length - buffer.len());
        return Ok(None);
    }
    buffer.advance(HEADER_LEN);
    let payload = buffer.split_to(length).freeze();
    Frame::decode(frame_kind, payload).map(Some)
}

/// Reads frames from one side of a daemon connection, with its own buffer.
pub struct FrameReader<R> {
    inner: R,
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buffer: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// The next frame; [`ProtocolError::Closed`] at a clean end of stream. Cancel-safe:
    /// bytes read stay in the buffer.
    pub async fn read(&mut self) -> Result<Frame, ProtocolError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buffer)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// True when bytes of a frame are already buffered (the peer sent something while it
    /// should have been idle).
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    async fn fill(&mut self) -> Result<(), ProtocolError> {
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(16 * 1024);
        }
        let read = self.inner.read_buf(&mut self.buffer).await?;
        if read == 0 {
            return Err(ProtocolError::Closed);
        }
        Ok(())
    }
}

/// Writes `frame` in one write.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    frame.encode(&mut out);
    writer.write_all(&out).await
}

/// Writes a chunk as chunk frames without copying it into a frame buffer: one frame, or
/// several of at most [`MAX_CHUNK_FRAME`] bytes for a large chunk (an application may
/// return one item of any size; a frame's length field must never be truncated).
pub async fn write_chunk<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: bool,
    chunk: &[u8],
) -> std::io::Result<()> {
    for piece in chunk.chunks(MAX_CHUNK_FRAME) {
        let header = Frame::chunk_header(response, piece.len());
        if piece.len() <= 4096 {
            let mut out = Vec::with_capacity(HEADER_LEN + piece.len());
            out.extend_from_slice(&header);
            out.extend_from_slice(piece);
            writer.write_all(&out).await?;
        } else {
            // Header and data in one `writev`, without copying the data.
            let (mut header_left, mut piece_left) = (&header[..], piece);
            while !header_left.is_empty() || !piece_left.is_empty() {
                let slices = [IoSlice::new(header_left), IoSlice::new(piece_left)];
                let written = writer.write_vectored(&slices).await?;
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                let from_header = written.min(header_left.len());
                header_left = &header_left[from_header..];
                piece_left = &piece_left[written - from_header..];
            }
        }
    }
    Ok(())
}

fn need(payload: &Bytes, length: usize) -> Result<(), ProtocolError> {
    if payload.remaining() < length {
        Err(ProtocolError::Malformed("frame shorter than its fields"))
    } else {
        Ok(())
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32_le(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

fn get_bytes(payload: &mut Bytes) -> Result<Bytes, ProtocolError> {
    need(payload, 4)?;
    let length = payload.get_u32_le() as usize;
    need(payload, length)?;
    Ok(payload.split_to(length))
}

/// A socket address in binary (formatting and parsing its text cost ~1,600 instructions
/// each way): `4`, the address, the port; or `6`, the address, flow info, scope, the port.
fn put_address(out: &mut BytesMut, address: std::net::SocketAddr) {
    match address {
        std::net::SocketAddr::V4(address) => {
            out.put_u8(4);
            out.put_slice(&address.ip().octets());
        }
        std::net::SocketAddr::V6(address) => {
            out.put_u8(6);
            out.put_slice(&address.ip().octets());
            out.put_u32_le(address.flowinfo());
            out.put_u32_le(address.scope_id());
        }
    }
    out.put_u16_le(address.port());
}

fn get_address(payload: &mut Bytes) -> Result<std::net::SocketAddr, ProtocolError> {
    need(payload, 1)?;
    let address = match payload.get_u8() {
        4 => {
            need(payload, 4 + 2)?;
            let mut octets = [0; 4];
            payload.copy_to_slice(&mut octets);
            std::net::SocketAddr::from((octets, payload.get_u16_le()))
        }
        6 => {
            need(payload, 16 + 4 + 4 + 2)?;
            let mut octets = [0; 16];
            payload.copy_to_slice(&mut octets);
            let flow_info = payload.get_u32_le();
            let scope = payload.get_u32_le();
            std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                octets.into(),
                payload.get_u16_le(),
                flow_info,
                scope,
            ))
        }
        _ => return Err(ProtocolError::Malformed("bad socket address")),
    };
    Ok(address)
}

fn get_str(payload: &mut Bytes) -> Result<String, ProtocolError> {
    String::from_utf8(get_bytes(payload)?.to_vec())
        .map_err(|_| ProtocolError::Malformed("text field is not UTF-8"))
}

fn encode_version(version: http::Version) -> u8 {
    match version {
        http::Version::HTTP_10 => 0,
        http::Version::HTTP_2 => 2,
        _ => 1,
    }
}

fn decode_version(code: u8) -> http::Version {
    match code {
        0 => http::Version::HTTP_10,
        2 => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    }
}

fn encode_headers(headers: &http::HeaderMap, out: &mut BytesMut) {
    out.put_u32_le(u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for (name, value) in headers {
        put_bytes(out, name.as_str().as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

fn decode_headers(payload: &mut Bytes) -> Result<http::HeaderMap, ProtocolError> {
    need(payload, 4)?;
    let count = payload.get_u32_le() as usize;
    let mut headers = http::HeaderMap::with_capacity(count.min(256));
    for _ in 0..count {
        let name = get_bytes(payload)?;
        let value = get_bytes(payload)?;
        let name = http::HeaderName::from_bytes(&name)
            .map_err(|_| ProtocolError::Malformed("bad header name"))?;
        let value = http::HeaderValue::from_maybe_shared(value)
            .map_err(|_| ProtocolError::Malformed("bad header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn encode_request_head(head: &RequestHead, out: &mut BytesMut) {
    put_bytes(out, head.method.as_str().as_bytes());
    // An origin-form target as its text; only other forms go through the formatter.
    match (head.target.scheme(), head.target.path_and_query()) {
        (None, Some(path_and_query)) => put_bytes(out, path_and_query.as_str().as_bytes()),
        _ => put_bytes(out, head.target.to_string().as_bytes()),
    }
    out.put_u8(encode_version(head.version));
    out.put_u8(u8::from(head.https));
    out.put_u8(u8::from(head.has_body));
    let since_epoch = head
        .received_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    out.put_u64_le(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX));
    out.put_u64_le(head.request_id.to_bits());
    put_address(out, head.remote_addr);
    put_address(out, head.local_addr);
    encode_headers(&head.headers, out);
    encode_access(head.access.as_ref(), out);
    out.put_u32_le(u32::try_from(head.variables.len()).unwrap_or(u32::MAX));
    for (name, value) in &head.variables {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value.as_bytes());
    }
    encode_handler(head.handler.as_ref(), out);
}

/// `0` (none), or `1`, the handler's index, the file, the URL path.
fn encode_handler(handler: Option<&crate::handoff::HandlerTarget>, out: &mut BytesMut) {
    use std::os::unix::ffi::OsStrExt;
    let Some(handler) = handler else {
        out.put_u8(0);
        return;
    };
    out.put_u8(1);
    out.put_u16_le(handler.index);
    put_bytes(out, handler.file.as_os_str().as_bytes());
    put_bytes(out, &handler.script_name);
}

fn decode_handler(
    payload: &mut Bytes,
) -> Result<Option<crate::handoff::HandlerTarget>, ProtocolError> {
    use std::os::unix::ffi::OsStrExt;
    need(payload, 1)?;
    if payload.get_u8() == 0 {
        return Ok(None);
    }
    need(payload, 2)?;
    let index = payload.get_u16_le();
    let file = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&get_bytes(payload)?));
    let script_name = get_bytes(payload)?.to_vec();
    Ok(Some(crate::handoff::HandlerTarget {
        index,
        file,
        script_name,
    }))
}

/// `0` (none), or `1`, the challenge, then `0` (no credentials), `1` user password
/// (Basic) or `2` user realm response-tail response (Digest).
fn encode_access(access: Option<&crate::handoff::AccessCheck>, out: &mut BytesMut) {
    use crate::handoff::Credentials;
    let Some(access) = access else {
        out.put_u8(0);
        return;
    };
    out.put_u8(1);
    put_bytes(out, access.challenge.as_bytes());
    match &access.credentials {
        None => out.put_u8(0),
        Some(Credentials::Basic { user, password }) => {
            out.put_u8(1);
            put_bytes(out, user.as_bytes());
            put_bytes(out, password.as_bytes());
        }
        Some(Credentials::Digest {
            user,
            realm,
            response_tail,
            response,
        }) => {
            out.put_u8(2);
            for field in [user, realm, response_tail, response] {
                put_bytes(out, field.as_bytes());
            }
        }
    }
}

fn decode_access(
    payload: &mut Bytes,
) -> Result<Option<crate::handoff::AccessCheck>, ProtocolError> {
    use crate::handoff::{AccessCheck, Credentials};
    need(payload, 1)?;
    if payload.get_u8() == 0 {
        return Ok(None);
    }
    let challenge = get_str(payload)?;
    need(payload, 1)?;
    let credentials = match payload.get_u8() {
        0 => None,
        1 => Some(Credentials::Basic {
            user: get_str(payload)?,
            password: get_str(payload)?,
        }),
        2 => Some(Credentials::Digest {
            user: get_str(payload)?,
            realm: get_str(payload)?,
            response_tail: get_str(payload)?,
            response: get_str(payload)?,
        }),
        _ => return Err(ProtocolError::Malformed("unknown kind of credentials")),
    };
    Ok(Some(AccessCheck {
        credentials,
        challenge,
    }))
}

fn decode_request_head(payload: &mut Bytes) -> Result<RequestHead, ProtocolError> {
    let method = http::Method::from_bytes(&get_bytes(payload)?)
        .map_err(|_| ProtocolError::Malformed("bad method"))?;
    let target = http::Uri::from_maybe_shared(get_bytes(payload)?)
        .map_err(|_| ProtocolError::Malformed("bad request target"))?;
    need(payload, 19)?;
    let version = decode_version(payload.get_u8());
    let https = payload.get_u8() != 0;
    let has_body = payload.get_u8() != 0;
    let received_at = SystemTime::UNIX_EPOCH + Duration::from_micros(payload.get_u64_le());
    let request_id = crate::handoff::RequestId::from_bits(payload.get_u64_le());
    let remote_addr = get_address(payload)?;
    let local_addr = get_address(payload)?;
    let headers = decode_headers(payload)?;
    let access = decode_access(payload)?;
    need(payload, 4)?;
    let count = payload.get_u32_le() as usize;
    let mut variables = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        variables.push((get_str(payload)?, get_str(payload)?));
    }
    let handler = decode_handler(payload)?;
    Ok(RequestHead {
        method,
        target,
        version,
        headers,
        remote_addr,
        local_addr,
        https,
        received_at,
        request_id,
        has_body,
        access,
        variables,
        handler,
    })
}

fn encode_response_head(head: &ResponseHead, out: &mut BytesMut) {
    out.put_u16_le(head.status.as_u16());
    put_bytes(out, head.reason.as_deref().unwrap_or_default());
    encode_headers(&head.headers, out);
}

fn decode_response_head(payload: &mut Bytes) -> Result<ResponseHead, ProtocolError> {
    need(payload, 2)?;
    let status = http::StatusCode::from_u16(payload.get_u16_le())
        .map_err(|_| ProtocolError::Malformed("bad status code"))?;
    let reason = get_bytes(payload)?;
    let headers = decode_headers(payload)?;
    Ok(ResponseHead {
        status,
        reason: (!reason.is_empty()).then_some(reason),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(frame: &Frame) -> Frame {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        // Feed it one byte at a time to exercise partial reads.
        let (mut client, server) = tokio::io::duplex(1);
        let bytes = encoded.freeze();
        let writer = tokio::spawn(async move { client.write_all(&bytes).await });
        let mut reader = FrameReader::new(server);
        let decoded = reader.read().await.expect("frame decodes");
        writer.await.expect("writer ran").expect("bytes written");
        decoded
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_chunk_larger_than_a_frame_goes_out_as_several() {
        runtime().block_on(async {
            let size = MAX_PAYLOAD + MAX_CHUNK_FRAME + 7;
            let chunk = vec![b'x'; size];
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let writer = tokio::spawn(async move { write_chunk(&mut client, true, &chunk).await });
            let mut reader = FrameReader::new(server);
            let mut received = 0;
            while received < size {
                match reader.read().await.expect("a chunk frame") {
                    Frame::ResponseChunk(piece) => {
                        assert!(piece.len() <= MAX_CHUNK_FRAME);
                        assert!(piece.iter().all(|byte| *byte == b'x'));
                        received += piece.len();
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            }
            assert_eq!(received, size);
            writer.await.expect("writer ran").expect("bytes written");
        });
    }

    #[test]
    fn request_head_survives_the_trip() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-a", http::HeaderValue::from_static("1"));
        headers.append(
            "x-a",
            http::HeaderValue::from_bytes(b"caf\xe9").expect("latin-1"),
        );
        let head = RequestHead {
            method: http::Method::POST,
            target: http::Uri::from_static("/a%20b?x=1"),
            version: http::Version::HTTP_10,
            headers,
            remote_addr: "[::1]:5000".parse().expect("addr"),
            local_addr: "127.0.0.1:8000".parse().expect("addr"),
            https: true,
            received_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_234_567),
            request_id: crate::handoff::RequestId::from_bits(0x0123_4567_89ab_cdef),
            has_body: true,
            access: Some(crate::handoff::AccessCheck {
                credentials: Some(crate::handoff::Credentials::Basic {
                    user: "spy".to_owned(),
                    password: "sé:cret".to_owned(),
                }),
                challenge: "Basic realm=\"localhost:8000\"".to_owned(),
            }),
            variables: vec![
                ("SSL_PROTOCOL".to_owned(), "TLSv1.3".to_owned()),
                ("HTTPS".to_owned(), String::new()),
            ],
            handler: Some(crate::handoff::HandlerTarget {
                index: 2,
                file: "/srv/site/caf\u{e9}.py".into(),
                script_name: b"/caf\xe9.py".to_vec(),
            }),
        };
        let access = head.access.clone();
        let variables = head.variables.clone();
        let handler = head.handler.clone();
        let Frame::RequestHead(decoded) =
            runtime().block_on(round_trip(&Frame::RequestHead(Box::new(head))))
        else {
            panic!("wrong frame kind");
        };
        assert_eq!(decoded.method, http::Method::POST);
        assert_eq!(decoded.variables, variables);
        assert_eq!(decoded.target, "/a%20b?x=1");
        assert_eq!(decoded.version, http::Version::HTTP_10);
        let values: Vec<&[u8]> = decoded
            .headers
            .get_all("x-a")
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect();
        assert_eq!(values, [&b"1"[..], &b"caf\xe9"[..]]);
        assert_eq!(decoded.remote_addr.to_string(), "[::1]:5000");
        assert_eq!(decoded.local_addr.to_string(), "127.0.0.1:8000");
        assert!(decoded.https && decoded.has_body);
        assert_eq!(decoded.request_id.to_bits(), 0x0123_4567_89ab_cdef);
        assert_eq!(decoded.access, access);
        assert_eq!(decoded.handler, handler);
        assert_eq!(
            decoded.received_at,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_234_567)
        );
    }

    #[test]
    fn addresses_and_every_form_of_target_survive_the_trip() {
        let scoped = std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().expect("address"),
            443,
            7,
            3,
        ));
        let mut out = BytesMut::new();
        for address in [
            scoped,
            "10.1.2.3:65535".parse().expect("address"),
            "[::ffff:10.1.2.3]:1".parse().expect("address"),
        ] {
            out.clear();
            put_address(&mut out, address);
            assert_eq!(
                get_address(&mut out.split().freeze()).expect("decoded"),
                address
            );
        }
        assert!(get_address(&mut Bytes::from_static(&[4, 1, 2])).is_err());
        assert!(get_address(&mut Bytes::from_static(&[5])).is_err());
        for target in ["http://example.com:81/a?b", "*", "/", "/x?y=%20"] {
            let head = RequestHead {
                method: http::Method::OPTIONS,
                target: target.parse().expect("target"),
                version: http::Version::HTTP_11,
                headers: http::HeaderMap::new(),
                remote_addr: scoped,
                local_addr: scoped,
                https: false,
                received_at: SystemTime::UNIX_EPOCH,
                request_id: crate::handoff::RequestId::from_bits(1),
                has_body: false,
                access: None,
                variables: Vec::new(),
                handler: None,
            };
            let Frame::RequestHead(decoded) =
                runtime().block_on(round_trip(&Frame::RequestHead(Box::new(head))))
            else {
                panic!("wrong frame kind");
            };
            assert_eq!(decoded.target, target);
        }
    }

    #[test]
    fn full_response_keeps_reason_and_body() {
        let head = ResponseHead {
            status: http::StatusCode::IM_A_TEAPOT,
            reason: Some(Bytes::from_static(b"Short And Stout")),
            headers: http::HeaderMap::new(),
        };
        let frame = Frame::ResponseFull {
            head: Box::new(head),
            body: Bytes::from_static(b"hello"),
        };
        let Frame::ResponseFull { head, body } = runtime().block_on(round_trip(&frame)) else {
            panic!("wrong frame kind");
        };
        assert_eq!(head.status, 418);
        assert_eq!(head.reason.as_deref(), Some(&b"Short And Stout"[..]));
        assert_eq!(body, "hello");
    }

    #[test]
    fn corrupt_lengths_are_refused() {
        let result = runtime().block_on(async {
            let (mut client, server) = tokio::io::duplex(64);
            client
                .write_all(&[kind::BODY_CHUNK, 0xff, 0xff, 0xff, 0xff])
                .await
                .expect("written");
            FrameReader::new(server).read().await
        });
        assert!(matches!(result, Err(ProtocolError::Malformed(_))));
    }
}

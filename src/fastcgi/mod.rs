//! FastCGI 1.0, the web server's half (php-fpm is the application server): the records a
//! request is written as, and a decoder of the records that come back. Pure: no I/O, no
//! tokio; `frontend/gateway/php.rs` moves the bytes.
//!
//! Why our own and not a crate: the protocol as a client uses it is a few record types,
//! and the crate that exists (`fastcgi-client`) changed its API in each of its last
//! releases, reads the request body as an `AsyncRead` where ours is a stream of chunks,
//! and in its current release needs a compatibility layer for tokio's I/O. Here, the
//! body is written record by record as it arrives, and the decoder is fed whatever the
//! socket gave, so the response streams back without being held whole. Fuzzed
//! (`fuzz/fuzz_targets/fastcgi_records.rs`, through [`fuzz_entry`]).

pub mod fuzz_entry;
#[cfg(test)]
mod tests;

use bytes::{Buf, Bytes, BytesMut};

/// The protocol version every record carries.
const VERSION: u8 = 1;
/// Name-value pairs, as the bytes they are.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One request per connection: its id is always 1 (0 is the connection's own).
pub const REQUEST_ID: u16 = 1;
/// The largest content one record carries.
const MAX_CONTENT: usize = 0xFFFF;
/// The fixed header of every record.
const HEADER_LENGTH: usize = 8;

/// The record types of the specification (section 8).
mod kind {
    pub(super) const BEGIN_REQUEST: u8 = 1;
    pub(super) const END_REQUEST: u8 = 3;
    pub(super) const PARAMS: u8 = 4;
    pub(super) const STDIN: u8 = 5;
    pub(super) const STDOUT: u8 = 6;
    pub(super) const STDERR: u8 = 7;
}

/// The role asked for in `FCGI_BEGIN_REQUEST`: a responder answers an HTTP request.
const ROLE_RESPONDER: u16 = 1;

/// Appends one record of `record_type` with `content` (at most 65535 bytes), padded to a
/// multiple of eight bytes as the specification recommends.
fn record(out: &mut Vec<u8>, record_type: u8, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT);
    let length = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let padding = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[VERSION, record_type]);
    out.extend_from_slice(&REQUEST_ID.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.push(u8::try_from(padding).unwrap_or(0));
    out.push(0);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
}

/// `FCGI_BEGIN_REQUEST` for a responder; the server closes the connection after it.
pub fn begin_request(out: &mut Vec<u8>) {
    let mut body = [0u8; 8];
    body[..2].copy_from_slice(&ROLE_RESPONDER.to_be_bytes());
    record(out, kind::BEGIN_REQUEST, &body);
}

/// The `FCGI_PARAMS` stream: every pair, in as many records as needed, then the empty
/// record that ends the stream.
pub fn params<'a>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
    let mut encoded = Vec::new();
    for (name, value) in pairs {
        encode_length(&mut encoded, name.len());
        encode_length(&mut encoded, value.len());
        encoded.extend_from_slice(name);
        encoded.extend_from_slice(value);
    }
    for piece in encoded.chunks(MAX_CONTENT) {
        record(out, kind::PARAMS, piece);
    }
    record(out, kind::PARAMS, &[]);
}

/// A name's or value's length: one byte below 128, else four with the high bit set.
fn encode_length(out: &mut Vec<u8>, length: usize) {
    match u8::try_from(length) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let long = u32::try_from(length).unwrap_or(0x7FFF_FFFF) | 0x8000_0000;
            out.extend_from_slice(&long.to_be_bytes());
        }
    }
}

/// Part of the `FCGI_STDIN` stream (the request body), in records of at most 65535
/// bytes; an empty `data` is the record that ends the stream.
pub fn stdin(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        record(out, kind::STDIN, &[]);
        return;
    }
    for piece in data.chunks(MAX_CONTENT) {
        record(out, kind::STDIN, piece);
    }
}

/// The name-value pairs of a `FCGI_PARAMS` stream's content (its records' contents put
/// together), as an application server reads them: the other side of [`params`].
pub fn decode_params(mut content: &[u8]) -> Result<Pairs, FastCgiError> {
    let mut pairs = Vec::new();
    while !content.is_empty() {
        let name_length = decode_length(&mut content)?;
        let value_length = decode_length(&mut content)?;
        let total = name_length
            .checked_add(value_length)
            .ok_or(FastCgiError::TruncatedParams)?;
        if content.len() < total {
            return Err(FastCgiError::TruncatedParams);
        }
        let (name, rest) = content.split_at(name_length);
        let (value, rest) = rest.split_at(value_length);
        pairs.push((name.to_vec(), value.to_vec()));
        content = rest;
    }
    Ok(pairs)
}

fn decode_length(content: &mut &[u8]) -> Result<usize, FastCgiError> {
    let first = *content.first().ok_or(FastCgiError::TruncatedParams)?;
    if first < 0x80 {
        *content = &content[1..];
        return Ok(usize::from(first));
    }
    let bytes: [u8; 4] = content
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(FastCgiError::TruncatedParams)?;
    *content = &content[4..];
    usize::try_from(u32::from_be_bytes(bytes) & 0x7FFF_FFFF)
        .map_err(|_| FastCgiError::TruncatedParams)
}

/// What the application server said, record by record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Part of the response: CGI headers, a blank line, then the body.
    Stdout(Bytes),
    /// Text for the error log (PHP's warnings and errors).
    Stderr(Bytes),
    /// The request is over: the application's exit status and the protocol status (0:
    /// complete; 1: cannot multiplex; 2: overloaded; 3: unknown role).
    End {
        app_status: u32,
        protocol_status: u8,
    },
}

/// A malformed record stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FastCgiError {
    #[error("FastCGI record of version {0} (only version 1 is spoken)")]
    BadVersion(u8),
    #[error("FastCGI record for request {0}, which was never begun")]
    UnknownRequest(u16),
    #[error("FastCGI end-of-request record with {0} bytes (8 expected)")]
    BadEndRequest(usize),
    #[error("FastCGI name-value pairs cut short")]
    TruncatedParams,
}

/// Decodes the records a server sends for one request, fed whatever bytes arrive.
#[derive(Default)]
pub struct Decoder {
    buffer: BytesMut,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Bytes received and not yet decoded (an incomplete record).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next event, if a whole record is buffered. Records of types a responder's
    /// client has no use for (management records, `FCGI_UNKNOWN_TYPE`) are skipped;
    /// empty `FCGI_STDOUT`/`FCGI_STDERR` records (a stream's end) give nothing.
    pub fn next_event(&mut self) -> Result<Option<Event>, FastCgiError> {
        loop {
            if self.buffer.len() < HEADER_LENGTH {
                return Ok(None);
            }
            let header = &self.buffer[..HEADER_LENGTH];
            if header[0] != VERSION {
                return Err(FastCgiError::BadVersion(header[0]));
            }
            let record_type = header[1];
            let request_id = u16::from_be_bytes([header[2], header[3]]);
            let content_length = usize::from(u16::from_be_bytes([header[4], header[5]]));
            let padding = usize::from(header[6]);
            let total = HEADER_LENGTH + content_length + padding;
            if self.buffer.len() < total {
                return Ok(None);
            }
            self.buffer.advance(HEADER_LENGTH);
            let content = self.buffer.split_to(content_length).freeze();
            self.buffer.advance(padding);
            if request_id == 0 {
                // A management record (FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE).
                continue;
            }
            if request_id != REQUEST_ID {
                return Err(FastCgiError::UnknownRequest(request_id));
            }
            match record_type {
                kind::STDOUT if !content.is_empty() => return Ok(Some(Event::Stdout(content))),
                kind::STDERR if !content.is_empty() => return Ok(Some(Event::Stderr(content))),
                kind::END_REQUEST => {
                    if content.len() != 8 {
                        return Err(FastCgiError::BadEndRequest(content.len()));
                    }
                    let app_status =
                        u32::from_be_bytes([content[0], content[1], content[2], content[3]]);
                    return Ok(Some(Event::End {
                        app_status,
                        protocol_status: content[4],
                    }));
                }
                _ => {}
            }
        }
    }
}

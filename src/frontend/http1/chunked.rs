//! The chunked transfer coding of a request body (RFC 9112 7.1), decoded as a state
//! machine: feed it bytes, get back slices of body data (borrowed from what was fed, never
//! copied) and, at the end, "done" with where the body ended.
//!
//! Chunk extensions are checked (no control bytes, bounded length) and ignored. Trailer
//! fields are checked and then dropped (WSGI has no way to hand them to an application);
//! a request whose trailers carry framing, routing, authentication, request modifiers or
//! content format (RFC 9110 6.5.1) is refused, not trimmed: such a trailer is either a
//! mistake or an attempt to make two parsers disagree.

use super::head::{Limits, is_tchar};
use super::reject::Rejection;

/// Longest extension text on one chunk-size line. Extensions are ignored; the bound keeps
/// a client from making us read unbounded bytes that are not body.
pub const MAX_EXTENSION: usize = 1024;

/// A chunk size has at most 16 hex digits: a u64 (leading zeros count too).
const MAX_SIZE_DIGITS: u8 = 16;

/// Trailer fields refused (RFC 9110 6.5.1 and 6.5.2): framing, routing, authentication,
/// request modifiers, content format, and connection control.
const FORBIDDEN_TRAILERS: &[&str] = &[
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "expect",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Body data, a slice of the input.
    Data(&'a [u8]),
    /// Every byte given was consumed; more are needed.
    NeedMore,
    /// The body (trailers included) is complete; bytes after it belong to the next request.
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_fields: usize,
    max_field_size: usize,
    /// The trailer line being read; allocated only if the body has trailers.
    trailer_line: Vec<u8>,
    n_trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size (RFC 9112 7.1.1's BWS before `;`), counted against
    /// [`MAX_EXTENSION`] so that it cannot go on forever.
    SizeSpace {
        value: u64,
        length: usize,
    },
    /// In chunk extensions, ignored.
    Extension {
        value: u64,
        length: usize,
    },
    /// After the CR that ends a chunk-size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// After chunk data: its CR, then its LF.
    DataCr,
    DataLf,
    /// In a trailer line (or the empty line that ends the body).
    Trailer,
    /// After the CR that ends a trailer line.
    TrailerLf,
    Done,
}

impl ChunkedDecoder {
    /// A decoder whose trailers are bounded as header fields are.
    pub fn new(limits: &Limits) -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            max_fields: limits.max_fields,
            max_field_size: limits.max_field_size,
            trailer_line: Vec::new(),
            n_trailers: 0,
        }
    }

    /// Decodes from the start of `input`: the number of bytes consumed and what they gave.
    /// Call again with the rest of the input after `Data`; after `NeedMore` all of it was
    /// consumed; after `Done` the rest is not part of this body.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), Rejection> {
        let mut position = 0;
        while position < input.len() {
            if let State::Data { remaining } = self.state {
                let available = input.len() - position;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                let data = &input[position..position + take];
                return Ok((position + take, Decoded::Data(data)));
            }
            if self.state == State::Done {
                return Ok((position, Decoded::Done));
            }
            let byte = input[position];
            position += 1;
            self.step(byte)?;
            if self.state == State::Done {
                return Ok((position, Decoded::Done));
            }
        }
        if self.state == State::Done {
            return Ok((position, Decoded::Done));
        }
        Ok((position, Decoded::NeedMore))
    }

    /// True once the whole body was decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// One byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<(), Rejection> {
        self.state = match self.state {
            State::Size { value, digits } => match byte {
                _ if byte.is_ascii_hexdigit() => {
                    if digits == MAX_SIZE_DIGITS {
                        return Err(Rejection::ChunkSizeTooLong);
                    }
                    let digit = u64::from(char::from(byte).to_digit(16).unwrap_or(0));
                    State::Size {
                        value: value << 4 | digit,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(Rejection::InvalidChunkSize),
                b' ' | b'\t' => State::SizeSpace { value, length: 1 },
                b';' => State::Extension { value, length: 0 },
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(Rejection::BareLf),
                _ => return Err(Rejection::InvalidChunkSize),
            },
            State::SizeSpace { value, length } => match byte {
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(Rejection::BareLf),
                _ if length == MAX_EXTENSION => return Err(Rejection::ChunkExtensionTooLong),
                b' ' | b'\t' => State::SizeSpace {
                    value,
                    length: length + 1,
                },
                b';' => State::Extension { value, length },
                _ => return Err(Rejection::InvalidChunkSize),
            },
            State::Extension { value, length } => match byte {
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(Rejection::BareLf),
                _ if length == MAX_EXTENSION => return Err(Rejection::ChunkExtensionTooLong),
                b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Extension {
                    value,
                    length: length + 1,
                },
                _ => return Err(Rejection::InvalidChunkExtension),
            },
            State::SizeLf { value } => match (byte, value) {
                (b'\n', 0) => State::Trailer,
                (b'\n', remaining) => State::Data { remaining },
                _ => return Err(Rejection::BareCr),
            },
            State::DataCr if byte == b'\r' => State::DataLf,
            State::DataLf if byte == b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            State::DataCr | State::DataLf => return Err(Rejection::MissingChunkCrlf),
            State::Trailer => match byte {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(Rejection::BareLf),
                _ if self.trailer_line.len() == self.max_field_size => {
                    return Err(Rejection::FieldTooLong);
                }
                _ => {
                    self.trailer_line.push(byte);
                    State::Trailer
                }
            },
            State::TrailerLf if byte == b'\n' => {
                if self.trailer_line.is_empty() {
                    State::Done
                } else {
                    self.n_trailers += 1;
                    if self.n_trailers > self.max_fields {
                        return Err(Rejection::TooManyFields);
                    }
                    check_trailer(&self.trailer_line)?;
                    self.trailer_line.clear();
                    State::Trailer
                }
            }
            State::TrailerLf => return Err(Rejection::BareCr),
            State::Data { .. } | State::Done => unreachable!("handled by decode"),
        };
        Ok(())
    }
}

/// One trailer field line (without CRLF): the grammar of a header field line, and a name
/// that is not on the forbidden list.
fn check_trailer(line: &[u8]) -> Result<(), Rejection> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Rejection::ObsFold);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Rejection::InvalidFieldName)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Err(Rejection::SpaceBeforeColon);
    }
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(Rejection::InvalidFieldName);
    }
    if !value
        .iter()
        .all(|&b| matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff))
    {
        return Err(Rejection::InvalidFieldValue);
    }
    if FORBIDDEN_TRAILERS
        .iter()
        .any(|forbidden| name.eq_ignore_ascii_case(forbidden.as_bytes()))
    {
        return Err(Rejection::ForbiddenTrailer);
    }
    Ok(())
}

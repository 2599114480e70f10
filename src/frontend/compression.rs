//! `--compress-responses`: the response stage that encodes text bodies with gzip, or
//! brotli when the client prefers it, as mod_wsgi-express's `AddOutputFilterByType
//! DEFLATE` lines do for Apache.
//!
//! Which responses: those of a text type (`TYPES`), that carry no `Content-Encoding` or
//! `Content-Range`, no `Cache-Control: no-transform`, whose status has a body that is not
//! a part (not 1xx, 204, 206 or 304), and that are not known to be smaller than
//! [`MIN_LENGTH`]. Such a response always says `Vary: Accept-Encoding`; it is encoded when
//! `Accept-Encoding` lets it be ([`negotiate`]).
//!
//! How: a complete body (a list result) is encoded whole and gets its new Content-Length;
//! a streamed body is encoded as it comes, each application chunk flushed through the
//! encoder so that the client gets it without waiting for the next one (chunked framing,
//! no Content-Length); a file is read and encoded a block at a time on the blocking pool.
//! Pieces up to [`INLINE_LIMIT`] bytes are encoded on the reactor (well under 100 µs);
//! larger ones on tokio's blocking pool, so that the reactor never stalls on a big one.
//! The application thread never does this work. A strong `ETag` becomes weak: the encoded
//! bytes differ from the file's, the meaning does not (RFC 9110 8.8.1).

use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::handoff::{self, ResponseBody, StreamAborted};

/// Bodies known to be shorter than this are sent as they are: below it the response fits
/// in one TCP segment (1,460 bytes of payload) with its head either way, so encoding
/// saves no round trip and costs a little CPU and a few header bytes.
pub(super) const MIN_LENGTH: u64 = 1024;

/// Largest piece encoded on the reactor itself; larger ones go to the blocking pool.
/// Measured on this 2-core machine under load (flate2 and brotli in release, text that
/// compresses 9:1): a 4 KiB piece through an existing encoder, flushed, 45-65 µs;
/// making an encoder 35-45 µs; 16 KiB encoded whole 550-700 µs. So the reactor gives at
/// most about 100 µs to a piece, and a larger one costs a hop to the blocking pool
/// (some 10 µs) instead of a stall of every connection on the reactor.
pub(super) const INLINE_LIMIT: usize = 4 * 1024;

/// Block size read from a file being encoded.
const FILE_BLOCK_SIZE: usize = 64 * 1024;

/// gzip level: zlib's default, which Apache's `mod_deflate` keeps too.
const GZIP_LEVEL: u32 = 6;
/// brotli quality: 4 encodes about as fast as gzip 6 and a little smaller; the higher
/// qualities are for files compressed once ahead of time, not per response.
const BROTLI_QUALITY: u32 = 4;
/// brotli window: 4 MiB, the size browsers are written for.
const BROTLI_WINDOW: u32 = 22;

/// The content types encoded (parameters such as `charset` aside): mod_wsgi-express's
/// list, and JSON.
const TYPES: &[&str] = &[
    "text/plain",
    "text/html",
    "text/xml",
    "text/css",
    "text/javascript",
    "application/xhtml+xml",
    "application/xml",
    "application/javascript",
    "application/json",
];

/// A content coding Ferrule produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }
}

/// The coding `Accept-Encoding` lets the response have (RFC 9110 12.5.3): brotli when the
/// client weighs it above gzip, or gzip is refused; else gzip when it has a weight above 0.
/// `*` stands for the codings not named; `q=0` refuses. No header, no encoding (a client
/// that says nothing may not decode anything).
pub(super) fn negotiate(accept_encoding: Option<&http::HeaderValue>) -> Option<Coding> {
    let text = accept_encoding?.to_str().ok()?;
    let (mut gzip, mut brotli, mut star) = (None, None, None);
    for item in text.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut weight = Some(1.0_f32);
        for parameter in parts {
            let parameter = parameter.trim();
            if let Some(value) = parameter
                .strip_prefix("q=")
                .or_else(|| parameter.strip_prefix("Q="))
            {
                weight = value
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q));
            }
        }
        // A weight that is not one (`q=high`) makes the item say nothing.
        let Some(weight) = weight else { continue };
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(weight),
            "br" => brotli = Some(weight),
            "*" => star = Some(weight),
            _ => {}
        }
    }
    let gzip = gzip.or(star).unwrap_or(0.0);
    let brotli = brotli.or(star).unwrap_or(0.0);
    if brotli > 0.0 && brotli > gzip {
        Some(Coding::Brotli)
    } else if gzip > 0.0 {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// Whether a response of this status and these headers is encoded at all, before
/// `Accept-Encoding` is asked.
fn eligible(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    known_length: Option<u64>,
) -> bool {
    if status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::PARTIAL_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || headers.contains_key(http::header::CONTENT_ENCODING)
        || headers.contains_key(http::header::CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .any(|value| has_token(value.as_bytes(), b"no-transform"));
    if no_transform || known_length.is_some_and(|length| length < MIN_LENGTH) {
        return false;
    }
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            TYPES
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(essence))
        })
}

/// The length the body is known to have, before anything is read.
fn known_length(response: &handoff::Response) -> Option<u64> {
    match &response.body {
        ResponseBody::Full(chunks) => Some(chunks.iter().map(|chunk| chunk.len() as u64).sum()),
        ResponseBody::File { length, .. } => Some(*length),
        ResponseBody::Stream(_) => response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok()),
    }
}

/// The compression stage: `response` as the client gets it, given the coding the
/// request accepts. For HEAD (`head`), the headers are those the GET would have had and
/// a stream is left unread.
pub(super) async fn compress(
    mut response: handoff::Response,
    accepted: Option<Coding>,
    head: bool,
) -> handoff::Response {
    if !eligible(response.status, &response.headers, known_length(&response)) {
        return response;
    }
    add_vary(&mut response.headers);
    let Some(coding) = accepted else {
        return response;
    };
    let headers = &mut response.headers;
    headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static(coding.token()),
    );
    headers.remove(http::header::CONTENT_LENGTH);
    if let Some(weak) = headers.get(http::header::ETAG).and_then(weaken) {
        headers.insert(http::header::ETAG, weak);
    }
    response.body = match response.body {
        ResponseBody::Full(chunks) => {
            let encoded = encode_whole(coding, chunks).await;
            match encoded {
                Some(encoded) => {
                    response.headers.insert(
                        http::header::CONTENT_LENGTH,
                        http::HeaderValue::from(encoded.len()),
                    );
                    ResponseBody::Full(vec![encoded])
                }
                // Cannot happen with an in-memory sink; a failed stream cuts the response.
                None => aborted_stream(),
            }
        }
        // HEAD: the GET's body would be streamed (no Content-Length); nothing is read.
        body @ ResponseBody::Stream(_) if head => body,
        ResponseBody::Stream(body_rx) => ResponseBody::Stream(encode_stream(coding, body_rx)),
        ResponseBody::File { .. } if head => ResponseBody::Stream(mpsc::channel(1).1),
        ResponseBody::File {
            file,
            offset,
            length,
        } => ResponseBody::Stream(encode_file(coding, file, offset, length)),
    };
    response
}

/// Adds `Accept-Encoding` to `Vary`, unless it is there already (or `*` covers it).
fn add_vary(headers: &mut http::HeaderMap) {
    let covered = headers.get_all(http::header::VARY).iter().any(|value| {
        has_token(value.as_bytes(), b"accept-encoding") || has_token(value.as_bytes(), b"*")
    });
    if !covered {
        headers.append(
            http::header::VARY,
            http::HeaderValue::from_static("Accept-Encoding"),
        );
    }
}

/// `"tag"` as `W/"tag"`; `None` when it is weak already (or not a tag).
fn weaken(etag: &http::HeaderValue) -> Option<http::HeaderValue> {
    let text = etag.to_str().ok()?;
    if !text.starts_with('"') {
        return None;
    }
    http::HeaderValue::from_str(&format!("W/{text}")).ok()
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// The encoder of one response, fed piece by piece.
pub(super) enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    pub(super) fn new(coding: Coding) -> Self {
        match coding {
            Coding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Coding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
        }
    }

    /// Encodes `data`, flushed: the bytes returned decode to all the data given so far.
    pub(super) fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                Ok(Bytes::from(std::mem::take(encoder.get_mut())))
            }
            Self::Brotli(encoder) => {
                encoder.write_all(data)?;
                encoder.flush()?;
                Ok(Bytes::from(std::mem::take(encoder.get_mut())))
            }
        }
    }

    /// Encodes `data` without flushing: for a body encoded whole, in one go.
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Gzip(encoder) => encoder.write_all(data),
            Self::Brotli(encoder) => encoder.write_all(data),
        }
    }

    /// What the encoder has produced so far, without flushing it.
    fn take(&mut self) -> Bytes {
        match self {
            Self::Gzip(encoder) => Bytes::from(std::mem::take(encoder.get_mut())),
            Self::Brotli(encoder) => Bytes::from(std::mem::take(encoder.get_mut())),
        }
    }

    /// The end of the stream (and of the gzip trailer).
    pub(super) fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(encoder) => encoder.finish().map(Bytes::from),
            Self::Brotli(encoder) => Ok(Bytes::from(encoder.into_inner())),
        }
    }
}

/// A complete body, encoded whole: on the reactor when small, else on the blocking pool.
async fn encode_whole(coding: Coding, chunks: Vec<Bytes>) -> Option<Bytes> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let work = move || {
        let mut encoder = Encoder::new(coding);
        for chunk in &chunks {
            encoder.write(chunk).ok()?;
        }
        encoder.finish().ok()
    };
    if total <= INLINE_LIMIT {
        work()
    } else {
        tokio::task::spawn_blocking(work).await.ok().flatten()
    }
}

/// A stream that fails at once: the writer cuts the connection.
fn aborted_stream() -> ResponseBody {
    let (failed_tx, failed_rx) = mpsc::channel(1);
    let _ = failed_tx.try_send(Err(StreamAborted));
    ResponseBody::Stream(failed_rx)
}

/// The application's stream, encoded chunk by chunk by a task of its own: each chunk is
/// flushed through the encoder as it arrives, so the client sees it without waiting for
/// the next. The channel is as short as the application's: a slow client still holds the
/// application back rather than memory piling up here. When the client goes away, the
/// task ends and drops the application's stream, which tells the application.
fn encode_stream(
    coding: Coding,
    mut body_rx: mpsc::Receiver<Result<Bytes, StreamAborted>>,
) -> mpsc::Receiver<Result<Bytes, StreamAborted>> {
    let (encoded_tx, encoded_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut encoder = Some(Encoder::new(coding));
        while let Some(next) = body_rx.recv().await {
            let Ok(chunk) = next else {
                let _ = encoded_tx.send(Err(StreamAborted)).await;
                return;
            };
            if chunk.is_empty() {
                continue;
            }
            let Some(mut current) = encoder.take() else {
                return;
            };
            let (back, output) = if chunk.len() <= INLINE_LIMIT {
                let output = current.push(&chunk);
                (current, output)
            } else {
                let pushed = tokio::task::spawn_blocking(move || {
                    let output = current.push(&chunk);
                    (current, output)
                })
                .await;
                let Ok(done) = pushed else {
                    let _ = encoded_tx.send(Err(StreamAborted)).await;
                    return;
                };
                done
            };
            encoder = Some(back);
            let item = output.map_err(|_| StreamAborted);
            let failed = item.is_err();
            if encoded_tx.send(item).await.is_err() || failed {
                return;
            }
        }
        if let Some(encoder) = encoder {
            let _ = encoded_tx
                .send(encoder.finish().map_err(|_| StreamAborted))
                .await;
        }
    });
    encoded_rx
}

/// A file's slice, read and encoded a block at a time on the blocking pool, as the client
/// takes the blocks.
fn encode_file(
    coding: Coding,
    file: std::fs::File,
    offset: u64,
    length: u64,
) -> mpsc::Receiver<Result<Bytes, StreamAborted>> {
    use std::os::unix::fs::FileExt;
    let (encoded_tx, encoded_rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut encoder = Encoder::new(coding);
        let mut position = offset;
        let end = offset + length;
        let mut block = vec![0; FILE_BLOCK_SIZE];
        while position < end {
            let want = usize::try_from(end - position)
                .map_or(FILE_BLOCK_SIZE, |left| left.min(FILE_BLOCK_SIZE));
            let read = match file.read_at(&mut block[..want], position) {
                // The file shrank or failed under us: cut the response.
                Ok(0) | Err(_) => {
                    let _ = encoded_tx.blocking_send(Err(StreamAborted));
                    return;
                }
                Ok(read) => read,
            };
            position += read as u64;
            // Not flushed: what the encoder has produced so far goes, the rest with the
            // next block (a file has no pauses worth flushing for).
            if encoder.write(&block[..read]).is_err() {
                let _ = encoded_tx.blocking_send(Err(StreamAborted));
                return;
            }
            let output = encoder.take();
            if !output.is_empty() && encoded_tx.blocking_send(Ok(output)).is_err() {
                return;
            }
        }
        let _ = encoded_tx.blocking_send(encoder.finish().map_err(|_| StreamAborted));
    });
    encoded_rx
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn accept(text: &str) -> Option<Coding> {
        negotiate(Some(
            &http::HeaderValue::from_str(text)
                .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        ))
    }

    #[test]
    fn accept_encoding_is_weighed_as_rfc_9110_says() {
        assert_eq!(negotiate(None), None);
        assert_eq!(accept("gzip"), Some(Coding::Gzip));
        assert_eq!(accept("gzip, deflate, br, zstd"), Some(Coding::Gzip));
        assert_eq!(accept("br"), Some(Coding::Brotli));
        assert_eq!(accept("gzip;q=0.5, br"), Some(Coding::Brotli));
        assert_eq!(accept("gzip, br;q=0.9"), Some(Coding::Gzip));
        assert_eq!(accept("gzip;q=0, br;q=0"), None);
        assert_eq!(accept("gzip;q=0"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("*"), Some(Coding::Gzip));
        assert_eq!(accept("*;q=0.5, gzip;q=0"), Some(Coding::Brotli));
        assert_eq!(accept("x-gzip"), Some(Coding::Gzip));
        assert_eq!(accept("GZIP ; Q=1"), Some(Coding::Gzip));
        assert_eq!(accept("gzip;q=2"), None);
        assert_eq!(accept("br;q=0.001, gzip;q=0"), Some(Coding::Brotli));
    }

    #[test]
    fn only_text_types_with_a_body_worth_encoding_are_eligible() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let ok = http::StatusCode::OK;
        assert!(eligible(ok, &headers, Some(MIN_LENGTH)));
        assert!(eligible(ok, &headers, None));
        assert!(!eligible(ok, &headers, Some(MIN_LENGTH - 1)));
        assert!(!eligible(http::StatusCode::PARTIAL_CONTENT, &headers, None));
        assert!(!eligible(http::StatusCode::NO_CONTENT, &headers, None));
        let mut encoded = headers.clone();
        encoded.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        assert!(!eligible(ok, &encoded, None));
        let mut no_transform = headers.clone();
        no_transform.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, no-transform"),
        );
        assert!(!eligible(ok, &no_transform, None));
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("image/png"),
        );
        assert!(!eligible(ok, &headers, None));
    }

    #[test]
    fn pushed_pieces_decode_as_they_come_and_whole_at_the_end() {
        let text: Vec<u8> = b"line of text for the encoder\n".repeat(100);
        for coding in [Coding::Gzip, Coding::Brotli] {
            let mut encoder = Encoder::new(coding);
            let first = encoder.push(&text).unwrap_or_default();
            assert!(!first.is_empty() && first.len() < text.len());
            let second = encoder.push(&text).unwrap_or_default();
            let end = encoder.finish().unwrap_or_default();
            let all = [first, second, end].concat();
            let mut decoded = Vec::new();
            match coding {
                Coding::Gzip => flate2::read::GzDecoder::new(&all[..])
                    .read_to_end(&mut decoded)
                    .map(drop),
                Coding::Brotli => brotli::Decompressor::new(&all[..], 4096)
                    .read_to_end(&mut decoded)
                    .map(drop),
            }
            .unwrap_or_default();
            assert_eq!(decoded, [text.clone(), text.clone()].concat());
        }
    }

    #[test]
    fn a_strong_etag_becomes_weak() {
        let weak = weaken(&http::HeaderValue::from_static("\"1-2\""));
        assert_eq!(weak, Some(http::HeaderValue::from_static("W/\"1-2\"")));
        assert_eq!(weaken(&http::HeaderValue::from_static("W/\"1-2\"")), None);
    }
}

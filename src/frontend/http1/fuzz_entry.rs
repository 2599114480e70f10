//! The entry points of the fuzz targets in `fuzz/` (cargo-fuzz), one per target, kept in
//! the library so that a unit test replays the committed corpora through exactly the code
//! the fuzzer runs. Each one panics when an invariant breaks: a parse must not depend on
//! how the input was split into reads, and what was decoded must encode back the same.

use bytes::BytesMut;

use super::chunked::{ChunkedDecoder, Decoded};
use super::head::{HeadParser, Limits, parse_head};
use super::reject::Rejection;
use crate::daemon::protocol;

/// Limits small enough that a fuzzer's short inputs reach them.
const FUZZ_LIMITS: Limits = Limits {
    max_request_line: 256,
    max_fields: 16,
    max_field_size: 256,
};

/// The head parser: the input whole, then in two reads split at a point the input picks,
/// must give the same answer.
pub fn request_head(data: &[u8]) {
    let whole = parse_head(data, &FUZZ_LIMITS);
    if let Ok(Some(head)) = &whole {
        assert!(head.length <= data.len());
        assert!(!head.target.contains(&b'#'));
        agrees_with_httparse(&data[..head.length], head);
    }
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let mut parser = HeadParser::new(FUZZ_LIMITS);
    let first = parser.parse(&data[..split]);
    let in_two = match first {
        Ok(None) => parser.parse(data),
        decided => decided,
    };
    assert_eq!(in_two, whole, "split at {split}");
}

/// Differential check: a head we accept, httparse's own (more lenient) request parser
/// accepts too, and reads the same way.
fn agrees_with_httparse(bytes: &[u8], head: &super::Head) {
    let mut fields = vec![httparse::EMPTY_HEADER; FUZZ_LIMITS.max_fields];
    let mut request = httparse::Request::new(&mut fields);
    let status = request
        .parse(bytes)
        .expect("httparse accepts what we accept");
    assert_eq!(status, httparse::Status::Complete(head.length));
    assert_eq!(request.method, Some(head.method.as_str()));
    assert_eq!(request.path.map(str::as_bytes), Some(&head.target[..]));
    let version = u8::from(head.version == http::Version::HTTP_11);
    assert_eq!(request.version, Some(version));
    assert_eq!(request.headers.len(), head.headers.len());
    for field in request.headers.iter() {
        let ours = head.headers.get_all(field.name);
        assert!(ours.iter().any(|value| value.as_bytes() == field.value));
    }
}

/// The chunked decoder: the input whole, then one byte at a time, must give the same data
/// and end at the same byte.
pub fn chunked_body(data: &[u8]) {
    let whole = decode_in_reads(data, data.len().max(1));
    let bytewise = decode_in_reads(data, 1);
    assert_eq!(whole, bytewise);
}

/// Everything the decoder gave for `data` fed in reads of `read_size` bytes: the body,
/// and where it ended (`None` if it did not) or why it was refused.
pub fn decode_in_reads(
    data: &[u8],
    read_size: usize,
) -> Result<(Vec<u8>, Option<usize>), Rejection> {
    let mut decoder = ChunkedDecoder::new(&FUZZ_LIMITS);
    let mut body = Vec::new();
    let mut offset = 0;
    for read in data.chunks(read_size) {
        let mut input = read;
        while !input.is_empty() {
            let (consumed, event) = decoder.decode(input)?;
            match event {
                Decoded::Done => return Ok((body, Some(offset + consumed))),
                Decoded::Data(piece) => body.extend_from_slice(piece),
                Decoded::NeedMore => {}
            }
            offset += consumed;
            input = &input[consumed..];
        }
    }
    Ok((body, None))
}

/// The daemon IPC frame decoder: every frame it accepts encodes back to bytes that decode
/// and encode the same.
pub fn ipc_frame(data: &[u8]) {
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = protocol::split_frame(&mut buffer) {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        let canonical = encoded.clone();
        let again = protocol::split_frame(&mut encoded)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is whole");
        let mut encoded_again = BytesMut::new();
        again.encode(&mut encoded_again);
        assert_eq!(canonical, encoded_again);
    }
}

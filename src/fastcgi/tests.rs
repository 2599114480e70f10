//! The records as the specification lays them out, the decoder fed in pieces, and the
//! fuzz corpus replayed.

use super::*;

#[test]
fn a_record_has_its_header_and_padding() {
    let mut out = Vec::new();
    stdin(&mut out, b"abc");
    assert_eq!(
        out,
        [1, 5, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]
    );
}

#[test]
fn an_empty_stdin_ends_the_stream() {
    let mut out = Vec::new();
    stdin(&mut out, b"");
    assert_eq!(out, [1, 5, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn begin_request_asks_for_a_responder_that_closes() {
    let mut out = Vec::new();
    begin_request(&mut out);
    assert_eq!(out, [1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn long_names_and_values_take_four_length_bytes() {
    let long = vec![b'x'; 300];
    let mut out = Vec::new();
    params(
        &mut out,
        [(&b"SHORT"[..], &b"v"[..]), (&b"LONG"[..], &long[..])],
    );
    let content = fuzz_entry::params_content(&out);
    assert_eq!(&content[..2], [5, 1]);
    assert_eq!(&content[8..13], [4, 0x80, 0, 1, 44]);
    let pairs = decode_params(&content).expect("decodes");
    assert_eq!(pairs[1], (b"LONG".to_vec(), long));
    // The stream ends with an empty record.
    assert_eq!(&out[out.len() - 8..], [1, 4, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn a_body_larger_than_a_record_is_split() {
    let body = vec![7u8; 70_000];
    let mut out = Vec::new();
    stdin(&mut out, &body);
    assert_eq!(u16::from_be_bytes([out[4], out[5]]), 0xFFFF);
    let second = 8 + 0xFFFF + 1;
    assert_eq!(
        usize::from(u16::from_be_bytes([out[second + 4], out[second + 5]])),
        70_000 - 0xFFFF
    );
}

fn answer() -> Vec<u8> {
    let mut bytes = Vec::new();
    record(
        &mut bytes,
        kind::STDOUT,
        b"Status: 404 Not Found\r\n\r\nnothing",
    );
    record(&mut bytes, kind::STDERR, b"PHP Warning: oops");
    record(&mut bytes, kind::STDOUT, b"");
    record(&mut bytes, kind::END_REQUEST, &[0, 0, 0, 3, 0, 0, 0, 0]);
    bytes
}

#[test]
fn the_decoder_gives_the_streams_and_the_end() {
    let (events, error) = fuzz_entry::decode_in_reads(&answer(), 1);
    assert_eq!(error, None);
    assert_eq!(
        events,
        [
            Event::Stdout(Bytes::from_static(b"Status: 404 Not Found\r\n\r\nnothing")),
            Event::Stderr(Bytes::from_static(b"PHP Warning: oops")),
            Event::End {
                app_status: 3,
                protocol_status: 0
            },
        ]
    );
}

#[test]
fn an_incomplete_record_waits() {
    let bytes = answer();
    let mut decoder = Decoder::new();
    decoder.push(&bytes[..10]);
    assert_eq!(decoder.next_event(), Ok(None));
    assert_eq!(decoder.pending(), 10);
}

#[test]
fn a_foreign_version_or_request_is_refused() {
    let mut bytes = answer();
    bytes[0] = 2;
    assert_eq!(
        fuzz_entry::decode_in_reads(&bytes, 64).1,
        Some(FastCgiError::BadVersion(2))
    );
    let mut bytes = answer();
    bytes[3] = 9;
    assert_eq!(
        fuzz_entry::decode_in_reads(&bytes, 64).1,
        Some(FastCgiError::UnknownRequest(9))
    );
}

#[test]
fn truncated_pairs_are_refused() {
    assert_eq!(
        decode_params(&[5, 1, b'a']),
        Err(FastCgiError::TruncatedParams)
    );
    assert_eq!(
        decode_params(&[0x80, 0]),
        Err(FastCgiError::TruncatedParams)
    );
}

#[test]
fn the_fuzz_corpus_replays() {
    let directory = format!("{}/fuzz/corpus/fastcgi_records", env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for file in fs_err::read_dir(&directory).expect("the corpus is committed") {
        let path = file.expect("a corpus entry").path();
        fuzz_entry::fastcgi_records(&fs_err::read(&path).expect("a corpus file"));
        replayed += 1;
    }
    assert!(replayed > 0);
}

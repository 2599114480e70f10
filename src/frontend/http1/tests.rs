//! The parser's specification as tables: one row per rejection (raw bytes, status, a word
//! of the reason), the accepted cases, the split-invariance properties, and the replay of
//! the fuzz corpora committed under `fuzz/corpus/`.

use super::fuzz_entry::{self, decode_in_reads};
use super::*;

/// The head `GET / HTTP/1.1` with `Host: a` and `fields`.
fn get_with(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
}

fn many_fields(n: usize) -> Vec<u8> {
    let fields: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
    format!("GET / HTTP/1.0\r\n{fields}\r\n").into_bytes()
}

fn long_request_line(target_len: usize) -> Vec<u8> {
    let target = format!("/{}", "a".repeat(target_len - 1));
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

fn long_field(value_len: usize) -> Vec<u8> {
    get_with(&format!("X: {}\r\n", "v".repeat(value_len)))
}

/// Every rejection of the head: (raw request, status, a word of the reason).
fn head_rejections() -> Vec<(Vec<u8>, u16, &'static str)> {
    let rows: Vec<(&[u8], u16, &str)> = vec![
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF"),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, "CR"),
        (b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CR"),
        (b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CR"),
        (
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "empty line",
        ),
        (
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "empty line",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x07b\r\n\r\n",
            400,
            "control",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            400,
            "control",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            400,
            "control",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            400,
            "obs-fold",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            400,
            "obs-fold",
        ),
        (
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            400,
            "whitespace before its colon",
        ),
        (
            b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
            400,
            "whitespace before its colon",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n",
            400,
            "field name",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX\xe9: 1\r\n\r\n",
            400,
            "field name",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            400,
            "field name",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
            400,
            "field name",
        ),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "field name"),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method"),
        (b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method"),
        (b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request line"),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request line"),
        (b"GET / \r\nHost: a\r\n\r\n", 400, "version"),
        (b"GET /\r\n\r\n", 400, "request line"),
        (b"GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n", 400, "request line"),
        (
            b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /\ta HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "percent-encoded",
        ),
        (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "fragment"),
        (
            b"GET http://a/#b HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "fragment",
        ),
        (
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "only meaningful for OPTIONS",
        ),
        (
            b"POST * HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "only meaningful for OPTIONS",
        ),
        (
            b"GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "authority form",
        ),
        (
            b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "authority form",
        ),
        (
            b"CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "authority form",
        ),
        (
            b"CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "authority form",
        ),
        (b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "origin"),
        (b"GET urn:x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "origin"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/1.1"),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP/1.1"),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "HTTP/1.1"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/1.1"),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, "version"),
        (b"GET / HTTP/11\r\nHost: a\r\n\r\n", 400, "version"),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "version"),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "version"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "must carry a Host"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
            "more than one Host",
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            "more than one Host",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            400,
            "not a valid host",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            400,
            "not a valid host",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n",
            400,
            "not a valid host",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            400,
            "not a valid host",
        ),
    ];
    let mut rows: Vec<(Vec<u8>, u16, &str)> = rows
        .into_iter()
        .map(|(bytes, status, word)| (bytes.to_vec(), status, word))
        .collect();
    let framing: Vec<(&str, u16, &str)> = vec![
        (
            "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            400,
            "both",
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n",
            400,
            "both",
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            501,
            "only transfer coding",
        ),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            501,
            "only transfer coding",
        ),
        ("Transfer-Encoding: gzip\r\n", 400, "single chunked"),
        (
            "Transfer-Encoding: chunked, gzip\r\n",
            400,
            "single chunked",
        ),
        (
            "Transfer-Encoding: chunked, chunked\r\n",
            400,
            "single chunked",
        ),
        ("Transfer-Encoding: chunked;q=1\r\n", 400, "single chunked"),
        ("Transfer-Encoding:\r\n", 400, "single chunked"),
        ("Content-Length: abc\r\n", 400, "Content-Length"),
        ("Content-Length: +1\r\n", 400, "Content-Length"),
        ("Content-Length: -1\r\n", 400, "Content-Length"),
        ("Content-Length: 1.0\r\n", 400, "Content-Length"),
        ("Content-Length: 0x10\r\n", 400, "Content-Length"),
        ("Content-Length: 1, 2\r\n", 400, "Content-Length"),
        (
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            400,
            "Content-Length",
        ),
        (
            "Content-Length: 18446744073709551616\r\n",
            400,
            "Content-Length",
        ),
        ("Content-Length:\r\n", 400, "Content-Length"),
    ];
    rows.extend(
        framing
            .into_iter()
            .map(|(fields, status, word)| (get_with(fields), status, word)),
    );
    rows.push((
        b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        400,
        "HTTP/1.0",
    ));
    let limits = Limits::default();
    rows.push((
        long_request_line(limits.max_request_line + 1),
        414,
        "request line",
    ));
    rows.push((
        many_fields(limits.max_fields + 1),
        431,
        "more header fields",
    ));
    rows.push((long_field(limits.max_field_size - 2), 431, "longer"));
    rows
}

#[test]
fn each_rejection_of_the_head_has_its_status_and_reason() {
    for (request, status, word) in head_rejections() {
        let shown = String::from_utf8_lossy(&request).into_owned();
        let rejection = parse_head(&request, &Limits::default())
            .expect_err(&format!("must be refused: {shown:?}"));
        assert_eq!(rejection.status(), status, "{shown:?}: {rejection:?}");
        assert!(
            rejection.to_string().contains(word),
            "{shown:?}: {rejection:?} does not say {word:?}"
        );
    }
}

#[test]
fn a_rejection_does_not_depend_on_how_the_head_was_split() {
    for (request, _, _) in head_rejections() {
        let whole = parse_head(&request, &Limits::default());
        // The long rows are checked at a few points only: every point costs a parse.
        let step = (request.len() / 64).max(1);
        for split in (0..=request.len()).step_by(step) {
            assert_eq!(
                in_reads(&request, &[split]),
                whole,
                "{:?} split at {split}",
                String::from_utf8_lossy(&request)
            );
        }
    }
}

/// Parses `request` with one parser fed growing prefixes ending at `splits`, then whole.
fn in_reads(request: &[u8], splits: &[usize]) -> Result<Option<Head>, Rejection> {
    let mut parser = HeadParser::new(Limits::default());
    for &split in splits {
        match parser.parse(&request[..split]) {
            Ok(None) => {}
            decided => return decided,
        }
    }
    parser.parse(request)
}

fn accepted(request: &[u8]) -> Head {
    parse_head(request, &Limits::default())
        .unwrap_or_else(|rejection| panic!("{:?}: {rejection}", String::from_utf8_lossy(request)))
        .unwrap_or_else(|| panic!("{:?} is complete", String::from_utf8_lossy(request)))
}

#[test]
fn valid_heads_are_accepted_as_sent() {
    let request = b"GET /a%20b?x=1&y HTTP/1.1\r\nHost: a.example:8080\r\nX-Y:  a b \t\r\n\r\n";
    let head = accepted(request);
    assert_eq!(head.method, http::Method::GET);
    assert_eq!(head.target, &b"/a%20b?x=1&y"[..]);
    assert_eq!(head.version, http::Version::HTTP_11);
    assert_eq!(head.headers["host"], "a.example:8080");
    assert_eq!(
        head.headers["x-y"], "a b",
        "surrounding whitespace is not the value"
    );
    assert_eq!(head.framing, BodyFraming::None);
    assert_eq!(head.length, request.len());

    // One leading empty line is tolerated and counted in the head's length.
    let head = accepted(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.length, 29);

    // HTTP/1.0 may leave Host out; an empty Host is valid.
    assert_eq!(
        accepted(b"GET / HTTP/1.0\r\n\r\n").version,
        http::Version::HTTP_10
    );
    accepted(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
    accepted(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");

    // The target forms, each with its method.
    accepted(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    accepted(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    accepted(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        accepted(b"GET http://b.example/x?y HTTP/1.1\r\nHost: a\r\n\r\n").target,
        &b"http://b.example/x?y"[..]
    );
    accepted(b"GET /\"{}|^`~!$&'()*+,;=:@ HTTP/1.1\r\nHost: a\r\n\r\n");
    // Extension methods are tokens.
    assert_eq!(
        accepted(b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n")
            .method
            .as_str(),
        "PROPFIND"
    );

    // Field values may hold obs-text (latin-1) and tabs; repeated fields are kept.
    let head = accepted(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\tok\r\nX: 2\r\n\r\n");
    let values: Vec<&[u8]> = head
        .headers
        .get_all("x")
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    assert_eq!(values, [&b"caf\xe9\tok"[..], b"2"]);
}

#[test]
fn the_body_framing_follows_rfc_9112_6_3() {
    let framing = |fields: &str| accepted(&get_with(fields)).framing;
    assert_eq!(framing("Content-Length: 5\r\n"), BodyFraming::Length(5));
    assert_eq!(framing("Content-Length: 0\r\n"), BodyFraming::Length(0));
    assert_eq!(framing("Content-Length: 007\r\n"), BodyFraming::Length(7));
    assert_eq!(framing("Content-Length: 5, 5\r\n"), BodyFraming::Length(5));
    assert_eq!(
        framing("Content-Length: 5\r\nContent-Length: 5\r\n"),
        BodyFraming::Length(5)
    );
    assert_eq!(
        framing("Content-Length: 18446744073709551615\r\n"),
        BodyFraming::Length(u64::MAX)
    );
    assert_eq!(
        framing("Transfer-Encoding: chunked\r\n"),
        BodyFraming::Chunked
    );
    assert_eq!(
        framing("Transfer-Encoding: Chunked\r\n"),
        BodyFraming::Chunked
    );
    assert_eq!(
        framing("Transfer-Encoding: , chunked,\r\n"),
        BodyFraming::Chunked
    );
}

#[test]
fn limits_are_inclusive_and_configurable() {
    let limits = Limits::default();
    // "GET " + target + " HTTP/1.1" is exactly the limit.
    accepted(&long_request_line(limits.max_request_line - 13));
    assert_eq!(
        parse_head(&long_request_line(limits.max_request_line - 12), &limits),
        Err(Rejection::RequestLineTooLong)
    );
    accepted(&many_fields(limits.max_fields));
    // "X: " + value is exactly the limit.
    accepted(&long_field(limits.max_field_size - 3));

    let small = Limits {
        max_request_line: 16,
        max_fields: 1,
        max_field_size: 8,
    };
    assert!(parse_head(b"GET / HTTP/1.0\r\nA: 1\r\n\r\n", &small).is_ok_and(|h| h.is_some()));
    assert_eq!(
        parse_head(b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\n\r\n", &small),
        Err(Rejection::TooManyFields)
    );
    assert_eq!(
        parse_head(b"GET / HTTP/1.0\r\nA: 123456\r\n\r\n", &small),
        Err(Rejection::FieldTooLong)
    );
    assert_eq!(
        parse_head(b"GET /12345678 HTTP/1.0\r\n\r\n", &small),
        Err(Rejection::RequestLineTooLong)
    );
    // A line too long is refused before its end arrives: a client cannot make us buffer
    // more than the limit.
    assert_eq!(
        parse_head(&[b'G'; 8 * 1024 + 2], &limits),
        Err(Rejection::RequestLineTooLong)
    );
}

#[test]
fn a_partial_head_asks_for_more_and_a_pipelined_one_stops_at_its_end() {
    let limits = Limits::default();
    for partial in [
        &b""[..],
        b"\r",
        b"\r\n",
        b"GET",
        b"GET / HTTP/1.1\r",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    ] {
        assert_eq!(parse_head(partial, &limits), Ok(None), "{partial:?}");
    }
    let pipelined = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n";
    let head = accepted(pipelined);
    assert_eq!(&pipelined[head.length..head.length + 2], b"hi");
    // The parser starts afresh once it gave a head.
    let mut parser = HeadParser::new(limits);
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(parser.parse(request).is_ok_and(|h| h.is_some()));
    assert!(parser.parse(request).is_ok_and(|h| h.is_some()));
}

/// Valid requests the split properties run over.
const VALID_HEADS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nX-Y: caf\xe9\r\n\r\n",
    b"\r\nPOST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"OPTIONS * HTTP/1.0\r\n\r\n",
];

#[test]
fn any_split_of_a_valid_head_into_reads_parses_the_same() {
    for request in VALID_HEADS {
        let whole = parse_head(request, &Limits::default());
        assert!(matches!(whole, Ok(Some(_))));
        for first in 0..=request.len() {
            for second in first..=request.len() {
                assert_eq!(
                    in_reads(request, &[first, second]),
                    whole,
                    "{first} {second}"
                );
            }
            // The same prefixes, each parsed by a fresh parser.
            let fresh = parse_head(&request[..first], &Limits::default());
            assert!(fresh == Ok(None) || fresh == whole, "prefix {first}");
        }
    }
}

/// Every rejection of a chunked body: (body bytes, status, a word of the reason).
fn chunked_rejections() -> Vec<(Vec<u8>, u16, &'static str)> {
    let mut rows: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"g\r\n".to_vec(), 400, "hexadecimal"),
        (b"\r\n".to_vec(), 400, "hexadecimal"),
        (b";a\r\n".to_vec(), 400, "hexadecimal"),
        (b"-1\r\n".to_vec(), 400, "hexadecimal"),
        (b"0x5\r\nhello\r\n".to_vec(), 400, "hexadecimal"),
        (b"5 x\r\nhello\r\n".to_vec(), 400, "hexadecimal"),
        (b" 5\r\nhello\r\n".to_vec(), 400, "hexadecimal"),
        (
            b"00000000000000005\r\nhello\r\n".to_vec(),
            400,
            "too many digits",
        ),
        (b"10000000000000000\r\n".to_vec(), 400, "too many digits"),
        (b"5\nhello\r\n".to_vec(), 400, "bare LF"),
        (b"5;a\nhello\r\n".to_vec(), 400, "bare LF"),
        (b"5\rhello\r\n".to_vec(), 400, "CR"),
        (
            b"5;a=\x01\r\nhello\r\n".to_vec(),
            400,
            "extension holds a control",
        ),
        (
            b"5;a=\x7f\r\nhello\r\n".to_vec(),
            400,
            "extension holds a control",
        ),
        (b"5\r\nhelloX".to_vec(), 400, "CRLF"),
        (b"5\r\nhello\rX".to_vec(), 400, "CRLF"),
        (b"5\r\nhello\n0\r\n\r\n".to_vec(), 400, "CRLF"),
        (b"0\r\nContent-Length: 5\r\n\r\n".to_vec(), 400, "trailer"),
        (
            b"0\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            400,
            "trailer",
        ),
        (b"0\r\nHost: b\r\n\r\n".to_vec(), 400, "trailer"),
        (
            b"0\r\nAuthorization: Basic eA==\r\n\r\n".to_vec(),
            400,
            "trailer",
        ),
        (b"0\r\nX: a\r\nTrailer: X\r\n\r\n".to_vec(), 400, "trailer"),
        (b"0\r\nX: a\r\n b\r\n\r\n".to_vec(), 400, "obs-fold"),
        (b"0\r\nX : a\r\n\r\n".to_vec(), 400, "before its colon"),
        (b"0\r\nX\r\n\r\n".to_vec(), 400, "field name"),
        (b"0\r\nX(: a\r\n\r\n".to_vec(), 400, "field name"),
        (b"0\r\nX: a\x07\r\n\r\n".to_vec(), 400, "control"),
        (b"0\r\nX: a\n\r\n".to_vec(), 400, "bare LF"),
        (b"0\r\nX: a\rb\r\n\r\n".to_vec(), 400, "CR"),
    ];
    let mut long_extension = b"5;".to_vec();
    long_extension.extend(std::iter::repeat_n(b'a', chunked::MAX_EXTENSION + 1));
    long_extension.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    rows.push((long_extension, 400, "extension is longer"));
    // Whitespace after the size counts too, or a client could send it forever.
    let mut long_space = b"5".to_vec();
    long_space.extend(std::iter::repeat_n(b' ', chunked::MAX_EXTENSION + 1));
    rows.push((long_space, 400, "extension is longer"));
    // The fuzz entry's limits: 16 trailer fields of at most 256 bytes.
    let mut many = b"0\r\n".to_vec();
    for i in 0..17 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    rows.push((many, 431, "more header fields"));
    let long = format!("0\r\nX: {}\r\n\r\n", "v".repeat(254));
    rows.push((long.into_bytes(), 431, "longer"));
    rows
}

#[test]
fn each_rejection_of_a_chunked_body_has_its_status_and_reason() {
    for (body, status, word) in chunked_rejections() {
        let shown = String::from_utf8_lossy(&body).into_owned();
        for read_size in [body.len(), 1, 3] {
            let rejection = decode_in_reads(&body, read_size)
                .expect_err(&format!("must be refused: {shown:?}"));
            assert_eq!(rejection.status(), status, "{shown:?}: {rejection:?}");
            assert!(
                rejection.to_string().contains(word),
                "{shown:?}: {rejection:?} does not say {word:?}"
            );
        }
    }
}

#[test]
fn valid_chunked_bodies_decode_and_stop_at_their_end() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"5;a=b;c=\"d e\"\r\nhello\r\n6 ; x\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (b"A\r\n0123456789\r\n00\r\n\r\n", b"0123456789"),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
        (
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other:\t\xe9 \r\n\r\n",
            b"abc",
        ),
        (b"0\r\n\r\n", b""),
    ];
    for (body, data) in cases {
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            decode_in_reads(&with_next, with_next.len()),
            Ok((data.to_vec(), Some(body.len()))),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // A body cut short is not done.
    assert_eq!(
        decode_in_reads(b"5\r\nhel", 100),
        Ok((b"hel".to_vec(), None))
    );
}

#[test]
fn any_split_of_a_chunked_body_into_reads_decodes_the_same() {
    let bodies: &[&[u8]] = &[
        b"5;ext=1\r\nhello\r\n1 \r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-A: b\r\n\r\nnext",
        b"0\r\n\r\n",
    ];
    for body in bodies {
        let whole = decode_in_reads(body, body.len());
        assert!(matches!(whole, Ok((_, Some(_)))));
        for first in 0..=body.len() {
            for second in first..=body.len() {
                let mut decoder = ChunkedDecoder::new(&Limits {
                    max_request_line: 256,
                    max_fields: 16,
                    max_field_size: 256,
                });
                let mut data = Vec::new();
                let mut end = None;
                let mut offset = 0;
                'reads: for read in [&body[..first], &body[first..second], &body[second..]] {
                    let mut input = read;
                    while !input.is_empty() {
                        let (consumed, event) = decoder.decode(input).expect("valid");
                        match event {
                            Decoded::Done => {
                                end = Some(offset + consumed);
                                break 'reads;
                            }
                            Decoded::Data(piece) => data.extend_from_slice(piece),
                            Decoded::NeedMore => {}
                        }
                        offset += consumed;
                        input = &input[consumed..];
                    }
                }
                assert_eq!(Ok((data, end)), whole, "{first} {second}");
            }
        }
    }
}

#[test]
fn the_fuzz_corpora_replay_through_the_fuzz_entries() {
    type Entry = fn(&[u8]);
    let targets: [(&str, Entry); 3] = [
        ("request_head", fuzz_entry::request_head),
        ("chunked_body", fuzz_entry::chunked_body),
        ("ipc_frame", fuzz_entry::ipc_frame),
    ];
    for (target, entry) in targets {
        let directory = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
        let mut n_files = 0;
        for file in fs_err::read_dir(&directory).expect("the corpus is committed") {
            let path = file.expect("a corpus entry").path();
            entry(&fs_err::read(&path).expect("a corpus file"));
            n_files += 1;
        }
        assert!(n_files > 0, "{directory} is empty");
    }
}

#[test]
fn hosts_are_host_and_optional_port() {
    use super::head::is_valid_host;
    for bad in ["a/b", "a b", "a@b", "a:8x", "[::1", "[::1]x", "a\\b"] {
        assert!(!is_valid_host(bad.as_bytes()), "{bad}");
    }
    for good in [
        "",
        "a",
        "a.example:80",
        "a:",
        "127.0.0.1:8000",
        "[::1]:80",
        "x_y",
    ] {
        assert!(is_valid_host(good.as_bytes()), "{good}");
    }
}

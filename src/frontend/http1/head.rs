//! The request head: request line, header fields and the body framing they decide, parsed
//! strictly (RFC 9112, RFC 9110) from a buffer that may hold only part of it.
//!
//! Two passes. Our own line scan walks the head once, line by line, and refuses what is
//! wrong with a line as soon as the line is complete (bare LF, bare CR, obs-fold, lengths,
//! the request line's grammar); it resumes where it stopped when more bytes arrive, so a
//! head sent a byte at a time costs no more than one sent whole. Once the empty line has
//! arrived, `httparse` tokenizes the field lines (it checks names and values), and the
//! fields that decide framing and routing are checked. The head is copied once into a
//! `Bytes`; the target and every field value are slices of that copy.
//!
//! Not here: percent-escapes in the path and `OPTIONS *` (the request checks), the body.

use bytes::Bytes;

use super::reject::Rejection;

/// Limits on the head, with Apache's (and so mod_wsgi-express's) defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (without its CRLF); longer is 414.
    pub max_request_line: usize,
    /// Most header field lines; more is 431.
    pub max_fields: usize,
    /// Longest header field line (name, colon and value, without CRLF); longer is 431.
    pub max_field_size: usize,
}

/// 8 KiB, the issue's figure: Apache's `LimitRequestLine` default is 8190.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// Apache's `LimitRequestFields` default.
pub const DEFAULT_MAX_FIELDS: usize = 100;
/// 8 KiB, the issue's figure: Apache's `LimitRequestFieldSize` default is 8190.
pub const DEFAULT_MAX_FIELD_SIZE: usize = 8 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_fields: DEFAULT_MAX_FIELDS,
            max_field_size: DEFAULT_MAX_FIELD_SIZE,
        }
    }
}

/// How the request's body is delimited (RFC 9112 6.3, for a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    None,
    /// `Content-Length: N`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: see [`super::chunked::ChunkedDecoder`].
    Chunked,
}

/// A complete, valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: http::Method,
    /// The target exactly as sent (origin, absolute, authority form or `*`).
    pub target: Bytes,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub framing: BodyFraming,
    /// Bytes of the buffer the head took, the tolerated leading empty line included; the
    /// body (or the next request) starts there.
    pub length: usize,
}

/// Parses one head from a buffer that may hold only its beginning: `Ok(None)` asks for
/// more bytes. Without state across calls: see [`HeadParser`] to resume a partial head.
pub fn parse_head(buffer: &[u8], limits: &Limits) -> Result<Option<Head>, Rejection> {
    HeadParser::new(*limits).parse(buffer)
}

/// Parses one head from a buffer that grows between calls (bytes are only appended, the
/// head starts at index 0), resuming its line scan where the previous call stopped.
/// After it returned a head it starts afresh for the next one.
#[derive(Debug, Clone)]
pub struct HeadParser {
    limits: Limits,
    scan: Scan,
}

/// How far the line scan got.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Where the request line starts (after the tolerated empty line), once known.
    start: Option<usize>,
    /// Where the request line's content ends, once it is complete.
    request_line_end: Option<usize>,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Up to where the line being scanned holds no LF.
    searched: usize,
    /// Field lines seen so far.
    n_fields: usize,
}

impl HeadParser {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            scan: Scan::default(),
        }
    }

    /// The head at the start of `buffer` once all of it is there.
    pub fn parse(&mut self, buffer: &[u8]) -> Result<Option<Head>, Rejection> {
        let Some(end) = self.scan_lines(buffer)? else {
            return Ok(None);
        };
        let scan = std::mem::take(&mut self.scan);
        let (Some(start), Some(request_line_end)) = (scan.start, scan.request_line_end) else {
            unreachable!("a finished scan has seen the request line");
        };
        build_head(buffer, start, request_line_end, end, scan.n_fields)
    }

    /// Walks complete lines; `Some(end)` once the empty line that ends the head was seen.
    fn scan_lines(&mut self, buffer: &[u8]) -> Result<Option<usize>, Rejection> {
        let scan = &mut self.scan;
        let start = match scan.start {
            Some(start) => start,
            None => match skip_leading_empty_line(buffer)? {
                Some(start) => {
                    scan.start = Some(start);
                    scan.line_start = start;
                    scan.searched = start;
                    start
                }
                None => return Ok(None),
            },
        };
        debug_assert!(scan.line_start >= start);
        loop {
            let is_request_line = scan.request_line_end.is_none();
            let (limit, too_long) = if is_request_line {
                (self.limits.max_request_line, Rejection::RequestLineTooLong)
            } else {
                (self.limits.max_field_size, Rejection::FieldTooLong)
            };
            let Some(lf) = buffer[scan.searched..].iter().position(|&b| b == b'\n') else {
                scan.searched = buffer.len();
                // Only the length is judged before the line is complete: a line is
                // refused for the same reason however it was split into reads.
                if buffer.len() - scan.line_start > limit + 1 {
                    return Err(too_long);
                }
                return Ok(None);
            };
            let lf = scan.searched + lf;
            let raw = &buffer[scan.line_start..lf];
            if raw.len() > limit + 1 {
                return Err(too_long);
            }
            let Some(content) = raw.strip_suffix(b"\r") else {
                return Err(Rejection::BareLf);
            };
            if content.contains(&b'\r') {
                return Err(Rejection::BareCr);
            }
            if is_request_line {
                parse_request_line(content)?;
                scan.request_line_end = Some(scan.line_start + content.len());
            } else if content.is_empty() {
                return Ok(Some(lf + 1));
            } else {
                scan.n_fields += 1;
                if scan.n_fields > self.limits.max_fields {
                    return Err(Rejection::TooManyFields);
                }
                check_field_line(content, scan.n_fields == 1)?;
            }
            scan.line_start = lf + 1;
            scan.searched = lf + 1;
        }
    }
}

/// RFC 9112 2.2: one empty line before the request line is tolerated (a client may send
/// one after a POST body), more are refused. `Some(start)` of the request line.
fn skip_leading_empty_line(buffer: &[u8]) -> Result<Option<usize>, Rejection> {
    let start = match buffer {
        [] | [b'\r'] => return Ok(None),
        [b'\r', b'\n', ..] => 2,
        [b'\r', ..] => return Err(Rejection::BareCr),
        [b'\n', ..] => return Err(Rejection::BareLf),
        _ => 0,
    };
    match buffer.get(start) {
        None => Ok(None),
        Some(b'\r' | b'\n') => Err(Rejection::LeadingEmptyLines),
        Some(_) => Ok(Some(start)),
    }
}

/// The three parts of a request line, checked.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: http::Version,
}

/// RFC 9112 3: `method SP request-target SP HTTP-version`, with the version checked first
/// (so that an HTTP/2 preface gets its 505), then the method, then the target.
fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, Rejection> {
    let (Some(first), Some(last)) = (
        line.iter().position(|&b| b == b' '),
        line.iter().rposition(|&b| b == b' '),
    ) else {
        return Err(Rejection::MalformedRequestLine);
    };
    if first == last {
        return Err(Rejection::MalformedRequestLine);
    }
    let (method, target, version) = (&line[..first], &line[first + 1..last], &line[last + 1..]);
    if method.is_empty() || target.is_empty() || target.starts_with(b" ") || target.ends_with(b" ")
    {
        return Err(Rejection::MalformedRequestLine);
    }
    let version = parse_version(version)?;
    if !method.iter().copied().all(is_tchar) {
        return Err(Rejection::InvalidMethod);
    }
    check_target(method, target)?;
    Ok(RequestLine {
        method,
        target,
        version,
    })
}

/// RFC 9112 2.3: `HTTP/` DIGIT `.` DIGIT; only 1.0 and 1.1 are served.
fn parse_version(version: &[u8]) -> Result<http::Version, Rejection> {
    match version {
        b"HTTP/1.1" => Ok(http::Version::HTTP_11),
        b"HTTP/1.0" => Ok(http::Version::HTTP_10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Rejection::UnsupportedVersion)
        }
        _ => Err(Rejection::MalformedVersion),
    }
}

/// RFC 9112 3.2: the bytes a target may hold, and which form goes with which method.
fn check_target(method: &[u8], target: &[u8]) -> Result<(), Rejection> {
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(Rejection::InvalidTargetByte);
    }
    if target.contains(&b'#') {
        return Err(Rejection::Fragment);
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(())
        } else {
            Err(Rejection::AsteriskWithoutOptions)
        };
    }
    if method == b"CONNECT" {
        return if is_authority_form(target) {
            Ok(())
        } else {
            Err(Rejection::AuthorityForm)
        };
    }
    if target.starts_with(b"/") || is_absolute_form(target) {
        Ok(())
    } else if is_authority_form(target) {
        Err(Rejection::AuthorityForm)
    } else {
        Err(Rejection::InvalidTargetForm)
    }
}

/// `scheme "://" ...`: what clients send to a proxy (RFC 9112 3.2.2). A URI without an
/// authority (`urn:x`) is not something a client asks an HTTP server for.
fn is_absolute_form(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &target[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && target[colon + 1..].starts_with(b"//")
}

/// RFC 9112 3.2.3: `host:port`, the port required.
fn is_authority_form(target: &[u8]) -> bool {
    let Some(colon) = target.iter().rposition(|&b| b == b':') else {
        return false;
    };
    colon + 1 < target.len() && is_valid_host(target)
}

/// What can be told from one field line alone, before `httparse` sees the block.
fn check_field_line(line: &[u8], first: bool) -> Result<(), Rejection> {
    match line.first() {
        // RFC 9112 5.2: a line starting with whitespace continues the previous field
        // (obs-fold); before the first field it is whitespace after the start line,
        // which RFC 9112 2.2 lets us refuse.
        Some(b' ' | b'\t') if first => return Err(Rejection::InvalidFieldName),
        Some(b' ' | b'\t') => return Err(Rejection::ObsFold),
        _ => {}
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(Rejection::InvalidFieldName);
    };
    if colon == 0 {
        return Err(Rejection::InvalidFieldName);
    }
    if matches!(line[colon - 1], b' ' | b'\t') {
        return Err(Rejection::SpaceBeforeColon);
    }
    Ok(())
}

/// Field slots kept on the stack: browsers send 10 to 20 fields; 32 slots are 1 KiB.
const FIELDS_ON_STACK: usize = 32;

/// The second pass, once the scan found the end of the head at `end`.
fn build_head(
    buffer: &[u8],
    start: usize,
    request_line_end: usize,
    end: usize,
    n_fields: usize,
) -> Result<Option<Head>, Rejection> {
    // One copy of the head; the target and field values are slices of it.
    let copy = Bytes::copy_from_slice(&buffer[start..end]);
    let request_line_len = request_line_end - start;
    let line = parse_request_line(&copy[..request_line_len])?;
    let method = http::Method::from_bytes(line.method).map_err(|_| Rejection::InvalidMethod)?;
    let target = copy.slice_ref(line.target);

    // The scan counted the field lines, so the storage is exact: on the stack for the
    // usual head, on the heap for a long one.
    let mut on_stack = [httparse::EMPTY_HEADER; FIELDS_ON_STACK];
    let mut on_heap;
    let storage = if n_fields <= FIELDS_ON_STACK {
        &mut on_stack[..n_fields]
    } else {
        on_heap = vec![httparse::EMPTY_HEADER; n_fields];
        &mut on_heap[..]
    };
    let fields = &copy[request_line_len + 2..];
    let fields = match httparse::parse_headers(fields, storage) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) => unreachable!("the scan saw the empty line"),
        Err(httparse::Error::HeaderValue) => return Err(Rejection::InvalidFieldValue),
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::TooManyFields),
        Err(_) => return Err(Rejection::InvalidFieldName),
    };

    let mut headers = http::HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = http::HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Rejection::InvalidFieldName)?;
        let value = http::HeaderValue::from_maybe_shared(copy.slice_ref(field.value))
            .map_err(|_| Rejection::InvalidFieldValue)?;
        headers.append(name, value);
    }
    check_host(line.version, &headers)?;
    let framing = body_framing(line.version, &headers)?;
    Ok(Some(Head {
        method,
        target,
        version: line.version,
        headers,
        framing,
        length: end,
    }))
}

/// RFC 9112 3.2: exactly one valid Host (HTTP/1.0 may leave it out).
fn check_host(version: http::Version, headers: &http::HeaderMap) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == http::Version::HTTP_11 => Err(Rejection::MissingHost),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(Rejection::SeveralHosts),
        (Some(host), None) if is_valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(Rejection::InvalidHost),
    }
}

/// RFC 9112 6.3, for a request: Transfer-Encoding (chunked last, once, and alone: we
/// decode no other coding), else Content-Length, else no body. Both at once is refused.
fn body_framing(
    version: http::Version,
    headers: &http::HeaderMap,
) -> Result<BodyFraming, Rejection> {
    let has_length = headers.contains_key(http::header::CONTENT_LENGTH);
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        if version == http::Version::HTTP_10 {
            return Err(Rejection::TransferEncodingInHttp10);
        }
        if has_length {
            return Err(Rejection::ContentLengthWithTransferEncoding);
        }
        let codings = list_elements(headers, &http::header::TRANSFER_ENCODING);
        let (mut n_codings, mut n_chunked, mut last_chunked) = (0, 0, false);
        for coding in codings {
            n_codings += 1;
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            n_chunked += usize::from(last_chunked);
        }
        return if !last_chunked {
            // RFC 9112 6.3 item 4: the length cannot be known: a MUST 400.
            Err(Rejection::InvalidTransferEncoding)
        } else if n_chunked < n_codings {
            Err(Rejection::UnsupportedTransferCoding)
        } else if n_chunked > 1 {
            Err(Rejection::InvalidTransferEncoding)
        } else {
            Ok(BodyFraming::Chunked)
        };
    }
    if !has_length {
        return Ok(BodyFraming::None);
    }
    let mut length = None;
    for element in list_elements(headers, &http::header::CONTENT_LENGTH) {
        let value = parse_decimal(element).ok_or(Rejection::InvalidContentLength)?;
        if length.is_some_and(|length| length != value) {
            return Err(Rejection::InvalidContentLength);
        }
        length = Some(value);
    }
    length
        .map(BodyFraming::Length)
        .ok_or(Rejection::InvalidContentLength)
}

/// The elements of a comma-separated list over every field named `name`, trimmed; empty
/// elements are skipped, as RFC 9110 5.6.1.2 asks.
fn list_elements<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
}

/// `1*DIGIT` that fits a u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0_u64, |value, &digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// RFC 9110 5.6.2: `tchar`.
pub(super) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 3986 3.2.2 and 3.2.3: `host [":" port]`, where host is a bracketed IP literal or a
/// reg-name (which covers IPv4). Empty is allowed: a client sends an empty Host when the
/// target has no authority (RFC 9112 3.2).
pub(in crate::frontend) fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let (inside, after) = (&literal[..end], &literal[end + 1..]);
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
        {
            return false;
        }
        match after {
            [] => (&b""[..], None),
            [b':', port @ ..] => (&b""[..], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    host.iter().all(|&b| is_unreserved(b) || is_sub_delim(b))
        && port.is_none_or(|port| port.iter().all(u8::is_ascii_digit))
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

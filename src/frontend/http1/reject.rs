//! Why the HTTP/1 parser refuses a request: one enum for the head and the chunked body,
//! each case with its status code and a short reason a client can read.
//!
//! The RFC section behind each case is in its doc comment and in docs/http.md; the
//! connection is closed after every one of them (after a malformed message nothing that
//! follows on the connection can be trusted to be framed as the client meant).

/// A request the parser refuses. `Display` is the reason sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// RFC 9112 2.2: a line must end in CRLF; we do not accept a bare LF (the RFC allows
    /// it, smuggling attacks live in the difference between parsers that do and do not).
    #[error("a line of the request ends in a bare LF instead of CRLF")]
    BareLf,
    /// RFC 9112 2.2: a CR not followed by LF must be rejected (or replaced by SP).
    #[error("the request holds a CR that is not followed by LF")]
    BareCr,
    /// RFC 9112 2.2: one empty line before the request line is tolerated, more are not.
    #[error("more than one empty line before the request line")]
    LeadingEmptyLines,
    /// RFC 9112 3: `method SP request-target SP HTTP-version`, single spaces.
    #[error("the request line is not: method, one space, target, one space, version")]
    MalformedRequestLine,
    /// RFC 9110 9.1: a method is a token.
    #[error("the method is not a valid token")]
    InvalidMethod,
    /// RFC 9112 3.2, RFC 3986: the target holds only visible ASCII (no CTL, NUL, space,
    /// DEL or raw byte at or above 0x80; such bytes must be percent-encoded).
    #[error(
        "the request target holds a byte that must be percent-encoded (control, space or non-ASCII)"
    )]
    InvalidTargetByte,
    /// RFC 9112 3.2: a client never sends a fragment.
    #[error("the request target contains a fragment (#), which is never sent to a server")]
    Fragment,
    /// RFC 9112 3.2.4: the asterisk form is only for OPTIONS.
    #[error("the request target * is only meaningful for OPTIONS")]
    AsteriskWithoutOptions,
    /// RFC 9112 3.2.3: the authority form (`host:port`) is only for CONNECT, and CONNECT
    /// takes only it.
    #[error(
        "the authority form (host:port) of the target is only for CONNECT, and CONNECT takes only it"
    )]
    AuthorityForm,
    /// RFC 9112 3.2: origin form (`/path`), absolute form (`http://host/path`), the
    /// authority form for CONNECT or `*`.
    #[error("the request target is not an origin (/path) or absolute (scheme://host/path) form")]
    InvalidTargetForm,
    /// RFC 9112 2.3: `HTTP/` DIGIT `.` DIGIT, case-sensitive.
    #[error("the HTTP version is malformed")]
    MalformedVersion,
    /// RFC 9110 15.6.6: a well-formed version other than HTTP/1.0 and HTTP/1.1.
    #[error("only HTTP/1.0 and HTTP/1.1 are supported")]
    UnsupportedVersion,
    /// Apache's `LimitRequestLine` (8190 bytes); RFC 9112 3 recommends 414.
    #[error("the request line is longer than the server accepts")]
    RequestLineTooLong,
    /// Apache's `LimitRequestFields` (100); RFC 6585 5.
    #[error("the request has more header fields than the server accepts")]
    TooManyFields,
    /// Apache's `LimitRequestFieldSize` (8190 bytes); RFC 6585 5.
    #[error("a header field is longer than the server accepts")]
    FieldTooLong,
    /// RFC 9112 5.2: obs-fold (a field line continued on a line starting with SP or HT)
    /// is rejected, not unfolded.
    #[error("a header field is folded over several lines (obs-fold), which is not accepted")]
    ObsFold,
    /// RFC 9112 5.1: no whitespace between a field name and its colon.
    #[error("a header field has whitespace before its colon")]
    SpaceBeforeColon,
    /// RFC 9110 5.1: a field name is a token, followed by a colon.
    #[error("a header field name is not a valid token, or the line has no colon")]
    InvalidFieldName,
    /// RFC 9110 5.5: no control bytes (other than HT) and no DEL in a field value.
    #[error("a header field value holds a control byte")]
    InvalidFieldValue,
    /// RFC 9112 3.2: an HTTP/1.1 request must carry a Host.
    #[error("an HTTP/1.1 request must carry a Host header")]
    MissingHost,
    /// RFC 9112 3.2: never more than one Host.
    #[error("the request carries more than one Host header")]
    SeveralHosts,
    /// RFC 9112 3.2, RFC 3986 3.2.2: Host is `host[:port]`.
    #[error("the Host header is not a valid host name and port")]
    InvalidHost,
    /// RFC 9110 8.6, RFC 9112 6.3: one non-negative decimal number (identical repeats
    /// are accepted, as RFC 9110 8.6 allows).
    #[error("the Content-Length header is not a single valid number")]
    InvalidContentLength,
    /// RFC 9112 6.1: a request with both is a smuggling attempt; we refuse it rather than
    /// let Transfer-Encoding win.
    #[error("the request carries both Transfer-Encoding and Content-Length")]
    ContentLengthWithTransferEncoding,
    /// RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing.
    #[error("an HTTP/1.0 request must not carry Transfer-Encoding")]
    TransferEncodingInHttp10,
    /// RFC 9112 6.1, 7: chunked must be the final coding, applied once.
    #[error("the Transfer-Encoding header does not end in a single chunked")]
    InvalidTransferEncoding,
    /// RFC 9112 6.1: a transfer coding the server does not implement.
    #[error("the only transfer coding this server accepts is chunked")]
    UnsupportedTransferCoding,
    /// RFC 9112 7.1: a chunk size is 1 to 16 hex digits.
    #[error("a chunk size is not a hexadecimal number")]
    InvalidChunkSize,
    /// A chunk size of more than 16 hex digits cannot fit 64 bits.
    #[error("a chunk size has too many digits")]
    ChunkSizeTooLong,
    /// RFC 9112 7.1.1: extensions are ignored, but their length is bounded.
    #[error("a chunk extension is longer than the server accepts")]
    ChunkExtensionTooLong,
    /// RFC 9112 7.1.1: an extension holds no control bytes.
    #[error("a chunk extension holds a control byte")]
    InvalidChunkExtension,
    /// RFC 9112 7.1: chunk data is followed by CRLF.
    #[error("chunk data is not followed by CRLF")]
    MissingChunkCrlf,
    /// RFC 9110 6.5.1: a trailer must not carry framing, routing, authentication,
    /// request modifiers or content format; such a request is refused, not trimmed.
    #[error("a trailer field carries framing, routing or authentication, which trailers must not")]
    ForbiddenTrailer,
}

impl Rejection {
    /// The status code this rejection is answered with.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::RequestLineTooLong => http::StatusCode::URI_TOO_LONG,
            Self::TooManyFields | Self::FieldTooLong => {
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UnsupportedVersion => http::StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::UnsupportedTransferCoding => http::StatusCode::NOT_IMPLEMENTED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

//! The HTTP/1 request parser: the request head ([`head`]), the chunked body ([`chunked`])
//! and the one enum of reasons to refuse a request ([`reject`]), each status and reason in
//! one place.
//!
//! Sans-IO: these functions see bytes and say "need more", "here is the head / data" or
//! "refused, with this status"; reading sockets, timeouts and responses belong to the
//! connection (`frontend/connection/`). The module is `pub` so that the fuzz targets in
//! `fuzz/` reach it.

pub mod chunked;
pub mod fuzz_entry;
pub mod head;
pub mod reject;

pub use chunked::{ChunkedDecoder, Decoded};
pub use head::{BodyFraming, Head, HeadParser, Limits, parse_head};
pub use reject::Rejection;

#[cfg(test)]
mod tests;

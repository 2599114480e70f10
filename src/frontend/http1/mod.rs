//! The HTTP/1 request parser of the coming HTTP/1 layer of our own (issue 17): the request
//! head ([`head`]), the chunked body ([`chunked`]) and the one enum of reasons to refuse a
//! request ([`reject`]), each status and reason in one place.
//!
//! Sans-IO: these functions see bytes and say "need more", "here is the head / data" or
//! "refused, with this status"; reading sockets, timeouts and responses belong to the
//! connection loop that will call them. Not wired into the server yet: hyper still serves
//! HTTP/1 today. The module is `pub` so that the fuzz targets in `fuzz/` reach it (and so
//! it needs no `dead_code` allowance until the connection loop uses it).

pub mod chunked;
pub mod fuzz_entry;
pub mod head;
pub mod reject;

pub use chunked::{ChunkedDecoder, Decoded};
pub use head::{BodyFraming, Head, HeadParser, Limits, parse_head};
pub use reject::Rejection;

#[cfg(test)]
mod tests;

//! Fuzz target: the HTTP/1 request-head parser (split into two reads must not change the answer).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    _ferrule::frontend::http1::fuzz_entry::request_head(data);
});

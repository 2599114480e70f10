//! Fuzz target: the chunked body decoder (byte-at-a-time must decode as whole).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    _ferrule::frontend::http1::fuzz_entry::chunked_body(data);
});

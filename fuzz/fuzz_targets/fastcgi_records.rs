//! Fuzz target: the FastCGI record decoder (byte-at-a-time must decode as whole) and the
//! name-value pairs' encoding (pairs must read back the same).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    _ferrule::fastcgi::fuzz_entry::fastcgi_records(data);
});

//! Fuzz target: the daemon IPC frame decoder (decoded frames must encode back the same).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    _ferrule::frontend::http1::fuzz_entry::ipc_frame(data);
});

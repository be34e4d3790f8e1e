//! Fuzz target `http1_chunked`: see `chokepoint_fuzz::http1_chunked` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::http1_chunked(data));

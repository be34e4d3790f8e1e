//! Fuzz target `http1_head`: see `chokepoint_fuzz::http1_head` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::http1_head(data));

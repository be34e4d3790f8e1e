//! Fuzz target `har`: see `chokepoint_fuzz::har` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::har(data));

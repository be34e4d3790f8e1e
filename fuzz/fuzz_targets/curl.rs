//! Fuzz target `curl`: see `chokepoint_fuzz::curl` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::curl(data));

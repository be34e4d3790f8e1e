//! Fuzz target `otlp_json`: see `chokepoint_fuzz::otlp_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::otlp_json(data));

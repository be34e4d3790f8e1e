//! Fuzz target `jaeger_json`: see `chokepoint_fuzz::jaeger_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::jaeger_json(data));

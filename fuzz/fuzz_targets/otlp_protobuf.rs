//! Fuzz target `otlp_protobuf`: see `chokepoint_fuzz::otlp_protobuf` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::otlp_protobuf(data));

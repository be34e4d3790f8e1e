//! Fuzz target `interval_log`: see `chokepoint_fuzz::interval_log` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::interval_log(data));

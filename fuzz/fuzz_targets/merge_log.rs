//! Fuzz target `merge_log`: see `chokepoint_fuzz::merge_log` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::merge_log(data));

//! Fuzz target `run_summary`: see `chokepoint_fuzz::run_summary` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::run_summary(data));

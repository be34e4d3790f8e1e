//! Fuzz target `units`: see `chokepoint_fuzz::units` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::units(data));

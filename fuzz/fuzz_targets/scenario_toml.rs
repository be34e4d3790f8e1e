//! Fuzz target `scenario_toml`: see `chokepoint_fuzz::scenario_toml` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::scenario_toml(data));

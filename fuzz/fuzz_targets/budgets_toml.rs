//! Fuzz target `budgets_toml`: see `chokepoint_fuzz::budgets_toml` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chokepoint_fuzz::budgets_toml(data));

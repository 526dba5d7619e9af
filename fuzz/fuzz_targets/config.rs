//! TOML config files (`config/`).
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::config(s));

//! `Authorization` headers (`auth/mod.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::authorization(s));

//! `WWW-Authenticate` challenges from upstream registries (`mirror/challenge.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::challenge(s));

//! Repository names, tags, digests and references (`registry/reference.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::reference(s));

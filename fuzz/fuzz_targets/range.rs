//! `Range` headers of blob downloads (`registry/blobs.rs`). The input is
//! `<blob size>\n<header>`; a first line that is not a number is read as its length.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| {
    let (size, header) = s.split_once('\n').unwrap_or(("100", s));
    let size = size.parse().unwrap_or(size.len() as u64);
    wharf::invariants::range(header, size);
});

//! registry:2's storage layout (`registry/storage/object/keys.rs`, `enumerate.rs`,
//! `fs/layout.rs`): link file contents, listed keys and keys built from parts. The input is
//! `a\0b\0c`: the whole is a link file; `a` a key under `docker/registry/v2/` with `b` as
//! a prefix; `a`, `b`, `c` a repository, tag and digest.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wharf::invariants::link_file(data);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    wharf::invariants::layout_key(a, b);
    wharf::invariants::layout_parts(a, b, c);
});

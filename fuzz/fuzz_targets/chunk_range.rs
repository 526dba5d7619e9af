//! `Content-Range` (with `Content-Length`) of upload chunks (`registry/uploads.rs`). The
//! input is `<Content-Range>[\0<Content-Length>]`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => wharf::invariants::chunk_range(&data[..nul], Some(&data[nul + 1..])),
        None => wharf::invariants::chunk_range(data, None),
    }
});

//! Manifests and indexes (`registry/manifest.rs`). The input is `[<Content-Type>\0]<body>`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => {
            let content_type = String::from_utf8_lossy(&data[..nul]);
            wharf::invariants::manifest(&data[nul + 1..], Some(&content_type));
        }
        None => wharf::invariants::manifest(data, None),
    }
});

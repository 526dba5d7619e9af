//! `/v2/` paths (`registry/route.rs`). The input is a path; when it holds a NUL, the text
//! before it is also taken as a repository name and the text after as the last component of
//! each endpoint, built into a path and parsed back.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| {
    wharf::invariants::route_path(s);
    if let Some((name, last)) = s.split_once('\0') {
        for endpoint in 0..6 {
            wharf::invariants::route_parts(name, endpoint, last);
        }
    }
});

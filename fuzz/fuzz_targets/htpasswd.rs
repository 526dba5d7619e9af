//! htpasswd files (`auth/htpasswd/parse.rs`) and `wharf htpasswd`'s edit of one
//! (`auth/htpasswd/edit.rs`). The input is `[<user to set>\0]<file>`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => {
            let user = String::from_utf8_lossy(&data[..nul]);
            wharf::invariants::htpasswd(&data[nul + 1..], &user);
        }
        None => wharf::invariants::htpasswd(data, "alice"),
    }
});

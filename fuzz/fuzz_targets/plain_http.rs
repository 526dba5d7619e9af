//! What a client sends first on a `tls = "on"` listener (`server/conn.rs`,
//! `server/plain_on_tls.rs`): anything but a TLS handshake gets a 400 saying to use https,
//! or nothing when it is not HTTP.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wharf::invariants::plain_http(data));

//! The nginx site in front of registry:2 (`import_config/nginx_parse.rs`, `nginx_front.rs`):
//! what `wharf import-config` writes from it is a wharf.toml that loads the same again.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::nginx_site(s));

//! registry:2's `REGISTRY_*` variables (`config/registry_env/`): the input is `NAME=value`
//! lines, `NAME` without its `REGISTRY_` prefix.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::registry_env(s));

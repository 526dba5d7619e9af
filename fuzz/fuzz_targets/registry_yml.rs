//! registry:2's config.yml, served (`wharf serve config.yml`) and converted (`wharf
//! import-config`): both mean the same (`config/registry_env/yml.rs`, `import_config/`).
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| wharf::invariants::registry_yml(s));

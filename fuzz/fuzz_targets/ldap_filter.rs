//! LDAP filter escaping and filling (`auth/ldap.rs`). The input is `<user>[\0<dn>]`.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| {
    let (user, dn) = s
        .split_once('\0')
        .unwrap_or((s, "uid=alice,ou=people,dc=example,dc=org"));
    wharf::invariants::ldap_filter(user, dn);
});

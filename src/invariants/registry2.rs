//! The promises of what wharf shares with registry:2: its storage layout (link files, keys
//! and paths ↔ repository, digest, tag), its settings (`REGISTRY_*` variables, config.yml)
//! and the nginx site in front of it (`wharf import-config`).

use object_store::path::Path as Key;

use crate::config::registry_env::{self, Effect, Setting};
use crate::config::Config;
use crate::import_config::{convert, Inputs};
use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::fs::FsLayout;
use crate::registry::storage::object::{blob_digest, link_of, parse_digest, LayoutKeys};
use crate::registry::storage::LinkKind;

/// A link file's contents: an accepted digest is well formed and is what wharf writes back
/// (the digest alone, as registry:2 writes it).
pub fn link_file(bytes: &[u8]) {
    let Ok(d) = parse_digest(&Key::from("link"), bytes) else {
        return;
    };
    super::reference(&d.to_string());
    let written = d.to_string();
    assert_eq!(
        parse_digest(&Key::from("link"), written.as_bytes()).ok(),
        Some(d)
    );
}

/// A key listed under `docker/registry/v2/`: one taken for a blob or a link is exactly
/// the key wharf builds for what it was taken as (so a listing never names something
/// else), on the filesystem too; and keys under a prefix come back out of it.
pub fn layout_key(rel: &str, prefix: &str) {
    let keys = LayoutKeys::new(String::new());
    let fs = FsLayout::new("/r".into());
    let v2 = |key: &Key| keys.under_v2(key).map(str::to_owned);
    if let Some(d) = blob_digest(rel) {
        assert_eq!(v2(&keys.blob(&d)).as_deref(), Some(rel));
        assert_eq!(
            fs.blob(&d),
            std::path::Path::new("/r/docker/registry/v2").join(rel)
        );
    }
    if let Some((repo, kind, d)) = link_of(rel) {
        assert_eq!(v2(&keys.link(&repo, kind, &d)).as_deref(), Some(rel));
        assert_eq!(
            fs.link(&repo, kind, &d),
            std::path::Path::new("/r/docker/registry/v2").join(rel)
        );
    }
    let prefix = prefix.trim_matches('/');
    // Keys as a store lists them: no empty segments, no leading or trailing `/`.
    let listed = |s: &str| Key::parse(s).is_ok_and(|k| k.as_ref() == s);
    if listed(prefix) && listed(rel) && !rel.is_empty() {
        let under = LayoutKeys::new(prefix.to_owned());
        let key = under.at(&format!("docker/registry/v2/{rel}"));
        if key.as_ref().ends_with(rel) {
            assert_eq!(under.under_v2(&key), Some(rel), "{key}");
        }
    }
}

/// A repository, tag and digest: every key built from them parses back to them (a tag's
/// keys are never taken for links), and the filesystem's paths are the same keys.
pub fn layout_parts(name: &str, tag: &str, digest: &str) {
    let (Ok(repo), Ok(d)) = (RepoName::parse(name), Digest::parse(digest)) else {
        return;
    };
    let keys = LayoutKeys::new(String::new());
    let fs = FsLayout::new("/r".into());
    let v2 = std::path::Path::new("/r/docker/registry/v2");
    for kind in [LinkKind::Layer, LinkKind::Manifest] {
        let key = keys.link(&repo, kind, &d);
        let rel = keys.under_v2(&key).expect("a link is under v2");
        assert_eq!(link_of(rel), Some((repo.clone(), kind, d.clone())), "{rel}");
        assert_eq!(blob_digest(rel), None);
        assert_eq!(fs.link(&repo, kind, &d), v2.join(rel));
    }
    let blob = keys.blob(&d);
    let rel = keys.under_v2(&blob).expect("a blob is under v2");
    assert_eq!(blob_digest(rel), Some(d.clone()));
    assert_eq!(link_of(rel), None);
    if let Ok(tag) = Tag::parse(tag) {
        for key in [keys.tag(&repo, &tag), keys.tag_index(&repo, &tag, &d)] {
            let rel = keys.under_v2(&key).expect("a tag is under v2");
            assert_eq!(link_of(rel), None, "a tag's key is not a link: {rel}");
            assert_eq!(blob_digest(rel), None);
        }
        assert_eq!(
            fs.tag(&repo, &tag),
            v2.join(keys.under_v2(&keys.tag(&repo, &tag)).unwrap_or_default())
        );
    }
}

/// `REGISTRY_*` variables (`NAME=value` lines): taken, not needed or refused, never a
/// panic; every refusal names one of the variables; a secret's value is never shown in
/// what a setting became or in an error.
pub fn registry_env(text: &str) {
    let mut settings: Vec<Setting> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| Setting::variable(&format!("REGISTRY_{n}"), v))
        .collect();
    // Each secret's value becomes a marker no message text can hold by chance (a secret
    // of "filesystem" would otherwise be "shown" by any error mentioning that driver);
    // any value is a valid secret, so the configuration means the same otherwise.
    if text.contains("-secret-marker-") {
        return; // the fuzzer learns the marker from comparisons and writes it into names
    }
    let is_secret = |name: &str| name.ends_with("SECRETKEY") || name == "REGISTRY_HTTP_SECRET";
    let mut secrets = Vec::new();
    for (i, s) in settings.iter_mut().enumerate() {
        if is_secret(&s.name) && !s.value.trim().is_empty() {
            s.value = format!("zq{i}-secret-marker-qz");
            secrets.push(s.value.clone());
        }
    }
    let names: Vec<String> = settings.iter().map(|s| s.name.clone()).collect();
    match Config::from_toml_with("", "fuzz", settings) {
        Ok(config) => {
            for a in &config.registry_env {
                let shown = match &a.effect {
                    Effect::Set { shown, .. } => shown,
                    Effect::NotNeeded(why) => why,
                    Effect::Unsupported { problem, .. } => problem,
                };
                assert!(
                    secrets.iter().all(|s| !shown.contains(s.as_str())),
                    "{shown}"
                );
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                names.iter().any(|n| e.contains(n.as_str())),
                "names none: {e}"
            );
            assert!(secrets.iter().all(|s| !e.contains(s.as_str())), "{e}");
        }
    }
}

/// A registry:2 config.yml: `wharf serve config.yml` and the wharf.toml `wharf
/// import-config` writes from it mean the same. Whenever serving it is accepted, the
/// written file is accepted too, as the same configuration; whatever the file holds,
/// the written text is a wharf.toml of known keys.
pub fn registry_yml(text: &str) {
    let converted = convert(&Inputs {
        registry_yml: ("config.yml", text),
        nginx: None,
    });
    let served = registry_env::yml::settings(text)
        .ok()
        .map(|settings| Config::from_toml_with("", "config.yml", settings));
    let Ok(converted) = converted else {
        assert!(
            !matches!(served, Some(Ok(_))),
            "served, but import-config refused it"
        );
        return;
    };
    written_raw(&converted.toml);
    let Some(Ok(served)) = served else {
        return;
    };
    let from_file = match Config::from_toml(&converted.toml, "wharf.toml") {
        Ok(c) => c,
        Err(e) => panic!(
            "served, but the converted file is refused: {e}\n{}",
            converted.toml
        ),
    };
    assert_eq!(meaning(&from_file), meaning(&served), "{}", converted.toml);
}

/// The nginx site in front of registry:2: never a panic, and a conversion is a wharf.toml
/// of known keys that, when it loads, loads the same after a TOML round trip.
pub fn nginx_site(text: &str) {
    let Ok(converted) = convert(&Inputs {
        registry_yml: ("config.yml", "version: 0.1\n"),
        nginx: Some(("registry.conf", text)),
    }) else {
        return;
    };
    written_raw(&converted.toml);
    super::config(&converted.toml);
}

fn written_raw(toml: &str) {
    if let Err(e) = toml::from_str::<crate::config::raw::RawConfig>(toml) {
        panic!("import-config wrote a file wharf cannot read: {e}\n{toml}");
    }
}

/// What a configuration does, without where its settings came from.
fn meaning(c: &Config) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        c.listeners,
        c.servers,
        c.storage,
        c.registry,
        c.log,
        c.shutdown_grace,
        c.admin_address,
        c.notifications
    )
}

#[cfg(test)]
mod properties {
    use super::super::strategies;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_built_from_parts_parse_back_to_them(
            name in strategies::name_text(),
            tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,10}|_layers|_manifests|[a-z/._-]{0,6}",
            digest in strategies::digest_text(),
        ) {
            super::layout_parts(&name, &tag, &digest);
        }

        #[test]
        fn a_listed_key_is_what_wharf_builds_for_it(
            rel in prop_oneof![
                "blobs/(sha256|sha512|md5)/[0-9a-f]{2}/[0-9a-f]{62,66}/(data|link)",
                "repositories/[a-z0-9/_]{1,12}/(_layers|_manifests/revisions|_manifests/tags/[a-z0-9]{1,4})/(sha256|x)/[0-9a-f]{64}/(link|data)",
                "[a-z0-9_/.]{0,30}",
            ],
            prefix in "(/?[a-z0-9]{1,5}){0,3}/?",
        ) {
            super::layout_key(&rel, &prefix);
        }

        #[test]
        fn a_link_file_holds_a_well_formed_digest(
            text in prop_oneof![
                strategies::digest_text().prop_map(|d| format!("{d}\n")),
                strategies::digest_text(),
                any::<String>(),
            ],
        ) {
            super::link_file(text.as_bytes());
        }
    }
}

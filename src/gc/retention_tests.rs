use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Config;
use crate::registry::reference::Algorithm;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + 1000 * DAY
}

fn digest(name: &str) -> Digest {
    Digest::of(Algorithm::Sha256, name.as_bytes())
}

/// A tag named `name` on a manifest of the same name, pushed `days` ago.
fn tag(name: &str, days: u32) -> TagInfo {
    TagInfo {
        name: name.to_owned(),
        digest: digest(name),
        pushed: now() - days * DAY,
    }
}

fn manifest(name: &str, days: u32) -> ManifestInfo {
    ManifestInfo {
        digest: digest(name),
        pushed: now() - days * DAY,
        children: Vec::new(),
        subject: None,
    }
}

/// The policies and immutable rules of a config text.
fn rules(toml: &str) -> (Vec<RetentionPolicy>, Vec<ImmutableRule>) {
    let c = Config::from_toml(toml, "test").unwrap();
    (c.retention, c.immutable)
}

fn tags_gone(toml: &str, tags: &[TagInfo]) -> Vec<String> {
    let (policies, immutable) = rules(toml);
    plan(&policies, &immutable, "team/app", tags, &[], now()).tags
}

fn five() -> Vec<TagInfo> {
    vec![
        tag("a", 50),
        tag("b", 40),
        tag("c", 30),
        tag("d", 20),
        tag("e", 10),
    ]
}

#[test]
fn keep_last_alone_deletes_all_but_the_newest() {
    let gone = tags_gone("[[retention]]\nrepos = \"*\"\nkeep_last = 2", &five());
    assert_eq!(gone, ["a", "b", "c"]);
}

#[test]
fn keep_last_breaks_push_time_ties_by_name() {
    let tags = ["x", "y", "z"].map(|name| tag(name, 5));
    let gone = tags_gone("[[retention]]\nrepos = \"*\"\nkeep_last = 1", &tags);
    assert_eq!(gone, ["x", "y"]);
}

#[test]
fn keep_tags_alone_deletes_what_does_not_match() {
    let tags = [tag("latest", 90), tag("v1", 90), tag("pr-3", 1)];
    let gone = tags_gone(
        "[[retention]]\nrepos = \"*\"\nkeep_tags = [\"latest\", \"v*\"]",
        &tags,
    );
    assert_eq!(gone, ["pr-3"]);
}

#[test]
fn delete_older_than_deletes_only_old_tags() {
    let gone = tags_gone(
        "[[retention]]\nrepos = \"*\"\ndelete_older_than = \"25d\"",
        &five(),
    );
    assert_eq!(gone, ["a", "b", "c"]);
}

#[test]
fn match_any_and_all_combine_the_delete_conditions() {
    let tags = [tag("pr-1", 40), tag("pr-2", 1), tag("v1", 40), tag("v2", 1)];
    let text =
        "[[retention]]\nrepos = \"*\"\ndelete_tags = [\"pr-*\"]\ndelete_older_than = \"30d\"";
    let any = tags_gone(&format!("{text}\nmatch = \"any\""), &tags);
    assert_eq!(any, ["pr-1", "pr-2", "v1"]);
    let all = tags_gone(&format!("{text}\nmatch = \"all\""), &tags);
    assert_eq!(all, ["pr-1"]);
}

#[test]
fn a_keep_rule_wins_over_any_delete_rule() {
    // The same policy: the newest two stay although everything is old.
    let gone = tags_gone(
        "[[retention]]\nrepos = \"*\"\nkeep_last = 2\ndelete_older_than = \"1d\"",
        &five(),
    );
    assert_eq!(gone, ["a", "b", "c"]);
    // Another policy's keep rule: "a" stays although the first policy deletes it.
    let gone = tags_gone(
        "[[retention]]\nrepos = \"*\"\ndelete_older_than = \"1d\"\n\
         [[retention]]\nrepos = \"team/*\"\nkeep_tags = [\"a\"]",
        &five(),
    );
    assert_eq!(gone, ["b", "c", "d", "e"]);
}

#[test]
fn immutable_tags_are_never_deleted() {
    let gone = tags_gone(
        "[[retention]]\nrepos = \"*\"\ndelete_older_than = \"1d\"\n\
         [[immutable]]\nrepos = \"team/app\"\ntags = [\"a\", \"c\"]",
        &five(),
    );
    assert_eq!(gone, ["b", "d", "e"]);
}

#[test]
fn policies_for_other_repositories_do_nothing() {
    let gone = tags_gone(
        "[[retention]]\nrepos = \"other/*\"\ndelete_older_than = \"1d\"",
        &five(),
    );
    assert!(gone.is_empty());
}

#[test]
fn untagged_manifests_go_when_old_unless_something_kept_needs_them() {
    let (policies, immutable) =
        rules("[[retention]]\nrepos = \"*\"\ndelete_untagged_older_than = \"7d\"");
    let mut index = manifest("index", 30);
    index.children = vec![digest("child")];
    let mut signature = manifest("signature", 30);
    signature.subject = Some(digest("index"));
    let mut sbom = manifest("sbom", 30);
    sbom.subject = Some(digest("tagged-ref-subject"));
    let mut tagged_ref = manifest("tagged-ref", 30);
    tagged_ref.subject = Some(digest("signed"));
    let manifests = [
        index,
        manifest("child", 30),
        signature,
        manifest("old", 30),
        manifest("young", 1),
        tagged_ref,
        manifest("signed", 30),
        sbom,
    ];
    let tags = [
        TagInfo {
            name: "v1".into(),
            digest: digest("index"),
            pushed: now() - 30 * DAY,
        },
        TagInfo {
            name: "sig".into(),
            digest: digest("tagged-ref"),
            pushed: now() - 30 * DAY,
        },
    ];
    let p = plan(&policies, &immutable, "team/app", &tags, &manifests, now());
    assert!(p.tags.is_empty());
    // Kept: the tagged index, its child and its signature; the tagged referrer and its
    // subject. Gone: the old untagged one, and an SBOM of nothing kept.
    let mut expected = vec![digest("old"), digest("sbom")];
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(p.manifests, expected);
}

#[test]
fn a_manifest_untagged_by_the_plan_goes_in_the_same_plan() {
    let (policies, immutable) =
        rules("[[retention]]\nrepos = \"*\"\nkeep_last = 1\ndelete_untagged_older_than = \"7d\"");
    let tags = [tag("old", 30), tag("new", 1)];
    let manifests = [manifest("old", 30), manifest("new", 1)];
    let p = plan(&policies, &immutable, "team/app", &tags, &manifests, now());
    assert_eq!(p.tags, ["old"]);
    assert_eq!(p.manifests, [digest("old")]);
}

#[test]
fn without_an_untagged_rule_no_manifest_goes() {
    let (policies, immutable) = rules("[[retention]]\nrepos = \"*\"\nkeep_last = 1");
    let tags = [tag("old", 30), tag("new", 1)];
    let manifests = [
        manifest("old", 30),
        manifest("new", 1),
        manifest("stray", 90),
    ];
    let p = plan(&policies, &immutable, "team/app", &tags, &manifests, now());
    assert_eq!(p.tags, ["old"]);
    assert!(p.manifests.is_empty());
}

#[test]
fn the_plan_names_the_first_policy_that_deletes_each() {
    let (policies, immutable) = rules(
        "[[retention]]\nrepos = \"other/*\"\nkeep_last = 1\n\
         [[retention]]\nrepos = \"*\"\ndelete_tags = [\"pr-*\"]\ndelete_untagged_older_than = \"1d\"\n\
         [[retention]]\nrepos = \"team/*\"\ndelete_older_than = \"7d\"\n",
    );
    let tags = [tag("pr-1", 1), tag("old", 30)];
    let loose = manifest("loose", 5);
    let p = plan(
        &policies,
        &immutable,
        "team/app",
        &tags,
        std::slice::from_ref(&loose),
        now(),
    );
    assert_eq!(p.tags, ["old", "pr-1"]);
    assert_eq!(p.rules["pr-1"], 1, "the second policy in the config");
    assert_eq!(p.rules["old"], 2);
    assert_eq!(p.rules[&loose.digest.to_string()], 1);
}

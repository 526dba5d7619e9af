//! What each parser of untrusted input promises, as functions that run the parser on one
//! input and panic when a promise is broken.
//!
//! Two kinds of caller share them, so the promises are written once: the libFuzzer targets
//! in `fuzz/` (built by cargo-fuzz, which sets `cfg(fuzzing)`), and the `proptest`
//! properties beside each parser, which `cargo test` runs on stable. Neither kind of build
//! is what ships, so this module is not part of wharf's API.

use std::time::Duration;

mod registry2;
pub use registry2::{layout_key, layout_parts, link_file, nginx_site, registry_env, registry_yml};

use http::{HeaderMap, HeaderValue};

use crate::auth::htpasswd::{edit, parse as htpasswd_parse};
use crate::auth::{ldap, Credentials};
use crate::config::Config;
use crate::registry::api::blobs::{parse_range, Ranged};
use crate::registry::api::uploads::content_range;
use crate::registry::manifest::{Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::registry::reference::{Digest, Reference, RepoName, Tag, MAX_NAME_LEN};
use crate::registry::route::{self, Route};

/// Names, tags, digests and references: whatever is accepted prints back as the same
/// string, parses again to the same value, and cannot name a path outside the storage root.
pub fn reference(s: &str) {
    if let Ok(name) = RepoName::parse(s) {
        assert_eq!(name.as_str(), s);
        assert_eq!(RepoName::parse(&name.to_string()), Ok(name.clone()));
        assert!(s.len() <= MAX_NAME_LEN);
        assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)));
    }
    if let Ok(tag) = Tag::parse(s) {
        assert_eq!(tag.as_str(), s);
        assert!(!s.is_empty() && s.len() <= 128 && !s.starts_with(['.', '-']));
        assert!(!s.contains(['/', ':', '\0']));
    }
    if let Ok(digest) = Digest::parse(s) {
        well_formed(&digest);
        assert_eq!(digest.to_string(), s);
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(Reference::parse(&r.to_string()), Ok(r));
    }
}

/// An accepted digest: a known algorithm, lowercase hex of its length, and stable.
fn well_formed(d: &Digest) {
    let len = match d.algorithm().as_str() {
        "sha256" => 64,
        "sha512" => 128,
        other => panic!("unknown algorithm {other}"),
    };
    assert_eq!(d.hex().len(), len);
    assert!(d
        .hex()
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(d));
}

/// Any path: whatever parses is rebuilt into the path that names it, which parses back to
/// the same route.
pub fn route_path(path: &str) {
    if let Ok(r) = route::parse(path) {
        let again = path_of(&r);
        assert_eq!(
            route::parse(&again).ok(),
            Some(r),
            "{path:?} rebuilt as {again:?}"
        );
    }
}

/// A route built from parts (a name, an endpoint, its last component) parses back to those
/// parts, whatever is in them, when the parts are valid.
pub fn route_parts(name: &str, endpoint: u8, last: &str) {
    let Ok(repo) = RepoName::parse(name) else {
        return;
    };
    let built = match endpoint % 6 {
        0 => Some(Route::Tags(repo)),
        1 => Some(Route::UploadStart(repo)),
        2 => crate::registry::storage::UploadId::parse(last).map(|id| Route::Upload(repo, id)),
        3 => Digest::parse(last).ok().map(|d| Route::Blob(repo, d)),
        4 => Digest::parse(last).ok().map(|d| Route::Referrers(repo, d)),
        _ => Some(match Reference::parse(last) {
            Ok(r) => Route::Manifest(repo, r),
            Err(_) => Route::ImpossibleManifest(repo, last.to_owned()),
        }),
    };
    if let Some(built) = built {
        let path = path_of(&built);
        assert_eq!(route::parse(&path).ok(), Some(built), "{path:?}");
    }
}

/// The path of a route, with the one free-form part (an impossible reference) encoded.
fn path_of(r: &Route) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    match r {
        Route::Base => "/v2/".to_owned(),
        Route::Catalog => "/v2/_catalog".to_owned(),
        Route::Tags(n) => format!("/v2/{n}/tags/list"),
        Route::Manifest(n, r) => format!("/v2/{n}/manifests/{r}"),
        Route::ImpossibleManifest(n, r) => {
            format!(
                "/v2/{n}/manifests/{}",
                utf8_percent_encode(r, NON_ALPHANUMERIC)
            )
        }
        Route::Blob(n, d) => format!("/v2/{n}/blobs/{d}"),
        Route::UploadStart(n) => format!("/v2/{n}/blobs/uploads/"),
        Route::Upload(n, id) => format!("/v2/{n}/blobs/uploads/{id}"),
        Route::Referrers(n, d) => format!("/v2/{n}/referrers/{d}"),
    }
}

/// A `Range` header against a blob of `size` bytes: a part served lies inside the blob, and
/// the header a client would write for that part asks for exactly it.
pub fn range(value: &str, size: u64) {
    match parse_range(value, size) {
        Ranged::Part(start, end) => {
            assert!(
                start <= end && end < size,
                "{value:?} of {size}: {start}-{end}"
            );
            let canonical = format!("bytes={start}-{end}");
            assert_eq!(parse_range(&canonical, size), Ranged::Part(start, end));
        }
        Ranged::Whole | Ranged::Unsatisfiable => {}
    }
}

/// A chunk's `Content-Range` (and `Content-Length`): an accepted chunk is at least one byte,
/// its end never comes before its start nor past the largest offset, and it agrees with
/// the declared length.
pub fn chunk_range(value: &[u8], length: Option<&[u8]>) {
    let mut headers = HeaderMap::new();
    let Ok(v) = HeaderValue::from_bytes(value) else {
        return;
    };
    headers.insert(http::header::CONTENT_RANGE, v);
    if let Some(length) = length {
        let Ok(v) = HeaderValue::from_bytes(length) else {
            return;
        };
        headers.insert(http::header::CONTENT_LENGTH, v);
    }
    if let Ok(Some(chunk)) = content_range(&headers) {
        assert!(chunk.len >= 1);
        let end = chunk.offset.checked_add(chunk.len);
        assert!(end.is_some(), "{value:?}: chunk ends past u64::MAX");
        if let Some(length) = length {
            let declared = std::str::from_utf8(length)
                .ok()
                .and_then(|l| l.parse().ok());
            assert_eq!(declared, Some(chunk.len));
        }
    }
}

/// A manifest body and `Content-Type`: an accepted one has a media type wharf stores, only
/// well-formed digests, and the kind of references its type has.
pub fn manifest(bytes: &[u8], content_type: Option<&str>) {
    let Ok(m) = Manifest::parse(bytes, content_type) else {
        return;
    };
    let image = [OCI_MANIFEST, DOCKER_MANIFEST].contains(&m.media_type.as_str());
    let index = [OCI_INDEX, DOCKER_LIST].contains(&m.media_type.as_str());
    assert!(image || index, "{}", m.media_type);
    assert!(if image {
        m.children.is_empty() && !m.blobs.is_empty()
    } else {
        m.blobs.is_empty()
    });
    let blobs = m.blobs.iter().chain(&m.children).map(|(d, _)| d);
    blobs.chain(&m.subject).for_each(well_formed);
    let d = Digest::of(crate::registry::reference::Algorithm::Sha256, bytes);
    let described = m.referrer_descriptor(&d, bytes.len());
    assert_eq!(described["mediaType"].as_str(), Some(m.media_type.as_str()));
    assert_eq!(described["digest"].as_str(), Some(d.to_string().as_str()));
}

/// An `Authorization` header: credentials read from it have a user, and written back as
/// `Basic` they read the same.
pub fn authorization(header: &str) {
    use base64::Engine as _;
    if let Ok(Some(c)) = Credentials::from_basic(header) {
        assert!(!c.user.is_empty() && !c.user.contains(':'));
        let text = format!("{}:{}", c.user, c.password);
        let again = base64::engine::general_purpose::STANDARD.encode(text);
        let back = Credentials::from_basic(&format!("Basic {again}"));
        assert!(matches!(back, Ok(Some(b)) if b.user == c.user && b.password == c.password));
    }
}

/// `WWW-Authenticate` challenges from an upstream registry (`mirror/challenge.rs`): any
/// header parses without panicking, and what was read renders back to a header that reads
/// as the same challenges.
pub fn challenge(value: &str) {
    use crate::mirror::challenge;
    let read = challenge::parse(value);
    let rendered: Vec<String> = read.iter().map(challenge::Challenge::render).collect();
    assert_eq!(challenge::parse(&rendered.join(", ")), read, "{value:?}");
}

/// An htpasswd file: every hash of a file that loads is one bcrypt can check (so no login
/// fails on the format), and setting a user as `wharf htpasswd` does keeps the file loading,
/// with that user's new hash and every other user unchanged.
pub fn htpasswd(bytes: &[u8], user: &str) {
    const HASH: &str = "$2y$04$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3xy";
    let path = std::path::Path::new("fuzz.htpasswd");
    let Ok(users) = htpasswd_parse::parse(path, bytes) else {
        return;
    };
    for (name, hash) in &users.entries {
        assert!(!name.is_empty());
        assert!(hash.parse::<bcrypt::HashParts>().is_ok(), "{name}: {hash}");
    }
    assert!(users.dummy.parse::<bcrypt::HashParts>().is_ok());
    if edit::check_user_name(user).is_err() {
        return;
    }
    let (text, existed) = edit::set_user(bytes, user, HASH);
    assert_eq!(existed, users.entries.contains_key(user));
    let after = match htpasswd_parse::parse(path, &text) {
        Ok(after) => after,
        Err(e) => panic!(
            "{e} after setting {user:?} in {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    assert_eq!(after.entries.get(user).map(String::as_str), Some(HASH));
    for (name, hash) in &users.entries {
        assert!(
            name == user || after.entries.get(name) == Some(hash),
            "{name}"
        );
    }
    assert_eq!(
        after.entries.len(),
        users.entries.len() + usize::from(!existed)
    );
}

/// A config file: one that loads (and whose access rules check, as `check-config` does)
/// loads again to the same configuration after a TOML round trip (parsed and written back,
/// as an editor or a config tool would).
pub fn config(text: &str) {
    let Ok(config) = Config::from_toml(text, "fuzz.toml") else {
        return;
    };
    for server in &config.servers {
        if let Some(auth) = &server.auth {
            let _ = crate::gateway::authz::validate(auth);
        }
    }
    let value: toml::Table = match toml::from_str(text) {
        Ok(value) => value,
        Err(e) => panic!("accepted, but not a TOML table: {e}"),
    };
    let written = match toml::to_string(&value) {
        Ok(written) => written,
        Err(e) => panic!("accepted, but cannot be written back: {e}"),
    };
    match Config::from_toml(&written, "fuzz.toml") {
        Ok(again) => assert_eq!(format!("{again:?}"), format!("{config:?}"), "{written}"),
        Err(e) => panic!("{e}\nafter the round trip:\n{written}"),
    }
}

/// LDAP filters: escaped text has no unescaped `*`, `(`, `)`, `\` or NUL and unescapes to
/// what it was, and a filter template filled with a user and a DN holds exactly those
/// values, escaped, whatever they contain.
pub fn ldap_filter(user: &str, dn: &str) {
    for value in [user, dn] {
        let escaped = ldap3::ldap_escape(value);
        assert!(!escaped.contains(['*', '(', ')', '\0']), "{escaped:?}");
        let b = escaped.as_bytes();
        for (i, _) in escaped.match_indices('\\') {
            let hex = b.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                hex.len() == 2 && hex.iter().all(u8::is_ascii_hexdigit),
                "{escaped:?}"
            );
        }
        assert_eq!(
            ldap3::ldap_unescape(escaped.as_ref()).ok().as_deref(),
            Some(value)
        );
    }
    let template = "(&(member={dn})(uid={user})(cn={user}))";
    let filled = ldap::fill_filter(template, &[("{dn}", dn), ("{user}", user)]);
    let (u, d) = (ldap3::ldap_escape(user), ldap3::ldap_escape(dn));
    assert_eq!(filled, format!("(&(member={d})(uid={u})(cn={u}))"));
    assert!(ldap3::parse_filter(&filled).is_ok(), "{filled:?}");
}

/// The first bytes of a connection to a `tls = "on"` listener that does not start a TLS
/// handshake: the answer is a 4xx (wharf's 400 saying to use https, or hyper's own for a
/// malformed request) or nothing, and an error body in the envelope is valid JSON.
pub fn plain_http(data: &[u8]) {
    use std::sync::OnceLock;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if data
        .first()
        .is_none_or(|&b| b == crate::server::conn::TLS_HANDSHAKE_RECORD)
    {
        return; // the TLS handshake's path, not this one
    }
    let runtime = RUNTIME.get_or_init(|| {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"))
    });
    let answer = runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let serve = crate::server::plain_on_tls::answer(server, peer, Duration::from_secs(10));
        let talk = async {
            // The client's writes may fail once the server has answered and closed.
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        tokio::join!(serve, talk).1
    });
    if answer.is_empty() {
        return;
    }
    // `HTTP/1.0` requests get `HTTP/1.0` answers.
    let status = answer.get(..10).unwrap_or_default();
    assert!(
        status == b"HTTP/1.1 4" || status == b"HTTP/1.0 4",
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    if let Some(at) = answer.windows(10).position(|w| w == b"{\"errors\":") {
        let body: Result<serde_json::Value, _> = serde_json::from_slice(&answer[at..]);
        assert!(body.is_ok(), "{:?}", String::from_utf8_lossy(&answer));
    }
}

/// Inputs for the properties beside the parsers: shaped like what each parser reads, with
/// the edge values where bugs hide.
#[cfg(test)]
pub mod strategies {
    use proptest::prelude::*;

    /// A number as a client may write it: small, around a blob's size, or at u64's edges.
    pub fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..300,
            Just(u64::MAX),
            Just(u64::MAX - 1),
            (u64::MAX - 300)..=u64::MAX,
            any::<u64>(),
        ]
    }

    /// A number's text: digits of [`number`], or digits too long for a u64, or not digits.
    pub fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => number().prop_map(|n| n.to_string()),
            1 => "[0-9]{19,25}",
            1 => "[ 0-9+-]{0,4}",
        ]
    }

    /// A digest-like string: sometimes right, often off by a character.
    pub fn digest_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "sha256:[0-9a-f]{64}",
            "sha512:[0-9a-f]{128}",
            "(sha256|sha512|md5|SHA256|)(:|%3A|)[0-9a-fA-F./]{60,66}",
        ]
    }

    /// A repository-name-like string: components of the name alphabet and its neighbours.
    pub fn name_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,5}((\\.|_|__|-+)[a-z0-9]{1,3}){0,2}(/[a-z0-9]{1,4}){0,3}",
            "[a-zA-Z0-9._/%-]{0,12}",
        ]
    }
}

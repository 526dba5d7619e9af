//! Parsing `/v2/...` paths into typed routes.
//!
//! Repository names contain `/`, so a path is read from the right: the trailing
//! components say which endpoint it is, and everything before them is the name.

use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{Digest, Reference, RepoName};
use crate::registry::service::UploadId;

/// A parsed path. The gateway, which parses it first for its access rules and rate limits,
/// leaves it in the request's extensions for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/manifests/<reference>` where the reference is neither a tag nor a digest.
    /// No such manifest can exist, so reading or deleting it is "unknown" (404); only
    /// pushing under it is the client's error ([`invalid_reference`]).
    ImpossibleManifest(RepoName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

impl Route {
    /// The repository a route acts on, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::ImpossibleManifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// Parses a request path (still percent-encoded) that starts with `/v2`.
pub fn parse(path: &str) -> ApiResult<Route> {
    let rest = path.strip_prefix("/v2").ok_or_else(|| not_found(path))?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let decoded: Vec<String> = rest
        .split('/')
        .map(|c| {
            percent_encoding::percent_decode_str(c)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let n = parts.len();
    let name_of = |upto: usize| name(&parts[..upto]);
    match parts.as_slice() {
        [.., "tags", "list"] if n > 2 => Ok(Route::Tags(name_of(n - 2)?)),
        [.., "blobs", "uploads", ""] | [.., "blobs", "uploads"] if n > 2 => {
            let upto = if parts[n - 1].is_empty() {
                n - 3
            } else {
                n - 2
            };
            Ok(Route::UploadStart(name_of(upto)?))
        }
        [.., "blobs", "uploads", id] if n > 3 => {
            let name = name_of(n - 3)?;
            let id = UploadId::parse(id).ok_or_else(|| {
                ApiError::new(
                    Code::BlobUploadUnknown,
                    "upload id is not a valid session id",
                )
            })?;
            Ok(Route::Upload(name, id))
        }
        [.., "blobs", d] if n > 2 => Ok(Route::Blob(name_of(n - 2)?, digest(d)?)),
        [.., "referrers", d] if n > 2 => Ok(Route::Referrers(name_of(n - 2)?, digest(d)?)),
        [.., "manifests", r] if n > 2 => {
            let name = name_of(n - 2)?;
            Ok(match Reference::parse(r) {
                Ok(reference) => Route::Manifest(name, reference),
                Err(_) => Route::ImpossibleManifest(name, (*r).to_owned()),
            })
        }
        _ => Err(not_found(path)),
    }
}

/// Why `r` cannot name a manifest, as the answer to pushing one under it (400).
pub fn invalid_reference(r: &str) -> ApiError {
    let why = Reference::parse(r).err().unwrap_or("not a tag or digest");
    let code = if r.contains(':') {
        Code::DigestInvalid
    } else {
        Code::ManifestInvalid
    };
    ApiError::new(code, format!("invalid reference {r:?}: {why}"))
}

fn name(parts: &[&str]) -> ApiResult<RepoName> {
    let joined = parts.join("/");
    RepoName::parse(&joined).map_err(|why| ApiError::new(Code::NameInvalid, why))
}

fn digest(s: &str) -> ApiResult<Digest> {
    Digest::parse(s).map_err(|why| ApiError::new(Code::DigestInvalid, why))
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no API endpoint at {path:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn routes_are_read_from_the_right() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        let r = parse("/v2/a/manifests/b/manifests/latest").unwrap();
        assert!(matches!(r, Route::Manifest(n, _) if n.as_str() == "a/manifests/b"));
        let r = parse(&format!("/v2/x/blobs/blobs/{}", d())).unwrap();
        assert!(matches!(r, Route::Blob(n, _) if n.as_str() == "x/blobs"));
        assert!(
            matches!(parse("/v2/team/app/blobs/uploads/").unwrap(), Route::UploadStart(n) if n.as_str() == "team/app")
        );
        let id = uuid::Uuid::new_v4();
        assert!(matches!(
            parse(&format!("/v2/a/blobs/uploads/{id}")).unwrap(),
            Route::Upload(..)
        ));
        assert!(
            matches!(parse("/v2/a/b/tags/list").unwrap(), Route::Tags(n) if n.as_str() == "a/b")
        );
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{}", d())).unwrap(),
            Route::Referrers(..)
        ));
        let encoded = format!("/v2/a/blobs/{}", d().replace(':', "%3A"));
        assert!(matches!(parse(&encoded).unwrap(), Route::Blob(..)));
    }

    #[test]
    fn bad_parts_get_their_codes() {
        let code = |p: &str| parse(p).unwrap_err().code;
        assert_eq!(code("/v2/../x/tags/list"), Code::NameInvalid);
        assert_eq!(code("/v2/a%2F..%2Fb/tags/list"), Code::NameInvalid);
        assert_eq!(code("/v2/Upper/tags/list"), Code::NameInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:zz"), Code::DigestInvalid);
        let impossible = |p: &str| match parse(p).unwrap() {
            Route::ImpossibleManifest(_, r) => invalid_reference(&r).code,
            other => panic!("{p} parsed as {other:?}"),
        };
        assert_eq!(impossible("/v2/a/manifests/sha256:zz"), Code::DigestInvalid);
        assert_eq!(impossible("/v2/a/manifests/-bad"), Code::ManifestInvalid);
        assert_eq!(impossible("/v2/a/manifests/.hidden"), Code::ManifestInvalid);
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            Code::BlobUploadUnknown
        );
        assert_eq!(code("/v2/a/whatever"), Code::NotFound);
        assert_eq!(code("/v2/tags/list"), Code::NotFound);
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants::{self, strategies};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_route_built_from_parts_parses_back_to_them(
            name in strategies::name_text(),
            endpoint in 0u8..6,
            last in prop_oneof![
                strategies::digest_text(),
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "[a-zA-Z0-9_.:/%-]{0,20}",
                any::<String>(),
            ],
        ) {
            invariants::route_parts(&name, endpoint, &last);
        }

        #[test]
        fn a_parsed_path_is_rebuilt_into_the_same_route(
            path in "/v2(/[a-z0-9_.%:A-F-]{0,8}){0,5}(/(tags/list|manifests/[a-z:0-9]{1,8}|blobs/uploads/?|blobs/sha256:[0-9a-f]{64}))?",
        ) {
            invariants::route_path(&path);
        }
    }
}

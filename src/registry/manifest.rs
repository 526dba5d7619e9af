//! Reading a pushed manifest: which media type it is, what it refers to, and the descriptor
//! the referrers API lists for it. Parsing uses the `oci-spec` types; Docker schema2
//! manifests and manifest lists share their shape with OCI image manifests and indexes.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::Value;

use super::error::{ApiError, ApiResult, Code};
use super::reference::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the registry needs to know about a manifest before storing it.
#[derive(Debug)]
pub struct Manifest {
    pub media_type: String,
    /// Blobs that must already be in the repository (config and layers), with the size
    /// each descriptor claims.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests that must already be in the repository (index entries), with sizes.
    pub children: Vec<(Digest, u64)>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for image manifests without one, the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<HashMap<String, String>>,
}

impl Manifest {
    /// Parses `bytes`, with `content_type` being the request's `Content-Type`. The media
    /// type is the one the bytes say ([`media_type_of`]), since that is what a reader gets
    /// back later: a `Content-Type` that disagrees is refused rather than forgotten.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> ApiResult<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        let media_type = derive(&value).map_err(invalid)?;
        if media_type == DOCKER_SCHEMA1_SIGNED {
            return Err(ApiError::new(
                Code::Unsupported,
                "Docker schema1 manifests are not supported; push with a current client",
            ));
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
            });
        if let Some(h) = header.filter(|h| *h != media_type) {
            let said = match value.get("mediaType").and_then(Value::as_str) {
                Some(_) => "the manifest's mediaType is",
                None => "a manifest without mediaType is read as",
            };
            return Err(invalid(format!(
                "Content-Type {h} does not match the manifest: {said} {media_type}"
            )));
        }
        match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => Self::image(value, media_type.to_owned()),
            _ => Self::index(value, media_type.to_owned()),
        }
    }

    fn image(value: Value, media_type: String) -> ApiResult<Self> {
        let m: ImageManifest = serde_json::from_value(value)
            .map_err(|e| invalid(format!("not a valid image manifest: {e}")))?;
        check_schema(m.schema_version())?;
        let mut blobs = vec![sized(m.config())?];
        for layer in m.layers() {
            // Foreign layers live at their URLs, not in the registry.
            if layer.urls().as_ref().is_none_or(Vec::is_empty) {
                blobs.push(sized(layer)?);
            }
        }
        let artifact_type = m
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| Some(m.config().media_type().to_string()));
        Ok(Self {
            media_type,
            blobs,
            children: Vec::new(),
            subject: m.subject().as_ref().map(digest_of).transpose()?,
            artifact_type,
            annotations: m.annotations().clone(),
        })
    }

    fn index(value: Value, media_type: String) -> ApiResult<Self> {
        let m: ImageIndex = serde_json::from_value(value)
            .map_err(|e| invalid(format!("not a valid image index: {e}")))?;
        check_schema(m.schema_version())?;
        Ok(Self {
            media_type,
            blobs: Vec::new(),
            children: m.manifests().iter().map(sized).collect::<ApiResult<_>>()?,
            subject: m.subject().as_ref().map(digest_of).transpose()?,
            artifact_type: m.artifact_type().as_ref().map(ToString::to_string),
            annotations: m.annotations().clone(),
        })
    }

    /// The descriptor the referrers API lists for this manifest.
    pub fn referrer_descriptor(&self, digest: &Digest, size: usize) -> Value {
        let mut d = serde_json::json!({
            "mediaType": self.media_type,
            "digest": digest.to_string(),
            "size": size,
        });
        if let Some(t) = &self.artifact_type {
            d["artifactType"] = Value::from(t.as_str());
        }
        if let Some(a) = self.annotations.as_ref().filter(|a| !a.is_empty()) {
            d["annotations"] = serde_json::json!(a);
        }
        d
    }
}

/// The media type of stored manifest bytes, derived as registry:2 derives it (it keeps no
/// record of the type a manifest was pushed with): `schemaVersion` 1 is a signed Docker
/// schema1 manifest; for 2, the `mediaType` field, or without one an OCI index when there
/// is a `manifests` list and an OCI image manifest otherwise. The error says why registry:2
/// would not read the manifest either.
pub fn media_type_of(bytes: &[u8]) -> Result<&'static str, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    derive(&value)
}

fn derive(value: &Value) -> Result<&'static str, String> {
    match value.get("schemaVersion").and_then(Value::as_u64) {
        Some(1) => return Ok(DOCKER_SCHEMA1_SIGNED),
        Some(2) => {}
        other => {
            let v = other.map_or("missing".to_owned(), |v| v.to_string());
            return Err(format!("schemaVersion must be 2, not {v}"));
        }
    }
    match value.get("mediaType") {
        None | Some(Value::Null) => Ok(match value.get("manifests") {
            Some(Value::Array(_)) => OCI_INDEX,
            _ => OCI_MANIFEST,
        }),
        Some(Value::String(t)) => match t.as_str() {
            "" if value.get("manifests").is_some_and(Value::is_array) => Ok(OCI_INDEX),
            "" | OCI_MANIFEST => Ok(OCI_MANIFEST),
            OCI_INDEX => Ok(OCI_INDEX),
            DOCKER_MANIFEST => Ok(DOCKER_MANIFEST),
            DOCKER_LIST => Ok(DOCKER_LIST),
            other => Err(format!("unsupported manifest media type {other}")),
        },
        Some(_) => Err("the manifest's mediaType is not a string".to_owned()),
    }
}

fn check_schema(v: u32) -> ApiResult<()> {
    match v {
        2 => Ok(()),
        other => Err(invalid(format!("schemaVersion must be 2, not {other}"))),
    }
}

fn digest_of(d: &Descriptor) -> ApiResult<Digest> {
    let s = d.digest().to_string();
    Digest::parse(&s).map_err(|why| invalid(format!("descriptor digest {s}: {why}")))
}

/// A descriptor's digest and the size it claims for the content.
fn sized(d: &Descriptor) -> ApiResult<(Digest, u64)> {
    Ok((digest_of(d)?, d.size()))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(Code::ManifestInvalid, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('a'), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d('b'), "size": 3}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 4},
        });
        let m = Manifest::parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.unwrap().to_string(), d('c'));
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    /// The cases registry:2's `manifestStore.Get` tells apart.
    #[test]
    fn media_type_is_derived_from_the_bytes_as_registry2_does() {
        let of = |v: Value| media_type_of(v.to_string().as_bytes());
        let typed = |t: &str| serde_json::json!({"schemaVersion": 2, "mediaType": t});
        for t in [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
            assert_eq!(of(typed(t)), Ok(t));
        }
        let untyped_index = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(of(untyped_index), Ok(OCI_INDEX));
        let untyped_image = serde_json::json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(of(untyped_image), Ok(OCI_MANIFEST));
        let null_list = serde_json::json!({"schemaVersion": 2, "manifests": null});
        assert_eq!(of(null_list), Ok(OCI_MANIFEST));
        let signed = serde_json::json!({"schemaVersion": 1, "name": "a", "tag": "b",
            "fsLayers": [], "signatures": []});
        assert_eq!(of(signed), Ok(DOCKER_SCHEMA1_SIGNED));
        assert!(of(typed("application/vnd.oci.artifact.manifest.v1+json")).is_err());
        assert!(of(serde_json::json!({"schemaVersion": 3})).is_err());
        assert!(media_type_of(b"{nope").is_err());
    }

    /// A Docker manifest without `mediaType` would read back as OCI: refused at push.
    #[test]
    fn content_type_the_bytes_do_not_carry_is_refused() {
        let body = serde_json::json!({"schemaVersion": 2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d('a'), "size": 2},
            "layers": []});
        let e = Manifest::parse(body.to_string().as_bytes(), Some(DOCKER_MANIFEST)).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        let m = Manifest::parse(body.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
    }

    #[test]
    fn mismatched_content_type_and_garbage_are_invalid() {
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
        let e = Manifest::parse(body.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        assert_eq!(
            Manifest::parse(b"{nope", None).unwrap_err().code,
            Code::ManifestInvalid
        );
        let v1 = serde_json::json!({"schemaVersion": 1, "mediaType": DOCKER_SCHEMA1_SIGNED});
        let e = Manifest::parse(v1.to_string().as_bytes(), None).unwrap_err();
        assert_eq!(e.code, Code::Unsupported);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::invariants::{self, strategies};
    use proptest::prelude::*;
    use serde_json::json;

    fn media_type() -> impl Strategy<Value = Option<&'static str>> {
        proptest::option::of(proptest::sample::select(vec![
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_LIST,
            DOCKER_SCHEMA1_SIGNED,
            "application/vnd.oci.image.layer.v1.tar",
            "application/json",
            "",
        ]))
    }

    fn descriptor() -> impl Strategy<Value = Value> {
        let urls = proptest::option::of(Just(json!(["https://example.com/layer"])));
        (
            media_type(),
            strategies::digest_text(),
            strategies::number(),
            urls,
        )
            .prop_map(|(media_type, digest, size, urls)| {
                let mut d = json!({"mediaType": media_type, "digest": digest, "size": size});
                if let Some(urls) = urls {
                    d["urls"] = urls;
                }
                d
            })
    }

    proptest! {
        #[test]
        fn an_accepted_manifest_has_a_stored_type_and_well_formed_digests(
            declared in media_type(),
            header in media_type(),
            schema in 1u32..4,
            config in proptest::option::of(descriptor()),
            layers in proptest::collection::vec(descriptor(), 0..3),
            manifests in proptest::option::of(proptest::collection::vec(descriptor(), 0..3)),
            subject in proptest::option::of(descriptor()),
        ) {
            let mut m = json!({"schemaVersion": schema, "layers": layers});
            for (key, value) in [("mediaType", declared.map(Value::from)), ("config", config),
                                 ("manifests", manifests.map(Value::from)), ("subject", subject)] {
                if let Some(value) = value {
                    m[key] = value;
                }
            }
            invariants::manifest(m.to_string().as_bytes(), header);
        }
    }
}

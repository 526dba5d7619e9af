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
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
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
    /// Parses `bytes`, with `content_type` being the request's `Content-Type`.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> ApiResult<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        let declared = value.get("mediaType").and_then(Value::as_str);
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
            });
        if let (Some(d), Some(h)) = (declared, header) {
            if d != h {
                return Err(invalid(format!(
                    "Content-Type {h} does not match the manifest's mediaType {d}"
                )));
            }
        }
        let media_type = match declared.or(header) {
            Some(m) => m.to_owned(),
            None if value.get("manifests").is_some() => OCI_INDEX.to_owned(),
            None if value.get("config").is_some() => OCI_MANIFEST.to_owned(),
            None => return Err(invalid("cannot tell the manifest's media type".into())),
        };
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Self::image(value, media_type),
            OCI_INDEX | DOCKER_LIST => Self::index(value, media_type),
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ApiError::new(
                Code::Unsupported,
                "Docker schema1 manifests are not supported; push with a current client",
            )),
            other => Err(invalid(format!("unsupported manifest media type {other}"))),
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
            DOCKER_SCHEMA1,
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

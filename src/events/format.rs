//! The bodies an endpoint receives: registry:2's envelope (so existing consumers of its
//! webhooks keep working; fields as `notifications/event.go` in distribution/distribution
//! names them) or a CloudEvents 1.0 event in structured JSON mode, whose `data` is that
//! same event object.

use serde_json::{json, Map, Value};

use super::record::StoredEvent;
use crate::config::EventFormat;

pub const DISTRIBUTION_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
pub const CLOUDEVENTS_MEDIA_TYPE: &str = "application/cloudevents+json";

/// What registry:2 says a blob is when it knows nothing better.
pub(crate) const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// Which node generated the events: its host name and this run's id.
#[derive(Clone, Debug)]
pub struct Source {
    pub addr: String,
    pub instance_id: String,
}

/// The request body and its content type for one event.
pub fn body(format: EventFormat, event: &StoredEvent, source: &Source) -> (Vec<u8>, &'static str) {
    let value = match format {
        EventFormat::Distribution => json!({ "events": [distribution_event(event, source)] }),
        EventFormat::CloudEvents => cloud_event(event, source),
    };
    let media_type = match format {
        EventFormat::Distribution => DISTRIBUTION_MEDIA_TYPE,
        EventFormat::CloudEvents => CLOUDEVENTS_MEDIA_TYPE,
    };
    (value.to_string().into_bytes(), media_type)
}

/// One event as registry:2 writes it; empty fields are left out, as its `omitempty` does.
fn distribution_event(e: &StoredEvent, source: &Source) -> Value {
    let mut target = Map::new();
    let media_type = e
        .media_type
        .clone()
        .or_else(|| (e.kind == "blob").then(|| BLOB_MEDIA_TYPE.to_owned()));
    put(&mut target, "mediaType", media_type.map(Value::from));
    put(&mut target, "size", e.size.map(Value::from));
    put(&mut target, "digest", e.digest.clone().map(Value::from));
    put(&mut target, "length", e.size.map(Value::from));
    target.insert("repository".into(), e.repository.clone().into());
    put(
        &mut target,
        "fromRepository",
        e.from_repository.clone().map(Value::from),
    );
    put(&mut target, "url", url(e).map(Value::from));
    put(&mut target, "tag", e.tag.clone().map(Value::from));
    let mut actor = Map::new();
    put(&mut actor, "name", e.actor.clone().map(Value::from));
    json!({
        "id": e.id,
        "timestamp": rfc3339(e),
        "action": e.action,
        "target": target,
        "request": {
            "id": e.request_id,
            "addr": e.addr,
            "host": e.host,
            "method": e.method,
            "useragent": e.user_agent,
        },
        "actor": actor,
        "source": { "addr": source.addr, "instanceID": source.instance_id },
    })
}

fn cloud_event(e: &StoredEvent, source: &Source) -> Value {
    let subject = match (&e.tag, &e.digest) {
        (Some(tag), _) => format!("{}:{tag}", e.repository),
        (None, Some(digest)) => format!("{}@{digest}", e.repository),
        (None, None) => e.repository.clone(),
    };
    json!({
        "specversion": "1.0",
        "type": format!("io.wharf.{}.{}", e.kind, e.action),
        "source": format!("wharf://{}", source.addr),
        "id": e.id,
        "time": rfc3339(e),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": distribution_event(e, source),
    })
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

/// Where the content can be fetched, as registry:2 gives it. The event knows the host
/// the client asked for, not the scheme: wharf's registries are https, so https it is.
fn url(e: &StoredEvent) -> Option<String> {
    let digest = e.digest.as_ref()?;
    if e.host.is_empty() {
        return None;
    }
    let family = match e.kind.as_str() {
        "manifest" => "manifests",
        "blob" => "blobs",
        _ => return None,
    };
    Some(format!(
        "https://{}/v2/{}/{family}/{digest}",
        e.host, e.repository
    ))
}

fn rfc3339(e: &StoredEvent) -> String {
    let t = time::OffsetDateTime::from(e.time());
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::sample;
    use super::*;

    fn source() -> Source {
        Source {
            addr: "node-1".into(),
            instance_id: "run-1".into(),
        }
    }

    #[test]
    fn the_distribution_envelope_has_registry2s_fields() {
        let (body, media_type) = body(EventFormat::Distribution, &sample(), &source());
        assert_eq!(media_type, DISTRIBUTION_MEDIA_TYPE);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let e = &v["events"][0];
        assert_eq!(e["id"], "e1");
        assert_eq!(e["action"], "push");
        assert_eq!(e["timestamp"], "1970-01-01T00:00:00.000001Z");
        let t = &e["target"];
        assert_eq!(t["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(t["size"], 512);
        assert_eq!(t["length"], 512);
        assert_eq!(t["repository"], "team/app");
        assert_eq!(t["tag"], "v1");
        assert_eq!(
            t["url"],
            format!(
                "https://registry.example.com/v2/team/app/manifests/sha256:{}",
                "a".repeat(64)
            )
        );
        assert_eq!(e["request"]["addr"], "10.0.0.1:5555");
        assert_eq!(e["request"]["useragent"], "podman/5");
        assert_eq!(e["actor"]["name"], "alice");
        assert_eq!(e["source"]["instanceID"], "run-1");
    }

    #[test]
    fn anonymous_actors_and_missing_fields_are_left_out() {
        let mut e = sample();
        e.actor = None;
        e.tag = None;
        let (body, _) = body(EventFormat::Distribution, &e, &source());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"][0]["actor"], json!({}));
        assert!(v["events"][0]["target"].get("tag").is_none());
    }

    #[test]
    fn cloudevents_are_structured_json() {
        let (body, media_type) = body(EventFormat::CloudEvents, &sample(), &source());
        assert_eq!(media_type, CLOUDEVENTS_MEDIA_TYPE);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.wharf.manifest.push");
        assert_eq!(v["source"], "wharf://node-1");
        assert_eq!(v["id"], "e1");
        assert_eq!(v["subject"], "team/app:v1");
        assert_eq!(v["data"]["target"]["digest"], sample().digest.unwrap());
    }
}

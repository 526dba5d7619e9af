//! registry:2's `config.yml`, flattened into the names its environment variables have
//! (`storage.s3.bucket` is `REGISTRY_STORAGE_S3_BUCKET`), which is how registry:2 itself
//! relates the two. The same rules then apply to both.

use serde_yaml::Value;

use super::{Origin, Setting};

/// Every leaf of the file as a setting, labelled with its dotted key.
pub fn settings(text: &str) -> Result<Vec<Setting>, String> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let Value::Mapping(_) = root else {
        return Err("the file is not a YAML mapping of registry:2 settings".into());
    };
    let mut out = Vec::new();
    walk(&root, &mut Vec::new(), &mut out);
    Ok(out)
}

fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Setting>) {
    match value {
        Value::Mapping(map) => {
            // `storage: { inmemory: }` names the driver with nothing below it.
            if map.is_empty() && path.len() == 2 && path[0] == "storage" {
                out.push(setting(&path[..1], path[1].clone()));
            }
            for (key, v) in map {
                let key = match key {
                    Value::String(s) => s.clone(),
                    other => scalar(other).unwrap_or_default(),
                };
                path.push(key);
                walk(v, path, out);
                path.pop();
            }
        }
        Value::Null if path.len() == 2 && path[0] == "storage" => {
            out.push(setting(&path[..1], path[1].clone()));
        }
        Value::Null => {}
        Value::Sequence(items) if items.iter().all(|i| scalar(i).is_some()) => {
            let joined = items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(",");
            out.push(setting(path, joined));
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(item, path, out);
                path.pop();
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, out),
        other => out.push(setting(path, scalar(other).unwrap_or_default())),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn setting(path: &[String], value: String) -> Setting {
    let name = std::iter::once("REGISTRY".to_owned())
        .chain(path.iter().map(|p| p.to_ascii_uppercase()))
        .collect::<Vec<_>>()
        .join("_");
    Setting {
        name,
        label: path.join("."),
        value,
        origin: Origin::File,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_registry_variable_names() {
        let s = settings(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\n  inmemory:\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str, &str)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.label.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("REGISTRY_VERSION", "version", "0.1"),
                (
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                    "storage.filesystem.rootdirectory",
                    "/var/lib/registry"
                ),
                (
                    "REGISTRY_STORAGE_DELETE_ENABLED",
                    "storage.delete.enabled",
                    "true"
                ),
                ("REGISTRY_STORAGE", "storage", "inmemory"),
                ("REGISTRY_HTTP_ADDR", "http.addr", ":5000"),
                (
                    "REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS",
                    "http.headers.X-Content-Type-Options",
                    "nosniff"
                ),
            ]
        );
    }

    #[test]
    fn not_a_mapping_is_an_error() {
        assert!(settings("- a\n- b\n").is_err());
        assert!(settings("a: [").is_err());
    }
}

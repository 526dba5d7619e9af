//! What `wharf events` shows: per endpoint, the events waiting for delivery (with their
//! attempts and last error) and the recent deliveries and failures.

use std::fmt::Write as _;

use super::record::{Finished, Folders, Pending, StoredEvent};
use crate::config::NotificationsConfig;
use crate::registry::storage::{RecordKey, Storage, StorageResult};

/// The report, as text: one block per endpoint, one line per event, oldest first.
pub async fn report(config: &NotificationsConfig, storage: &dyn Storage) -> StorageResult<String> {
    let mut out = String::new();
    if config.endpoints.is_empty() {
        out.push_str("no [[notifications.endpoint]] configured\n");
    }
    for endpoint in &config.endpoints {
        let Some(folders) = Folders::of(&endpoint.name) else {
            continue;
        };
        let _ = writeln!(out, "endpoint {} ({})", endpoint.name, endpoint.url);
        for key in storage.list_records(&folders.pending).await? {
            if let Some(p) = read::<Pending>(storage, &key).await? {
                let status = match p.attempts {
                    0 => "pending".to_owned(),
                    n => format!("retrying (attempts {n})"),
                };
                line(&mut out, &status, &p.event, p.last_error.as_deref());
            }
        }
        for folder in [&folders.failed, &folders.done] {
            for key in storage.list_records(folder).await? {
                if let Some(f) = read::<Finished>(storage, &key).await? {
                    let status = format!("{} (attempts {})", f.status, f.attempts);
                    line(&mut out, &status, &f.event, f.last_error.as_deref());
                }
            }
        }
    }
    Ok(out)
}

async fn read<T: serde::de::DeserializeOwned>(
    storage: &dyn Storage,
    key: &RecordKey,
) -> StorageResult<Option<T>> {
    Ok(storage
        .read_record(key)
        .await?
        .and_then(|(bytes, _)| serde_json::from_slice(&bytes).ok()))
}

fn line(out: &mut String, status: &str, e: &StoredEvent, error: Option<&str>) {
    let time = time::OffsetDateTime::from(e.time())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let what = match (&e.tag, &e.digest) {
        (Some(tag), _) => format!("{}:{tag}", e.repository),
        (None, Some(d)) => format!("{}@{d}", e.repository),
        (None, None) => e.repository.clone(),
    };
    let _ = write!(
        out,
        "  {time}  {status:<24} {} {} {what}  id={}",
        e.action, e.kind, e.id
    );
    if let Some(error) = error {
        let _ = write!(out, "  last error: {error}");
    }
    out.push('\n');
}

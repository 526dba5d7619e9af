//! Which `[storage]` changes a reload (SIGHUP) cannot apply. A running engine keeps its
//! storage client (bucket, endpoint, credentials, part size, timeouts) for the uploads and
//! downloads in flight, and the purge of stale uploads runs with the maximum age it started
//! with, so changing any of these needs a restart. A reload that changes one is refused
//! whole, naming the keys, rather than reported as applied while the old values stay.

use super::{AzureConfig, S3Config, StorageBackend, StorageConfig};

impl StorageConfig {
    /// The keys whose change from `self` (running) to `new` needs a restart; empty when
    /// the reload can go ahead.
    pub fn keys_needing_restart(&self, new: &StorageConfig) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.upload_max_age != new.upload_max_age {
            keys.push("storage.upload_max_age");
        }
        match (&self.backend, &new.backend) {
            (StorageBackend::Filesystem, StorageBackend::Filesystem) => {}
            (StorageBackend::S3(a), StorageBackend::S3(b)) => s3_changes(a, b, &mut keys),
            (StorageBackend::Azure(a), StorageBackend::Azure(b)) => azure_changes(a, b, &mut keys),
            _ => keys.push("storage.backend"),
        }
        keys
    }
}

fn s3_changes(a: &S3Config, b: &S3Config, keys: &mut Vec<&'static str>) {
    let changed = [
        (a.bucket != b.bucket, "storage.s3.bucket"),
        (a.prefix != b.prefix, "storage.s3.prefix"),
        (a.region != b.region, "storage.s3.region"),
        (a.endpoint != b.endpoint, "storage.s3.endpoint"),
        (a.path_style != b.path_style, "storage.s3.path_style"),
        (a.credentials != b.credentials, "storage.s3 credentials"),
        (a.ca_file != b.ca_file, "storage.s3.ca_file"),
        (a.part_size != b.part_size, "storage.s3.part_size"),
        (
            a.conditional_writes != b.conditional_writes,
            "storage.s3.conditional_writes",
        ),
        (a.timeout != b.timeout, "storage.s3.timeout"),
    ];
    keys.extend(changed.iter().filter(|(c, _)| *c).map(|(_, k)| *k));
}

fn azure_changes(a: &AzureConfig, b: &AzureConfig, keys: &mut Vec<&'static str>) {
    let changed = [
        (a.account != b.account, "storage.azure.account"),
        (a.container != b.container, "storage.azure.container"),
        (a.prefix != b.prefix, "storage.azure.prefix"),
        (a.endpoint != b.endpoint, "storage.azure.endpoint"),
        (a.credentials != b.credentials, "storage.azure credentials"),
        (a.ca_file != b.ca_file, "storage.azure.ca_file"),
        (a.part_size != b.part_size, "storage.azure.part_size"),
        (a.timeout != b.timeout, "storage.azure.timeout"),
    ];
    keys.extend(changed.iter().filter(|(c, _)| *c).map(|(_, k)| *k));
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn storage(toml: &str) -> super::StorageConfig {
        let base = "[[listener]]\naddress = \"127.0.0.1:0\"\n";
        Config::from_toml(&format!("{base}{toml}"), "test")
            .unwrap()
            .storage
    }

    const S3: &str = "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"bbb\"\nregion = \"r\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";

    #[test]
    fn unchanged_storage_reloads_and_each_changed_key_is_named() {
        let fs = storage("[storage]\nroot = \"/srv\"\n");
        assert!(fs.keys_needing_restart(&fs).is_empty());
        let older = storage("[storage]\nroot = \"/srv\"\nupload_max_age = \"2h\"\n");
        assert_eq!(fs.keys_needing_restart(&older), ["storage.upload_max_age"]);
        let s3 = storage(S3);
        assert_eq!(fs.keys_needing_restart(&s3), ["storage.backend"]);
        assert!(s3.keys_needing_restart(&storage(S3)).is_empty());
        let moved = storage(&S3.replace("\"bbb\"", "\"ccc\"").replace("\"s\"", "\"t\""));
        assert_eq!(
            s3.keys_needing_restart(&moved),
            ["storage.s3.bucket", "storage.s3 credentials"]
        );
        let parts = storage(&format!("{S3}part_size = 16777216\n"));
        assert_eq!(s3.keys_needing_restart(&parts), ["storage.s3.part_size"]);
    }
}

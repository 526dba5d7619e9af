//! `[storage.azure]`: one container of an Azure Blob Storage account (or Azurite). The keys
//! it shares with `[storage.s3]` (prefix, endpoint, part_size, ca_file, timeout) follow the
//! same rules, checked by `storage::Common`.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawAzure;
use super::storage::{secret_source, Common, Fields, SecretSource};
use super::{Check, ConfigError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureConfig {
    pub account: String,
    pub container: String,
    /// Prepended to every blob name, without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// The account's blob service URL, for Azurite or sovereign clouds; `None` means
    /// `https://<account>.blob.core.windows.net`. For Azurite it ends in the account:
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    pub credentials: AzureCredentials,
    /// Extra CA certificates (PEM) to trust for a private endpoint.
    pub ca_file: Option<PathBuf>,
    /// Size of the blocks of a chunked upload, and so the most an upload buffers.
    pub part_size: u64,
    /// As `storage.s3.timeout`: the deadline of one request to the store.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureCredentials {
    /// The storage account's shared key (base64), signing every request.
    AccessKey(SecretSource),
    /// A SAS token (the query string, with or without the leading `?`).
    SasToken(SecretSource),
    /// What object_store reads from `AZURE_*` variables (an access key, a client secret,
    /// workload identity, ...), else the VM's managed identity.
    Environment,
}

pub(super) fn validate(check: &Check<'_>, raw: &RawAzure) -> Result<AzureConfig, ConfigError> {
    let account = raw.account.clone().unwrap_or_default();
    let account_ok = (3..=24).contains(&account.len())
        && account
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !account_ok {
        return Err(check.invalid(
            "storage.azure.account",
            format!("is {account:?}, not a storage account name"),
            "name the storage account: 3 to 24 lower-case letters and digits",
        ));
    }
    let container = raw.container.clone().unwrap_or_default();
    if !is_container_name(&container) {
        return Err(check.invalid(
            "storage.azure.container",
            format!("is {container:?}, not a container name"),
            "name an existing container: 3 to 63 lower-case letters, digits and single '-' between them",
        ));
    }
    let common = Common::validate(
        check,
        "azure",
        Fields {
            prefix: raw.prefix.as_deref(),
            endpoint: raw.endpoint.as_deref(),
            endpoint_example:
                "\"https://ACCOUNT.blob.core.usgovcloudapi.net\", or \"http://127.0.0.1:10000/devstoreaccount1\" for Azurite",
            part_size: raw.part_size,
            ca_file: raw.ca_file.as_deref(),
            timeout: raw.timeout.as_deref(),
        },
    )?;
    Ok(AzureConfig {
        account,
        container,
        prefix: common.prefix,
        endpoint: common.endpoint,
        credentials: credentials(check, raw)?,
        ca_file: common.ca_file,
        part_size: common.part_size,
        timeout: common.timeout,
    })
}

fn credentials(check: &Check<'_>, raw: &RawAzure) -> Result<AzureCredentials, ConfigError> {
    let key = secret_source(
        check,
        "storage.azure.access_key",
        "the storage account's access key",
        [&raw.access_key, &raw.access_key_file, &raw.access_key_env],
    )?;
    let sas = secret_source(
        check,
        "storage.azure.sas_token",
        "the SAS token",
        [&raw.sas_token, &raw.sas_token_file, &raw.sas_token_env],
    )?;
    match (key, sas) {
        (Some(_), Some(_)) => Err(check.invalid(
            "storage.azure.sas_token",
            "is set together with an access key",
            "use either an access key or a SAS token",
        )),
        (Some(k), None) => Ok(AzureCredentials::AccessKey(k)),
        (None, Some(s)) => Ok(AzureCredentials::SasToken(s)),
        (None, None) => Ok(AzureCredentials::Environment),
    }
}

/// Azure's rule: 3 to 63 of `[a-z0-9-]`, starting and ending with a letter or digit, no `--`.
fn is_container_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, StorageBackend};

    use super::*;

    fn azure(extra: &str) -> Result<Config, String> {
        Config::from_toml(
            &format!(
                "[storage]\nbackend = \"azure\"\n[storage.azure]\naccount = \"acct1\"\ncontainer = \"reg\"\n{extra}"
            ),
            "test",
        )
        .map_err(|e| e.to_string())
    }

    fn backend(c: &Config) -> &AzureConfig {
        match &c.storage.backend {
            StorageBackend::Azure(a) => a,
            _ => panic!("not azure"),
        }
    }

    #[test]
    fn azure_defaults() {
        let c = azure("").unwrap();
        let a = backend(&c);
        assert_eq!(a.credentials, AzureCredentials::Environment);
        assert_eq!((a.part_size, a.timeout), (8 << 20, Duration::from_secs(30)));
        assert_eq!((a.prefix.as_str(), a.endpoint.as_deref()), ("", None));
        assert!(c.storage.root.as_os_str().is_empty());
    }

    #[test]
    fn account_must_be_an_account_name() {
        let e = Config::from_toml(
            "[storage]\nbackend = \"azure\"\n[storage.azure]\ncontainer = \"reg\"",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("storage.azure.account"), "{e}");
        let e = Config::from_toml(
            "[storage]\nbackend = \"azure\"\n[storage.azure]\naccount = \"My-Acct\"\ncontainer = \"reg\"",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a storage account name"), "{e}");
    }

    #[test]
    fn container_must_be_a_container_name() {
        for bad in ["", "ab", "Reg", "a--b", "-ab", "ab-", "a_b"] {
            let e = Config::from_toml(
                &format!("[storage]\nbackend = \"azure\"\n[storage.azure]\naccount = \"acct1\"\ncontainer = {bad:?}"),
                "t",
            )
            .unwrap_err();
            assert!(
                e.to_string().contains("storage.azure.container"),
                "{bad}: {e}"
            );
        }
        assert!(is_container_name("wharf-reg-1"));
    }

    #[test]
    fn backend_and_table_must_agree() {
        let e = Config::from_toml("[storage]\nbackend = \"azure\"", "t").unwrap_err();
        assert!(e.to_string().contains("[storage.azure]"), "{e}");
        let e = Config::from_toml(
            "[storage.azure]\naccount = \"acct1\"\ncontainer = \"reg\"",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("add backend = \"azure\""), "{e}");
        let e = azure("[storage.s3]\nbucket = \"reg\"").unwrap_err();
        assert!(e.contains("storage.s3"), "{e}");
    }

    #[test]
    fn root_is_refused_with_azure() {
        let e = Config::from_toml(
            "[storage]\nbackend = \"azure\"\nroot = \"./data\"\n[storage.azure]\naccount = \"acct1\"\ncontainer = \"reg\"",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("storage.azure.prefix"), "{e}");
    }

    #[test]
    fn shared_keys_are_named_under_azure() {
        assert_eq!(backend(&azure("prefix = \"/a/b/\"").unwrap()).prefix, "a/b");
        for (extra, key) in [
            ("prefix = \"a/../b\"", "storage.azure.prefix"),
            ("endpoint = \"127.0.0.1:10000\"", "storage.azure.endpoint"),
            ("part_size = 1024", "storage.azure.part_size"),
            ("timeout = \"1h\"", "storage.azure.timeout"),
            ("ca_file = \"/no/such.pem\"", "storage.azure.ca_file"),
        ] {
            let e = azure(extra).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let c = azure("endpoint = \"http://127.0.0.1:10000/devstoreaccount1\"").unwrap();
        assert!(backend(&c).endpoint.is_some());
    }

    #[test]
    fn access_key_comes_from_one_place() {
        let c = azure("access_key = \"a2V5\"").unwrap();
        assert!(matches!(
            backend(&c).credentials,
            AzureCredentials::AccessKey(SecretSource::Inline(_))
        ));
        let e = azure("access_key = \"k\"\naccess_key_env = \"X\"").unwrap_err();
        assert!(e.contains("more than once"), "{e}");
        let e = azure("access_key_file = \"/no/such\"").unwrap_err();
        assert!(e.contains("storage.azure.access_key_file"), "{e}");
        let e = azure("access_key_env = \"WHARF_SURELY_UNSET\"").unwrap_err();
        assert!(e.contains("storage.azure.access_key_env"), "{e}");
    }

    #[test]
    fn sas_token_or_access_key_not_both() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let path = f.path().display().to_string();
        let c = azure(&format!("sas_token_file = {path:?}")).unwrap();
        assert_eq!(
            backend(&c).credentials,
            AzureCredentials::SasToken(SecretSource::File(f.path().into()))
        );
        let e = azure("sas_token = \"sv=1\"\naccess_key = \"k\"").unwrap_err();
        assert!(e.contains("either"), "{e}");
    }

    #[test]
    fn azure_secrets_never_show_in_debug_output() {
        let c = azure("access_key = \"hunter2\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = azure("sas_token = \"sig=hunter3\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter3"));
    }
}

//! Building the Azure Blob Storage client from `[storage.azure]`: account, container,
//! endpoint and credentials. Nothing here talks to the network.
//!
//! What Azure gives that the backend relies on (see `uploads.rs`): `put_part` stages a
//! block under a random block id and `complete_multipart` commits the recorded ids with
//! Put Block List, so a block staged by a losing concurrent append is never committed
//! (uncommitted blocks expire after a week; there is nothing to abort). `If-Match` on
//! Put Blob serialises appends. Copy Blob publishes a finished upload: Azure may answer it
//! with a copy still pending, and object_store does not wait for one. Azurite always
//! completes copies before answering; whether Azure ever leaves a same-account copy of a
//! committed block blob pending has not been checked, so that is the assumption to test on
//! real Azure before trusting large blobs to it.

use std::io;

use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use super::client;
use crate::config::{AzureConfig, AzureCredentials};

pub fn client(config: &AzureConfig) -> io::Result<MicrosoftAzure> {
    // Only without credentials of its own does wharf look at the AZURE_* variables, so a
    // stray variable never overrides the configured key.
    let builder = match config.credentials {
        AzureCredentials::Environment => MicrosoftAzureBuilder::from_env(),
        _ => MicrosoftAzureBuilder::new(),
    };
    let mut builder = builder
        .with_account(&config.account)
        .with_container_name(&config.container)
        .with_client_options(client::options(
            "azure",
            config.endpoint.as_deref(),
            config.ca_file.as_deref(),
        )?)
        .with_retry(client::retry());
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    builder = match &config.credentials {
        AzureCredentials::AccessKey(key) => {
            builder.with_access_key(client::secret("storage.azure.access_key", key)?)
        }
        AzureCredentials::SasToken(token) => {
            let token = client::secret("storage.azure.sas_token", token)?;
            builder.with_sas_authorization(sas_pairs(&token))
        }
        AzureCredentials::Environment => builder,
    };
    // object_store's errors name the problem (a key that is not base64, ...), never the key.
    builder.build().map_err(io::Error::other)
}

/// A SAS token's query pairs, as the portal and `az` print it (with or without `?`).
fn sas_pairs(token: &str) -> Vec<(String, String)> {
    let token = token.trim().trim_start_matches('?');
    form_urlencoded::parse(token.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_tokens_are_split_into_decoded_pairs() {
        let pairs = sas_pairs("?sv=2022-11-02&sig=a%2Bb%3D\n");
        assert_eq!(
            pairs,
            [
                ("sv".into(), "2022-11-02".into()),
                ("sig".into(), "a+b=".into())
            ]
        );
    }
}

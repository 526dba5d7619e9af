//! Checking a leaf the way a client will: webpki path validation against the CA, for every
//! name and address, at a chosen moment.
//!
//! Used right after issuing (so a name outside the CA's name constraints fails at
//! `wharf cert issue`, not at `docker login`) and when deciding whether an existing leaf
//! can be reused (checked 30 days ahead, so it is renewed before it runs out).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Why a leaf does not validate: the name it was checked for, and webpki's reason.
#[derive(Debug)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

/// Verifies `chain` (leaf first) against `ca` for each of `names` and `ips` at `at`.
pub fn verify_leaf(
    ca: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    names: &[String],
    ips: &[IpAddr],
    at: UnixTime,
) -> Result<(), Rejected> {
    let rejected = |name: &str, reason: String| Rejected {
        name: name.to_string(),
        reason,
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(rejected("the chain", "it is empty".into()));
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| rejected("the CA", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rejected("the CA", e.to_string()))?;
    let targets = names
        .iter()
        .map(|n| (n.clone(), probe_name(n)))
        .chain(ips.iter().map(|ip| (ip.to_string(), ip.to_string())));
    for (shown, probe) in targets {
        let server_name =
            ServerName::try_from(probe).map_err(|e| rejected(&shown, e.to_string()))?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], at)
            .map_err(|e| rejected(&shown, describe(&e)))?;
    }
    Ok(())
}

/// webpki's verdict in words; the common cases get a sentence, the rest rustls' text.
fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert_error) = e else {
        return e.to_string();
    };
    match cert_error {
        C::Expired | C::ExpiredContext { .. } => "it has expired (or will by then)".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the name is not among its subject alternative names".into()
        }
        C::UnknownIssuer | C::BadSignature => "it was not issued by this CA".into(),
        // webpki reports constraint violations as an "other" error; its Debug form is
        // the only place the kind shows.
        C::Other(other) if format!("{other:?}").contains("NameConstraintViolation") => {
            "it is outside the CA's name constraints".into()
        }
        other => other.to_string(),
    }
}

/// A client never asks for `*.example.com`, so a wildcard is checked with a name it covers.
fn probe_name(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(rest) => format!("wharf-probe.{rest}"),
        None => name.to_string(),
    }
}

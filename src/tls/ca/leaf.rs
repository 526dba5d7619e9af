//! Leaves for `self-signed` server blocks: issued once, reused across restarts, renewed
//! when they no longer fit.
//!
//! Reuse matters: clients that pinned or cached the certificate, and people comparing
//! fingerprints, should see the same leaf after every restart.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::UnixTime;

use super::files::{self, CERT_MODE, KEY_MODE};
use super::{names, verify, Ca, CaOptions, DEFAULT_LEAF_DAYS};
use crate::tls::error::TlsError;
use crate::tls::pem;

/// A leaf expiring within this many days is replaced.
pub const RENEW_BEFORE_DAYS: u64 = 30;

/// Where a leaf is, and whether this call wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFiles {
    /// The chain: the leaf, then the CA certificate.
    pub cert: PathBuf,
    /// The leaf's private key (mode 0600).
    pub key: PathBuf,
    /// True when a new leaf was issued, false when the existing one was kept.
    pub issued: bool,
}

/// Makes sure `<leaf_dir>/<name>.crt` and `.key` hold a leaf from the CA in `ca_dir` that
/// covers every one of `names` and `ips` for at least [`RENEW_BEFORE_DAYS`] more days.
/// Creates the CA (unconstrained) if there is none. Issues a new leaf when the files are
/// missing, unreadable, from another CA, short of a name, or about to expire; otherwise
/// keeps them.
pub fn ensure_leaf(
    ca_dir: &Path,
    leaf_dir: &Path,
    name: &str,
    names: &[String],
    ips: &[IpAddr],
) -> Result<LeafFiles, TlsError> {
    let ca = match Ca::load(ca_dir) {
        Err(TlsError::NoCa { .. }) => {
            tracing::info!(dir = %ca_dir.display(), "creating wharf's CA");
            Ca::create(ca_dir, &CaOptions::default())?
        }
        other => other?,
    };
    let stem = names::file_stem(name)?;
    let cert = leaf_dir.join(format!("{stem}.crt"));
    let key = leaf_dir.join(format!("{stem}.key"));
    match reusable(&ca, &cert, &key, names, ips) {
        Ok(()) => {
            return Ok(LeafFiles {
                cert,
                key,
                issued: false,
            })
        }
        Err(why) => {
            tracing::info!(cert = %cert.display(), reason = %why, "issuing a new certificate")
        }
    }
    let leaf = ca.issue(names, ips, DEFAULT_LEAF_DAYS)?;
    files::ensure_dir(leaf_dir)?;
    // Key first, then chain: a crash in between leaves a pair that does not match, which
    // the next start detects and reissues.
    files::write_atomic(&key, leaf.key_pem.as_bytes(), KEY_MODE)?;
    files::write_atomic(&cert, leaf.chain_pem.as_bytes(), CERT_MODE)?;
    Ok(LeafFiles {
        cert,
        key,
        issued: true,
    })
}

/// Why the existing files cannot be kept, as a sentence for the log.
fn reusable(
    ca: &Ca,
    cert: &Path,
    key: &Path,
    names: &[String],
    ips: &[IpAddr],
) -> Result<(), String> {
    if !cert.exists() && !key.exists() {
        return Err("there is none yet".into());
    }
    let chain = pem::load_certs(cert).map_err(|e| e.to_string())?;
    let key_der = pem::load_key(key).map_err(|e| e.to_string())?;
    pem::certified_key(chain.clone(), key_der, cert, key).map_err(|e| e.to_string())?;
    // Names are compared the way they were issued (lower case), so "Registry.test" in the
    // config does not force a new leaf at every start.
    let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let soon = UnixTime::now()
        .as_secs()
        .saturating_add(RENEW_BEFORE_DAYS * 24 * 3600);
    let at = UnixTime::since_unix_epoch(Duration::from_secs(soon));
    verify::verify_leaf(ca.cert_der(), &chain, &names, ips, at).map_err(|r| {
        format!(
            "it does not validate for {} in {RENEW_BEFORE_DAYS} days: {}",
            r.name, r.reason
        )
    })
}

//! wharf's own certificate authority: a P-256 CA kept as `<dir>/ca.crt` and `<dir>/ca.key`,
//! which issues server certificates for hosts that have no certificate from elsewhere.
//!
//! A private CA instead of self-signed leaves because docker, podman and the OS trust
//! stores all take one CA file per registry host; trusting the CA once keeps working when
//! the leaf is renewed or a name is added.

mod files;
mod leaf;
mod names;
mod trust;
mod verify;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use super::error::TlsError;
use super::pem;

pub use files::{write_atomic, CERT_MODE, KEY_MODE};
pub use leaf::{ensure_leaf, LeafFiles, RENEW_BEFORE_DAYS};
pub use names::file_stem;
pub use trust::{trust_hint, write_trust_dir, TrustHint, TRUST_DIR};

/// CA certificate file name inside the CA directory.
pub const CA_CERT: &str = "ca.crt";
/// CA key file name inside the CA directory.
pub const CA_KEY: &str = "ca.key";
/// How long a new CA is valid: long, because replacing it means re-trusting it everywhere.
pub const CA_DAYS: i64 = 3650;
/// The longest leaf validity Apple platforms accept (and so the longest worth issuing).
pub const MAX_LEAF_DAYS: u32 = 825;
/// Leaf validity unless asked otherwise.
pub const DEFAULT_LEAF_DAYS: u32 = MAX_LEAF_DAYS;

/// Certificates start an hour in the past, so a client whose clock is a little behind
/// does not see a not-yet-valid certificate.
const BACKDATE: Duration = Duration::hours(1);

/// How to create a CA.
#[derive(Debug, Clone, Default)]
pub struct CaOptions {
    /// Name constraints: DNS domains the CA may issue for (each covers names under it).
    /// When empty, DNS names are unconstrained.
    pub permit_dns: Vec<String>,
    /// Name constraints: IP ranges in CIDR notation the CA may issue for. When empty,
    /// IP addresses are unconstrained.
    pub permit_ip: Vec<String>,
    /// Replace an existing CA.
    pub force: bool,
}

/// A loaded CA, ready to issue.
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued leaf, in PEM.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    /// The leaf followed by the CA certificate: what a server presents.
    pub chain_pem: String,
    /// The leaf's PKCS#8 private key.
    pub key_pem: String,
    /// The subject alternative names, as `DNS:name` and `IP:addr`, for display.
    pub sans: Vec<String>,
    /// When the leaf stops being valid.
    pub not_after: OffsetDateTime,
}

impl Ca {
    /// Creates a CA in `dir` (created if missing) and writes `ca.key` (mode 0600), then
    /// `ca.crt`. Refuses to replace an existing CA unless `opts.force`.
    pub fn create(dir: &Path, opts: &CaOptions) -> Result<Ca, TlsError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !opts.force {
            if let Some(file) = [&cert_path, &key_path].into_iter().find(|p| p.exists()) {
                return Err(TlsError::CaExists {
                    dir: dir.to_path_buf(),
                    file: file.clone(),
                });
            }
        }
        let params = ca_params(opts)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(rcgen_err("generate the CA key"))?;
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("sign the CA certificate"))?;
        files::ensure_dir(dir)?;
        // Key first: a crash in between leaves a key without a certificate, which `load`
        // reports as "no CA", and `create` as an existing one, never a certificate whose
        // key is lost.
        files::write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        files::write_atomic(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
        write_trust_dir(dir)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA in `dir`, checking that its key belongs to its certificate.
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_bytes = match pem::read_file(&cert_path) {
            Err(TlsError::NotFound { path }) => {
                return Err(TlsError::NoCa {
                    dir: dir.to_path_buf(),
                    file: path,
                })
            }
            other => other?,
        };
        let cert_der = pem::certs_from_pem(&cert_bytes, &cert_path)?.swap_remove(0);
        let key_bytes = pem::read_file(&key_path)?;
        // Checked with rustls first: it reads every PEM key kind and names the mismatch.
        let key_der = pem::key_from_pem(&key_bytes, &key_path)?;
        pem::certified_key(vec![cert_der.clone()], key_der, &cert_path, &key_path)?;
        let key_text = String::from_utf8_lossy(&key_bytes);
        let bad_key = |e: rcgen::Error| TlsError::BadKey {
            path: key_path.clone(),
            reason: format!("{e} (wharf's CA key must be an unencrypted PKCS#8 EC or RSA key)"),
        };
        let key = KeyPair::from_pem(&key_text).map_err(bad_key)?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| TlsError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem: String::from_utf8_lossy(&cert_bytes).into_owned(),
            cert_der,
            issuer,
        })
    }

    /// Issues a server certificate for every name and address, valid for `days`
    /// (1 to [`MAX_LEAF_DAYS`]), with a new P-256 key. The subject's CN is the first name
    /// (or address). The result is checked with webpki before it is returned.
    pub fn issue(
        &self,
        names: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<IssuedLeaf, TlsError> {
        if days == 0 || days > MAX_LEAF_DAYS {
            return Err(TlsError::InvalidDays {
                days,
                max: MAX_LEAF_DAYS,
            });
        }
        let names = validated_names(names)?;
        let ips = dedup(ips.to_vec());
        let (params, sans) = leaf_params(&names, &ips, days)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(rcgen_err("generate the certificate key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_err("sign the certificate"))?;
        let chain = [cert.der().clone(), self.cert_der.clone()];
        if let Err(rejected) =
            verify::verify_leaf(&self.cert_der, &chain, &names, &ips, UnixTime::now())
        {
            // webpki checks the constraints against every SAN whichever name is asked
            // for, so its answer does not say which name is at fault; find it.
            let culprit = self.culprit(&names, &ips, &key).unwrap_or(rejected.name);
            return Err(TlsError::LeafRejected {
                name: culprit,
                reason: rejected.reason,
            });
        }
        Ok(IssuedLeaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            sans,
            not_after: params.not_after,
        })
    }

    /// The first name or address that does not validate in a certificate of its own.
    fn culprit(&self, names: &[String], ips: &[IpAddr], key: &KeyPair) -> Option<String> {
        let singles = names
            .iter()
            .map(|n| (std::slice::from_ref(n), &[][..], n.clone()))
            .chain(
                ips.iter()
                    .map(|ip| (&[][..], std::slice::from_ref(ip), ip.to_string())),
            );
        for (names, ips, shown) in singles {
            let (params, _) = leaf_params(names, ips, 1).ok()?;
            let cert = params.signed_by(key, &self.issuer).ok()?;
            let chain = [cert.der().clone()];
            if verify::verify_leaf(&self.cert_der, &chain, names, ips, UnixTime::now()).is_err() {
                return Some(shown);
            }
        }
        None
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate (the file clients must trust).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Path of the CA's private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY)
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate, as `openssl x509 -fingerprint -sha256` prints it
    /// (`AB:CD:…`), so a person can compare it with what a client shows.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.cert_der.as_ref());
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }
}

/// Shows where the CA is and which one it is; never the key.
impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn ca_params(opts: &CaOptions) -> Result<CertificateParams, TlsError> {
    let mut permitted = Vec::new();
    for suffix in &opts.permit_dns {
        permitted.push(GeneralSubtree::DnsName(names::dns_suffix(suffix)?));
    }
    for cidr in &opts.permit_ip {
        permitted.push(GeneralSubtree::IpAddress(names::cidr(cidr)?));
    }
    let mut params = CertificateParams::default();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_DAYS);
    // A random tag tells two wharf CAs apart in a trust store listing.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    params.distinguished_name = distinguished_name(&format!("wharf CA {}", &tag[..8]));
    // Path length 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if !permitted.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: Vec::new(),
        });
    }
    Ok(params)
}

/// A server certificate's parameters for already validated `names` and `ips`, and its
/// SANs for display.
fn leaf_params(
    names: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<(CertificateParams, Vec<String>), TlsError> {
    let cn = match (names.first(), ips.first()) {
        (Some(name), _) => name.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => return Err(TlsError::NoNames),
    };
    let mut params = CertificateParams::default();
    params.not_before = OffsetDateTime::now_utc() - BACKDATE;
    // Measured from not_before: the limit clients enforce is on the whole period.
    params.not_after = params.not_before + Duration::days(i64::from(days));
    params.distinguished_name = distinguished_name(&cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let mut sans = Vec::new();
    for name in names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| TlsError::InvalidName {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
        sans.push(format!("DNS:{name}"));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
        sans.push(format!("IP:{ip}"));
    }
    Ok((params, sans))
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wharf");
    dn.push(DnType::CommonName, cn);
    dn
}

fn validated_names(names: &[String]) -> Result<Vec<String>, TlsError> {
    let names = names
        .iter()
        .map(|n| names::dns_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup(names))
}

/// Removes repeats, keeping the first occurrence (the first name is the CN).
fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn rcgen_err(action: &'static str) -> impl Fn(rcgen::Error) -> TlsError {
    move |cause| TlsError::Rcgen { action, cause }
}

#[cfg(test)]
mod tests;

//! PEM loading: certificate chains and private keys from files, and the rustls
//! `CertifiedKey` a server presents, checked so a wrong file fails at start-up and not at
//! the first handshake.

use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsError;

/// Reads a whole file, telling a missing file apart from other I/O errors.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TlsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            path: path.to_path_buf(),
            cause: source,
        },
    })
}

/// Every CERTIFICATE block of a PEM file, in file order: the server's own certificate
/// first, then the intermediates. Other blocks are skipped.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(&read_file(path)?, path)
}

/// The first private key in a PEM file: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or
/// PKCS#1 (`RSA PRIVATE KEY`).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from_pem(&read_file(path)?, path)
}

/// Loads a chain and its key and checks that they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    certified_key(chain, key, cert_path, key_path)
}

/// `path` is only used in errors.
pub fn certs_from_pem(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, path))?;
    if certs.is_empty() {
        // A swapped --cert/--key pair is the usual cause; say so when it is cheap to tell.
        let hint = match contains(bytes, b"PRIVATE KEY-----") {
            true => " (it holds a private key: are the certificate and key files swapped?)",
            false => "",
        };
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(certs)
}

/// `path` is only used in errors.
pub fn key_from_pem(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let hint = if contains(bytes, b"BEGIN ENCRYPTED PRIVATE KEY") {
                " (it holds an encrypted key, which wharf cannot use: decrypt it with `openssl pkey -in KEY -out PLAIN.key`)"
            } else if contains(bytes, b"BEGIN CERTIFICATE") {
                " (it holds a certificate: are the certificate and key files swapped?)"
            } else {
                ""
            };
            Err(TlsError::NoKey {
                path: path.to_path_buf(),
                hint,
            })
        }
        Err(e) => Err(pem_error(e, path)),
    }
}

/// Builds what a rustls server presents from a chain (leaf first) and its key, with the
/// ring provider, and refuses a key that does not belong to the leaf. The paths only
/// name the files in errors.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
            hint: "",
        });
    }
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // ring's keys all know their public half, but rustls allows keys that do not; such
        // a key cannot be checked here and the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
                hint: misorder_hint(&certified),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// When the key belongs to a later certificate of the chain, the file is in the wrong
/// order; that is worth saying, since the fix is then a reorder and not another key.
fn misorder_hint(certified: &CertifiedKey) -> String {
    for (i, cert) in certified.cert.iter().enumerate().skip(1) {
        let probe = CertifiedKey::new(vec![cert.clone()], certified.key.clone());
        if probe.keys_match().is_ok() {
            return format!(
                " (it belongs to certificate #{} of the file: the server's own certificate must come first)",
                i + 1
            );
        }
    }
    String::new()
}

fn pem_error(e: pem::Error, path: &Path) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            cause: source,
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: describe(&other),
        },
    }
}

fn describe(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("missing {:?}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed line {:?}", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(reason) => format!("bad base64: {reason}"),
        other => other.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ca::{Ca, CaOptions};

    /// A CA in a temp dir and one leaf from it, written as files.
    struct Fixture {
        dir: tempfile::TempDir,
        ca: Ca,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca = Ca::create(dir.path(), &CaOptions::default()).unwrap();
            Fixture { dir, ca }
        }

        /// Writes a new leaf for `registry.test` as `<stem>.crt` / `<stem>.key`.
        fn leaf(&self, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
            let leaf = self
                .ca
                .issue(&["registry.test".to_string()], &[], 30)
                .unwrap();
            let (crt, key) = (
                self.path(&format!("{stem}.crt")),
                self.path(&format!("{stem}.key")),
            );
            std::fs::write(&crt, leaf.chain_pem).unwrap();
            std::fs::write(&key, leaf.key_pem).unwrap();
            (crt, key)
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
            let path = self.path(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    fn message(e: TlsError) -> String {
        e.to_string()
    }

    #[test]
    fn loads_a_chain_leaf_first_and_its_key() {
        let f = Fixture::new();
        let (crt, key) = f.leaf("leaf");
        let chain = load_certs(&crt).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(&chain[1], f.ca.cert_der(), "the CA comes after the leaf");
        assert!(matches!(load_key(&key).unwrap(), PrivateKeyDer::Pkcs8(_)));
        let certified = load_certified_key(&crt, &key).unwrap();
        assert_eq!(certified.cert.len(), 2);
    }

    #[test]
    fn a_missing_file_is_named() {
        let f = Fixture::new();
        let missing = f.path("nope.crt");
        let err = load_certs(&missing).unwrap_err();
        assert!(matches!(err, TlsError::NotFound { .. }));
        assert!(message(err).contains("nope.crt"));
        assert!(message(load_key(&f.path("nope.key")).unwrap_err()).contains("nope.key"));
    }

    #[test]
    fn swapped_files_are_recognised() {
        let f = Fixture::new();
        let (crt, key) = f.leaf("leaf");
        let err = message(load_certs(&key).unwrap_err());
        assert!(err.contains("leaf.key") && err.contains("swapped"), "{err}");
        let err = message(load_key(&crt).unwrap_err());
        assert!(err.contains("leaf.crt") && err.contains("swapped"), "{err}");
    }

    #[test]
    fn empty_broken_and_encrypted_files_are_explained() {
        let f = Fixture::new();
        let empty = f.write("empty.pem", "");
        let err = message(load_certs(&empty).unwrap_err());
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let err = message(load_key(&empty).unwrap_err());
        assert!(
            err.contains("empty.pem") && err.contains("no private key"),
            "{err}"
        );

        let truncated = f.write("cut.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        let err = message(load_certs(&truncated).unwrap_err());
        assert!(
            err.contains("cut.crt") && err.contains("not valid PEM"),
            "{err}"
        );

        let encrypted = f.write(
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = message(load_key(&encrypted).unwrap_err());
        assert!(
            err.contains("enc.key") && err.contains("encrypted"),
            "{err}"
        );

        let junk = f.write(
            "junk.key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let (crt, _) = f.leaf("leaf");
        let err = message(load_certified_key(&crt, &junk).unwrap_err());
        assert!(
            err.contains("junk.key") && err.contains("unusable private key"),
            "{err}"
        );
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let f = Fixture::new();
        let (crt_a, _) = f.leaf("a");
        let (_, key_b) = f.leaf("b");
        let err = load_certified_key(&crt_a, &key_b).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let err = message(err);
        assert!(err.contains("a.crt") && err.contains("b.key"), "{err}");
    }

    #[test]
    fn a_chain_in_the_wrong_order_is_explained() {
        let f = Fixture::new();
        let (crt, key) = f.leaf("leaf");
        let chain = std::fs::read_to_string(&crt).unwrap();
        let split = chain.find("-----END CERTIFICATE-----\n").unwrap() + 26;
        let reversed = f.write(
            "rev.crt",
            &format!("{}{}", &chain[split..], &chain[..split]),
        );
        let err = message(load_certified_key(&reversed, &key).unwrap_err());
        assert!(
            err.contains("certificate #2") && err.contains("first"),
            "{err}"
        );
    }
}

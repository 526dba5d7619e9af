//! Test certificates made with rcgen at run time (nothing committed): a CA and leaves for
//! the test vhosts, plus HTTPS clients that trust that CA and resolve names to the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf written to disk: its PEM paths and its DER, to compare with what a server presents.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wharf test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        Self {
            dir,
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Issues a leaf for `names` (DNS names or IPs) and writes `<file>.crt` / `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{file}.crt")),
            self.dir.path().join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
        }
    }
}

/// An HTTPS client trusting `ca_pem`, resolving each name to `addr`, exposing TLS info.
pub fn https_client(ca_pem: &str, names: &[&str], addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none());
    for n in names {
        b = b.resolve(n, addr);
    }
    b.build().unwrap()
}

/// The DER of the certificate the server presented.
pub fn peer_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("a TLS response carries the peer certificate")
        .to_vec()
}

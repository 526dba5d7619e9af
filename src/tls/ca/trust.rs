//! Making clients trust wharf's CA: the folder to hand to `--cert-dir`, and the commands
//! for docker, podman/skopeo/buildah, containerd and the OS trust stores.

use std::path::{Path, PathBuf};

use super::files::{ensure_dir, write_atomic, CERT_MODE};
use super::{pem, CA_CERT};
use crate::tls::error::TlsError;

/// The folder inside the CA directory that holds only `ca.crt`, ready for `podman
/// --cert-dir` and `skopeo --cert-dir`. The CA directory itself will not do: those clients
/// read every `*.key` in a cert dir as a client key and fail without its `.cert`.
pub const TRUST_DIR: &str = "trust";

/// Writes `<ca_dir>/trust/ca.crt` from `<ca_dir>/ca.crt` (again, so it follows a replaced
/// CA) and returns the folder.
pub fn write_trust_dir(ca_dir: &Path) -> Result<PathBuf, TlsError> {
    let cert = pem::read_file(&ca_dir.join(CA_CERT))?;
    let dir = ca_dir.join(TRUST_DIR);
    ensure_dir(&dir)?;
    write_atomic(&dir.join(CA_CERT), &cert, CERT_MODE)?;
    Ok(dir)
}

/// What a client machine needs to trust wharf's CA for one registry address; [`trust_hint`]
/// words it as commands, `wharf serve` logs it as fields when logging JSON.
#[derive(Debug, Clone)]
pub struct TrustHint {
    /// The CA certificate, absolute when it exists.
    pub ca: PathBuf,
    /// The folder holding only the certificate, for `--cert-dir`.
    pub cert_dir: PathBuf,
    /// The names of the `certs.d` folders clients look in for this registry.
    pub certs_d: Vec<String>,
}

impl TrustHint {
    pub fn new(ca_cert: &Path, host_port: &str) -> Self {
        let ca = std::fs::canonicalize(ca_cert).unwrap_or_else(|_| ca_cert.to_path_buf());
        let cert_dir = ca.parent().unwrap_or(Path::new(".")).join(TRUST_DIR);
        Self {
            ca,
            cert_dir,
            certs_d: certs_d_names(host_port),
        }
    }
}

/// docker, podman and containerd name the folder after the registry as the image reference
/// writes it. On port 443 the port is usually left out (`HOST/team/app` → `certs.d/HOST`)
/// but may be written (`HOST:443/team/app` → `certs.d/HOST:443`), so both are needed.
fn certs_d_names(host_port: &str) -> Vec<String> {
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
        {
            (h, Some(p))
        }
        _ => (host_port, None),
    };
    match port {
        None | Some("443") => vec![host.to_owned(), format!("{host}:443")],
        Some(p) => vec![format!("{host}:{p}")],
    }
}

/// The commands that make docker, podman/skopeo/buildah, containerd and the OS trust
/// `ca_cert` for a registry at `host_port`. `wharf cert trust` prints it, and so does
/// `wharf serve` at start-up (on a text log) for hosts using wharf's CA.
pub fn trust_hint(ca_cert: &Path, host_port: &str) -> String {
    let hint = TrustHint::new(ca_cert, host_port);
    let ca = shell_quote(&hint.ca.display().to_string());
    let cert_dir = shell_quote(&hint.cert_dir.display().to_string());
    let copies = |root: &str| {
        let mut out = String::new();
        for name in &hint.certs_d {
            let dir = shell_quote(&format!("{root}/{name}"));
            out += &format!("  sudo mkdir -p {dir} && sudo cp {ca} {dir}/ca.crt\n");
        }
        out
    };
    let both = match hint.certs_d.len() {
        1 => String::new(),
        _ => format!(
            "On port 443 clients look in a folder named {} for images named without the port \
             and {} for images named with it, so each client gets both.\n",
            hint.certs_d[0], hint.certs_d[1]
        ),
    };
    let mut containerd = String::new();
    for name in &hint.certs_d {
        let dir = format!("/etc/containerd/certs.d/{name}");
        let server = format!("https://{}", name.strip_suffix(":443").unwrap_or(name));
        containerd += &format!(
            "  sudo mkdir -p {d} && sudo cp {ca} {d}/ca.crt\n  \
             printf '%s\\n' 'server = \"{server}\"' '[host.\"{server}\"]' '  ca = \"{dir}/ca.crt\"' \
             | sudo tee {d}/hosts.toml\n",
            d = shell_quote(&dir),
        );
    }
    format!(
        "To trust wharf's CA {ca} for {host_port}, run on each client machine \
         (copy the file there first).\n{both}\
         \n\
         docker:\n{docker}\
         \n\
         podman, skopeo, buildah (rootless: ~/.config/containers/certs.d/ works too):\n{podman}\
         \x20 or per command, the folder that holds only the CA certificate:\n\
         \x20   podman push --cert-dir {cert_dir} ...   skopeo copy --dest-cert-dir {cert_dir} ...\n\
         \n\
         containerd (its CRI config needs config_path = \"/etc/containerd/certs.d\"; ctr: --hosts-dir /etc/containerd/certs.d):\n\
         {containerd}\
         \n\
         the OS trust store (curl, oras, ...):\n\
         \x20 Debian/Ubuntu:\n\
         \x20   sudo cp {ca} /usr/local/share/ca-certificates/wharf-ca.crt\n\
         \x20   sudo update-ca-certificates\n\
         \x20 RHEL/Fedora:\n\
         \x20   sudo cp {ca} /etc/pki/ca-trust/source/anchors/wharf-ca.crt\n\
         \x20   sudo update-ca-trust\n",
        docker = copies("/etc/docker/certs.d"),
        podman = copies("/etc/containers/certs.d"),
    )
}

/// Quotes for a POSIX shell when needed, so printed commands can be pasted as they are.
fn shell_quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:+=@,".contains(c));
    match plain && !s.is_empty() {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}

//! `wharf cert`: create wharf's CA, issue server certificates from it, and print how to make
//! clients trust it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use wharf::tls::ca::{self, Ca, CaOptions, DEFAULT_LEAF_DAYS, KEY_MODE};
use wharf::tls::error::TlsError;
use wharf::tls::pem;

#[derive(Subcommand)]
pub enum CertCommand {
    /// Create wharf's CA: <dir>/ca.crt (give this to clients), <dir>/ca.key (mode 0600), and
    /// <dir>/trust/ca.crt, a folder holding only the certificate, for `--cert-dir`.
    Ca {
        /// Directory of the CA.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Only allow certificates for this domain and the names under it (repeatable).
        /// With none, DNS names are not constrained.
        #[arg(long = "permit-dns", value_name = "SUFFIX")]
        permit_dns: Vec<String>,
        /// Only allow certificates for addresses in this range (repeatable), e.g. 10.0.0.0/8.
        /// With none, IP addresses are not constrained.
        #[arg(long = "permit-ip", value_name = "CIDR")]
        permit_ip: Vec<String>,
        /// Replace an existing CA; certificates it issued stop validating.
        #[arg(long)]
        force: bool,
    },
    /// Issue a server certificate from wharf's CA: <dir>/<first name>.crt (leaf and CA) and .key.
    Issue {
        /// DNS names for the certificate; `*.example.com` is a wildcard. The first is the CN.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// IP addresses for the certificate (repeatable).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// Directory of the CA, where the certificate is written too.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Days of validity, at most 825.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// File name (without extension) instead of the first name.
        #[arg(long = "out-name", value_name = "NAME")]
        out_name: Option<String>,
    },
    /// Print the commands that make docker, podman/skopeo, containerd and the OS trust
    /// wharf's CA (and write <dir>/trust/, the folder for `--cert-dir`).
    Trust {
        /// The registry as clients address it, e.g. registry.example.com:5000.
        #[arg(value_name = "HOST:PORT")]
        host_port: String,
        /// Directory of the CA.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
}

pub fn run(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Ca {
            dir,
            permit_dns,
            permit_ip,
            force,
        } => create_ca(
            &dir,
            &CaOptions {
                permit_dns,
                permit_ip,
                force,
            },
        ),
        CertCommand::Issue {
            names,
            ips,
            dir,
            days,
            out_name,
        } => issue(&dir, &names, &ips, days, out_name.as_deref()),
        CertCommand::Trust { host_port, dir } => trust(&dir, &host_port),
    }
}

fn create_ca(dir: &Path, opts: &CaOptions) -> anyhow::Result<()> {
    let ca = Ca::create(dir, opts)?;
    println!(
        "wrote {} (certificate: give it to clients)",
        ca.cert_path().display()
    );
    println!(
        "wrote {} (private key, mode 0600: keep it here)",
        ca.key_path().display()
    );
    let trust = ca::TrustHint::new(&ca.cert_path(), "").cert_dir;
    println!(
        "wrote {}/{} (the certificate alone, for clients)",
        trust.display(),
        ca::CA_CERT
    );
    println!(
        "podman, skopeo, buildah per command: --cert-dir {}",
        trust.display()
    );
    println!("SHA-256 fingerprint: {}", ca.fingerprint());
    for suffix in &opts.permit_dns {
        println!("permitted DNS: {suffix} and names under it");
    }
    for cidr in &opts.permit_ip {
        println!("permitted IP range: {cidr}");
    }
    // Name constraints apply per kind of name: constraining one kind leaves the other open.
    match (opts.permit_dns.is_empty(), opts.permit_ip.is_empty()) {
        (false, true) => println!("note: IP addresses are not constrained (add --permit-ip)"),
        (true, false) => println!("note: DNS names are not constrained (add --permit-dns)"),
        _ => {}
    }
    Ok(())
}

fn issue(
    dir: &Path,
    names: &[String],
    ips: &[IpAddr],
    days: u32,
    out_name: Option<&str>,
) -> anyhow::Result<()> {
    let ca = Ca::load(dir)?;
    let first = match (out_name, names.first(), ips.first()) {
        (Some(name), _, _) => name.to_string(),
        (None, Some(name), _) => name.clone(),
        (None, None, Some(ip)) => ip.to_string(),
        (None, None, None) => anyhow::bail!(
            "name at least one DNS name or --ip address, e.g. `wharf cert issue registry.example.com`"
        ),
    };
    let stem = ca::file_stem(&first)?;
    let leaf = ca.issue(names, ips, days)?;
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    // Key first: a crash in between leaves a mismatched pair, which loading reports,
    // rather than a certificate whose key is gone.
    ca::write_atomic(&key, leaf.key_pem.as_bytes(), KEY_MODE)?;
    ca::write_atomic(&cert, leaf.chain_pem.as_bytes(), ca::CERT_MODE)?;
    println!("wrote {} (certificate, then the CA)", cert.display());
    println!("wrote {} (private key, mode 0600)", key.display());
    println!("subject alternative names: {}", leaf.sans.join(", "));
    println!("valid until {}", leaf.not_after.date());
    Ok(())
}

fn trust(dir: &Path, host_port: &str) -> anyhow::Result<()> {
    if host_port.is_empty() || host_port.contains(['/', ' ', '\'', '"']) {
        anyhow::bail!("{host_port:?} is not HOST:PORT, e.g. registry.example.com:5000");
    }
    let cert = dir.join(ca::CA_CERT);
    // Checked so the printed commands do not copy a file that is not there. Only the
    // certificate: this also works on a machine that has ca.crt without its key.
    if !cert.exists() {
        return Err(TlsError::NoCa {
            dir: dir.to_path_buf(),
            file: cert,
        }
        .into());
    }
    pem::load_certs(&cert)?;
    // The folder for --cert-dir, made again here for CAs made before it existed. A CA
    // directory this user cannot write (a copy of ca.crt elsewhere) only loses that folder.
    if let Err(e) = ca::write_trust_dir(dir) {
        eprintln!("note: {e}; --cert-dir needs a folder holding only ca.crt");
    }
    print!("{}", ca::trust_hint(&cert, host_port));
    Ok(())
}

//! `TlsError`: everything that can go wrong loading certificates or running wharf's CA.
//!
//! These are start-up and command-line errors, read by a person fixing a file, so each one
//! names the file (or the name, or the flag) and says what is wrong with it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },

    // The cause is part of the message, so it is not also the error's `source()`: a chain
    // printer (`{:#}`, anyhow) would say it twice.
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{path}: not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },

    #[error("{path} contains no CERTIFICATE block{hint}")]
    NoCertificate { path: PathBuf, hint: &'static str },

    #[error("{path} contains no private key (a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block){hint}")]
    NoKey { path: PathBuf, hint: &'static str },

    #[error("{path}: unusable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },

    #[error("{path}: unusable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },

    #[error("the private key in {key} does not belong to the first certificate in {cert}{hint}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        hint: String,
    },

    #[error("a CA already exists in {dir} ({file} is present); pass --force to replace it, after which certificates it issued no longer validate")]
    CaExists { dir: PathBuf, file: PathBuf },

    #[error("no CA in {dir} ({file} is missing); create one with `wharf cert ca --dir {dir}`")]
    NoCa { dir: PathBuf, file: PathBuf },

    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    #[error("invalid IP range {cidr:?}: {reason} (expected e.g. 10.0.0.0/8 or fd00::/8)")]
    InvalidCidr { cidr: String, reason: String },

    #[error("a certificate needs at least one DNS name or IP address")]
    NoNames,

    #[error("invalid file name {name:?}: {reason}")]
    InvalidFileName { name: String, reason: String },

    #[error("a leaf certificate may be valid for at most {max} days (clients reject longer ones), not {days}")]
    InvalidDays { days: u32, max: u32 },

    #[error("cannot issue a certificate for {name}: {reason}")]
    LeafRejected { name: String, reason: String },

    #[error("cannot {action}: {cause}")]
    Rcgen {
        action: &'static str,
        cause: rcgen::Error,
    },
}

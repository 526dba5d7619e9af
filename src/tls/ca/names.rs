//! Validation of what goes into certificates: DNS names (with wildcards), name-constraint
//! suffixes, IP ranges, and the file names certificates are stored under.
//!
//! Checked here, before rcgen, because rcgen accepts any IA5 string and a bad name would
//! otherwise surface only as a client refusing the certificate.

use std::net::IpAddr;

use rcgen::CidrSubnet;

use crate::tls::error::TlsError;

/// A DNS name for a certificate's SANs: letters, digits and hyphens in labels of at most 63
/// characters, optionally `*.` followed by at least two labels. Returned in lower case.
pub fn dns_name(name: &str) -> Result<String, TlsError> {
    let invalid = |reason: &str| TlsError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid("this is an IP address; pass it with --ip"));
    }
    let (wildcard, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    // Browsers and webpki only honour a wildcard as the whole left-most label, and refuse
    // it directly under a top-level domain.
    if wildcard && rest.split('.').count() < 2 {
        return Err(invalid(
            "a wildcard needs at least two labels after `*.` (e.g. *.example.com)",
        ));
    }
    check_labels(rest).map_err(|reason| invalid(&reason))?;
    Ok(name.to_ascii_lowercase())
}

/// A permitted DNS subtree for the CA's name constraints: a plain domain, which permits
/// itself and every name under it.
pub fn dns_suffix(suffix: &str) -> Result<String, TlsError> {
    check_labels(suffix).map_err(|reason| TlsError::InvalidName {
        name: suffix.to_string(),
        reason: format!("{reason} (a permitted suffix is a plain domain such as example.com, which covers every name under it)"),
    })?;
    Ok(suffix.to_ascii_lowercase())
}

fn check_labels(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    if name.ends_with('.') {
        return Err("remove the trailing dot".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if label.contains('*') {
            return Err("`*` is only allowed as the whole first label, as in *.example.com".into());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{c:?} is not allowed (letters, digits, hyphens and dots only; \
                 use the punycode form of international names)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with a hyphen"));
        }
    }
    Ok(())
}

/// An IP range in CIDR notation; a bare address is a range of one.
pub fn cidr(text: &str) -> Result<CidrSubnet, TlsError> {
    let invalid = |reason: String| TlsError::InvalidCidr {
        cidr: text.to_string(),
        reason,
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| invalid(format!("{addr:?} is not an IP address")))?;
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| invalid(format!("the prefix length must be 0 to {max}")))?,
    };
    let subnet = CidrSubnet::from_addr_prefix(addr, prefix);
    // A constraint of 10.0.0.5/8 is almost certainly a typo for 10.0.0.0/8; rather than
    // guess, say so.
    let network = network_of(subnet);
    if network != addr {
        return Err(invalid(format!(
            "host bits are set; did you mean {network}/{prefix}?"
        )));
    }
    Ok(subnet)
}

fn network_of(subnet: CidrSubnet) -> IpAddr {
    match subnet {
        CidrSubnet::V4(addr, mask) => {
            IpAddr::from(std::array::from_fn::<u8, 4, _>(|i| addr[i] & mask[i]))
        }
        CidrSubnet::V6(addr, mask) => {
            IpAddr::from(std::array::from_fn::<u8, 16, _>(|i| addr[i] & mask[i]))
        }
    }
}

/// The file stem a certificate for `name` is stored under: `*.example.com` becomes
/// `wildcard.example.com`, and anything but letters, digits, `.`, `-` and `_` becomes `_`
/// (IPv6 colons, path separators), so a name can never point outside the directory.
pub fn file_stem(name: &str) -> Result<String, TlsError> {
    let name = match name.strip_prefix("*.") {
        Some(rest) => format!("wildcard.{rest}"),
        None => name.to_string(),
    };
    let stem: String = name
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        return Err(TlsError::InvalidFileName {
            name,
            reason: "it must not be empty or start with a dot".into(),
        });
    }
    // Leaves usually live next to the CA; `ca.crt`/`ca.key` must never be overwritten by
    // one (compared without case for case-insensitive filesystems).
    if stem.eq_ignore_ascii_case("ca") {
        return Err(TlsError::InvalidFileName {
            name,
            reason:
                "`ca` is reserved for the CA's own files; choose another file name (--out-name)"
                    .into(),
        });
    }
    Ok(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_wildcard_names() {
        assert_eq!(
            dns_name("Registry.Example.com").unwrap(),
            "registry.example.com"
        );
        assert_eq!(dns_name("localhost").unwrap(), "localhost");
        assert_eq!(dns_name("*.example.com").unwrap(), "*.example.com");
        assert_eq!(
            dns_name("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for (name, reason) in [
            ("", "empty"),
            ("a..b", "empty label"),
            ("example.com.", "trailing dot"),
            ("-a.example", "hyphen"),
            ("a_b.example", "'_' is not allowed"),
            ("*.com", "at least two labels"),
            ("a.*.example.com", "whole first label"),
            ("*", "whole first label"),
            ("10.0.0.1", "--ip"),
            ("bücher.example", "punycode"),
        ] {
            let err = dns_name(name).unwrap_err().to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(dns_name(&long).unwrap_err().to_string().contains("63"));
    }

    #[test]
    fn suffixes_are_plain_domains() {
        assert_eq!(dns_suffix("Example.COM").unwrap(), "example.com");
        assert!(dns_suffix("*.example.com").is_err());
        assert!(dns_suffix(".example.com").is_err());
    }

    #[test]
    fn parses_cidrs() {
        assert_eq!(
            cidr("10.0.0.0/8").unwrap(),
            CidrSubnet::V4([10, 0, 0, 0], [255, 0, 0, 0])
        );
        assert_eq!(
            cidr("192.168.1.7").unwrap(),
            CidrSubnet::V4([192, 168, 1, 7], [255; 4])
        );
        assert!(matches!(cidr("fd00::/8").unwrap(), CidrSubnet::V6(..)));
        for (bad, reason) in [
            ("10.0.0.5/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("example.com/8", "not an IP address"),
            ("10.0.0.0/x", "prefix length"),
        ] {
            let err = cidr(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn file_stems_stay_in_the_directory() {
        assert_eq!(file_stem("*.example.com").unwrap(), "wildcard.example.com");
        assert_eq!(file_stem("registry.test").unwrap(), "registry.test");
        assert_eq!(file_stem("::1").unwrap(), "__1");
        assert!(file_stem("../etc/passwd")
            .unwrap_err()
            .to_string()
            .contains("dot"));
        assert_eq!(file_stem("a/b").unwrap(), "a_b");
        assert!(file_stem("").is_err());
        assert!(file_stem("CA")
            .unwrap_err()
            .to_string()
            .contains("reserved"));
    }
}

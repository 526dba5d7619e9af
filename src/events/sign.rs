//! Signed deliveries: `Wharf-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256 with the endpoint's secret over `<t>.<body>`. The time is signed too, so a
//! receiver that refuses old timestamps cannot be fed a recorded delivery again later.
//! README's "Verifying signatures" shows a receiver's check.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "wharf-signature";

/// The header value for `body` sent at `unix_seconds`.
pub fn signature(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret",b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
    }

    #[test]
    fn the_time_is_part_of_what_is_signed() {
        assert_ne!(
            signature(b"k", 1, b"body").split(",v1=").nth(1),
            signature(b"k", 2, b"body").split(",v1=").nth(1)
        );
    }
}

//! `limits.http2_stream_window` and `limits.http2_connection_window`: how many bytes an
//! HTTP/2 client may send ahead of what wharf has read.
//!
//! HTTP/2 lets a sender have at most one window of unacknowledged data in flight, so an
//! upload over one stream runs at no more than `window / round trip`. hyper's default of
//! 1 MiB allows 25 MB/s at a 40 ms round trip, while HTTP/1.1 over the same link is limited
//! only by TCP. The defaults here are a bandwidth-delay budget: 16 MiB per stream carries
//! 400 MB/s at 40 ms (or 100 MB/s at 160 ms). The windows are also what an upload may hold
//! in memory while wharf is not reading it, so they bound memory per stream and per
//! connection.

use super::raw::RawLimits;
use super::{Check, ConfigError};

/// The default window of one stream.
pub const DEFAULT_STREAM_WINDOW: u32 = 16 << 20;
/// The smallest window HTTP/2 allows (RFC 9113, 6.9.2), and the largest.
const MIN_WINDOW: u64 = 65_535;
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// The validated windows: `(stream, connection)`.
pub fn windows(check: &Check<'_>, raw: &RawLimits) -> Result<(u32, u32), ConfigError> {
    let stream = window(
        check,
        "limits.http2_stream_window",
        raw.http2_stream_window,
        u64::from(DEFAULT_STREAM_WINDOW),
    )?;
    // Twice one stream's, so that one stream whose body is not being read (it waits for a
    // session lock, say) cannot stall the other uploads on its connection.
    let connection = window(
        check,
        "limits.http2_connection_window",
        raw.http2_connection_window,
        (u64::from(stream) * 2).min(MAX_WINDOW),
    )?;
    if connection < stream {
        return Err(check.invalid(
            "limits.http2_connection_window",
            format!("is {connection}, smaller than limits.http2_stream_window ({stream})"),
            "make it at least as large as the stream window; by default it is twice that",
        ));
    }
    Ok((stream, connection))
}

fn window(
    check: &Check<'_>,
    key: &str,
    value: Option<u64>,
    default: u64,
) -> Result<u32, ConfigError> {
    let bytes = value.unwrap_or(default);
    match u32::try_from(bytes) {
        Ok(b) if (MIN_WINDOW..=MAX_WINDOW).contains(&bytes) => Ok(b),
        _ => Err(check.invalid(
            key,
            format!("is {bytes}, outside HTTP/2's 65535..=2147483647"),
            "give a number of bytes; 16777216 (16 MiB) suits a 40 ms round trip at 400 MB/s",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn limits(toml: &str) -> Result<(u32, u32), String> {
        Config::from_toml(toml, "test.toml")
            .map(|c| {
                (
                    c.limits.http2_stream_window,
                    c.limits.http2_connection_window,
                )
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_a_bandwidth_delay_budget() {
        assert_eq!(limits(""), Ok((16 << 20, 32 << 20)));
    }

    #[test]
    fn the_connection_window_follows_the_stream_window() {
        assert_eq!(
            limits("[limits]\nhttp2_stream_window = 4194304"),
            Ok((4 << 20, 8 << 20))
        );
        assert_eq!(
            limits("[limits]\nhttp2_stream_window = 2147483647"),
            Ok((i32::MAX as u32, i32::MAX as u32))
        );
    }

    #[test]
    fn windows_outside_http2s_range_are_errors() {
        let e = limits("[limits]\nhttp2_stream_window = 1000").unwrap_err();
        assert!(e.contains("limits.http2_stream_window"), "{e}");
        let e = limits("[limits]\nhttp2_connection_window = 4294967296").unwrap_err();
        assert!(e.contains("limits.http2_connection_window"), "{e}");
    }

    #[test]
    fn a_connection_window_below_the_stream_window_is_an_error() {
        let e =
            limits("[limits]\nhttp2_stream_window = 8388608\nhttp2_connection_window = 1048576")
                .unwrap_err();
        assert!(e.contains("smaller than limits.http2_stream_window"), "{e}");
    }
}

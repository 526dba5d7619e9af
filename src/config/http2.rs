//! `limits.http2_stream_window`, `limits.http2_connection_window` and
//! `limits.http2_window_budget`: how many bytes an HTTP/2 client may send ahead of what
//! wharf has read, per upload, per connection, and across all connections.
//!
//! HTTP/2 lets a sender have at most one window of unacknowledged data in flight, so an
//! upload over one stream runs at no more than `window / round trip`. hyper's default of
//! 1 MiB allows 25 MB/s at a 40 ms round trip, while HTTP/1.1 over the same link is limited
//! only by TCP. Less than the whole window is in flight, though: the h2 crate announces
//! bytes wharf has read only once they reach half of what the client may still send, so
//! about a quarter of the window is always read but not yet announced. Through a relay
//! adding 40 ms (curl, 256 MiB over TLS), 16 MiB arrived as ~11.5 MiB per round trip and
//! carried 240-260 MB/s against HTTP/1.1's 590-640; 32 MiB 390-400, 48 MiB 455-490, 64 MiB
//! 420-520, where the two cores (curl, the relay and wharf) were the limit rather than the
//! window. The default, 48 MiB, keeps ~35 MiB in flight: 900 MB/s at 40 ms, 230 at 160.
//!
//! The windows are also what an upload may hold in memory while wharf is not reading it
//! (the client may send a whole window before wharf takes a byte), so the stream window
//! bounds memory per upload and the connection window per connection; the budget bounds
//! their sum across connections (`server/window_budget.rs`).

use super::raw::RawLimits;
use super::{Check, ConfigError};

/// The default window of one stream.
pub const DEFAULT_STREAM_WINDOW: u32 = 48 << 20;
/// By default the budget gives this many connections their full windows at once.
const DEFAULT_BUDGET_CONNECTIONS: u64 = 4;
/// The smallest window HTTP/2 allows (RFC 9113, 6.9.2), and the largest.
const MIN_WINDOW: u64 = 65_535;
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// The validated windows and budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Windows {
    pub stream: u32,
    pub connection: u32,
    /// The most all connections' windows may add up to, in bytes.
    pub budget: u64,
}

pub fn windows(check: &Check<'_>, raw: &RawLimits) -> Result<Http2Windows, ConfigError> {
    let (stream, connection) = stream_and_connection(check, raw)?;
    let budget = raw
        .http2_window_budget
        .unwrap_or(u64::from(connection) * DEFAULT_BUDGET_CONNECTIONS);
    if budget < u64::from(connection) {
        return Err(check.invalid(
            "limits.http2_window_budget",
            format!("is {budget}, smaller than limits.http2_connection_window ({connection})"),
            "make it at least one connection window; by default it is four",
        ));
    }
    Ok(Http2Windows {
        stream,
        connection,
        budget,
    })
}

/// The validated windows: `(stream, connection)`.
fn stream_and_connection(check: &Check<'_>, raw: &RawLimits) -> Result<(u32, u32), ConfigError> {
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
            "give a number of bytes; 50331648 (48 MiB) suits a 40 ms round trip at 900 MB/s",
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

    fn budget(toml: &str) -> Result<u64, String> {
        Config::from_toml(toml, "test.toml")
            .map(|c| c.limits.http2_window_budget)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_a_bandwidth_delay_budget() {
        assert_eq!(limits(""), Ok((48 << 20, 96 << 20)));
    }

    #[test]
    fn the_budget_is_four_connection_windows_by_default() {
        assert_eq!(budget(""), Ok(4 * (96 << 20)));
        assert_eq!(
            budget("[limits]\nhttp2_stream_window = 4194304"),
            Ok(4 * (8 << 20))
        );
        assert_eq!(
            budget("[limits]\nhttp2_window_budget = 1073741824"),
            Ok(1 << 30)
        );
    }

    #[test]
    fn a_budget_below_one_connection_window_is_an_error() {
        let e = budget("[limits]\nhttp2_window_budget = 1048576").unwrap_err();
        assert!(e.contains("limits.http2_window_budget"), "{e}");
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

//! How hyper moves request bodies: HTTP/1.1's read buffer, HTTP/2's flow-control windows
//! and frame size. These decide how many bytes each read brings in, and over a long
//! round trip, how fast an HTTP/2 upload can go at all.

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use super::window_budget::Windows;
use crate::config::Limits;

/// The least hyper is told a head may take (HTTP/1.1 buffer, h2 header list).
const MIN_HEAD_LIMIT: usize = 64 * 1024;

/// hyper's read buffer bounds both the request head and each read of a body. A push reads
/// its body through it: at 128 KiB a GiB took 8.2 k `recvfrom` calls, at 512 KiB 2.2 k
/// (`strace -c`, loopback). hyper grows the buffer to this only while reads fill it, and
/// shrinks its reads again when they do not. Heads are still held to
/// `limits.max_header_bytes`, by the gateway.
const MIN_READ_BUFFER: usize = 512 * 1024;

/// hyper answers heads over its limit with its own 431, whose body is empty. Its limit is
/// set this far above `limits.max_header_bytes`, so heads a little over the configured
/// limit reach the gateway, which answers 431 with the OCI envelope on `/v2/` paths.
const HEAD_HEADROOM: usize = 64 * 1024;

/// The largest HTTP/2 frame a client may send. Go clients (docker, crane, containerd) send
/// DATA frames as large as the server allows, up to 512 KiB; each frame costs a header
/// parse and a trip through hyper, so 16 KiB frames (the protocol's default) cost four
/// times the work of 64 KiB ones. The frame is read whole into memory before it is
/// handed on, so this also bounds a connection's read buffer.
const HTTP2_MAX_FRAME: u32 = 256 * 1024;

/// hyper's HTTP/1.1 buffer limit: the most a request head may take, and each body read.
fn h1_buffer(limits: &Limits) -> usize {
    head_limit(limits).max(MIN_READ_BUFFER)
}

/// Heads a little over `limits.max_header_bytes` still reach the gateway's 431.
fn head_limit(limits: &Limits) -> usize {
    limits.max_header_bytes.max(MIN_HEAD_LIMIT) + HEAD_HEADROOM
}

/// The windows `limits` asks for, before the budget has its say.
pub fn wanted_windows(limits: &Limits) -> Windows {
    Windows {
        stream: limits.http2_stream_window,
        connection: limits.http2_connection_window,
    }
}

pub fn tune(builder: &mut auto::Builder<TokioExecutor>, limits: &Limits, windows: Windows) {
    builder.http1().max_buf_size(h1_buffer(limits));
    // Fixed windows rather than hyper's adaptive ones: those start at 64 KiB and double
    // once per round trip, so a push over a 40 ms link would spend its first 300 ms
    // crawling. See config/http2.rs for the sizes behind the defaults, and
    // window_budget.rs for how `windows` came from them.
    builder
        .http2()
        .initial_stream_window_size(windows.stream)
        .initial_connection_window_size(windows.connection)
        .max_frame_size(HTTP2_MAX_FRAME)
        .max_header_list_size(u32::try_from(head_limit(limits)).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml: &str) -> Limits {
        crate::config::Config::from_toml(toml, "t").unwrap().limits
    }

    /// A push reads its body through this buffer: at 128 KiB a GiB took 8 k `recvfrom`
    /// calls and as many trips through hyper and the body stream.
    #[test]
    fn body_reads_take_at_least_half_a_mebibyte() {
        assert!(h1_buffer(&limits("")) >= 512 * 1024);
    }

    /// Heads a little over the configured limit still reach the gateway's 431.
    #[test]
    fn the_head_limit_keeps_its_headroom() {
        let l = limits("[limits]\nmax_header_bytes = 1048576");
        assert!(h1_buffer(&l) >= 1048576 + HEAD_HEADROOM);
    }
}

//! How hyper moves request bodies: HTTP/1.1's read buffer, HTTP/2's flow-control windows
//! and frame size. These decide how many bytes each read brings in, and over a long
//! round trip, how fast an HTTP/2 upload can go at all.

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use crate::config::Limits;

/// hyper's read buffer bounds both the request head and each read of a body; below this,
/// uploads would be read in needlessly small pieces.
const MIN_READ_BUFFER: usize = 64 * 1024;

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

pub fn tune(builder: &mut auto::Builder<TokioExecutor>, limits: &Limits) {
    let head_limit = limits.max_header_bytes.max(MIN_READ_BUFFER) + HEAD_HEADROOM;
    builder.http1().max_buf_size(head_limit);
    // Fixed windows rather than hyper's adaptive ones: those start at 64 KiB and double
    // once per round trip, so a push over a 40 ms link would spend its first 300 ms
    // crawling. See config/http2.rs for the budget behind the defaults.
    builder
        .http2()
        .initial_stream_window_size(limits.http2_stream_window)
        .initial_connection_window_size(limits.http2_connection_window)
        .max_frame_size(HTTP2_MAX_FRAME)
        .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
}

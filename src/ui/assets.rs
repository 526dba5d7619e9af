//! The stylesheet and script, compiled into the binary: `cargo build` needs no npm.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::http_util::{full, Body, Reply};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// The asset at `name` under `/ui/static/`, if there is one.
pub fn serve(name: &str) -> Option<Response<Body>> {
    let (body, kind) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(
        Reply::new(StatusCode::OK)
            .header(CONTENT_TYPE, kind)
            .header(CONTENT_LENGTH, body.len())
            // A new binary may bring new assets; an hour of staleness is harmless.
            .header(CACHE_CONTROL, "public, max-age=3600")
            .body(full(body)),
    )
}

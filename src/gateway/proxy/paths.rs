//! Mapping request paths to the upstream, and `Location` paths back to the client.

/// Maps a request path to the upstream path: `base_path` (no trailing slash) + the part of
/// `path` after `route_prefix`, joined on a segment boundary.
pub(super) fn upstream_path(
    path: &str,
    route_prefix: &str,
    base_path: &str,
) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("it is not in origin form");
    }
    let prefix = route_prefix.strip_suffix('/').unwrap_or(route_prefix);
    let tail = match path.strip_prefix(prefix) {
        Some(tail) if tail.is_empty() || tail.starts_with('/') => tail,
        _ => return Err("it is not under the route prefix"),
    };
    if has_dot_segment(tail) {
        return Err("it has `.` or `..` segments");
    }
    Ok(non_empty(format!("{base_path}{tail}")))
}

/// The inverse of [`upstream_path`] for redirects: `None` if `path` is outside the base.
pub(super) fn client_path(path: &str, base_path: &str, route_prefix: &str) -> Option<String> {
    let tail = path.strip_prefix(base_path)?;
    if !(tail.is_empty() || tail.starts_with('/')) {
        return None;
    }
    let prefix = route_prefix.strip_suffix('/').unwrap_or(route_prefix);
    Some(non_empty(format!("{prefix}{tail}")))
}

pub(super) fn non_empty(path: String) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}

/// Whether a raw path has a `.` or `..` segment, also when percent-encoded (`%2e%2e`,
/// `..%2f`) or separated by `\`, which some upstreams treat as `/`.
pub(super) fn has_dot_segment(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(|s| s == "." || s == "..")
}

pub(super) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

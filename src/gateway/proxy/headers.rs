//! Headers across the proxy: `Host`, `X-Forwarded-*`, and the hop-by-hop headers that
//! belong to one connection only.

use super::Forwarded;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(super) const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// non-standard `Keep-Alive` and `Proxy-Connection`.
pub(super) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Rewrites the client's headers for the upstream.
pub(super) fn request_headers(headers: &mut HeaderMap, fwd: &Forwarded, host: &HeaderValue) {
    strip_hop_by_hop(headers);
    // hyper answers `100 Continue` to the client itself when the body is first read, and
    // the upstream gets the body at once (nginx clears Expect for the same reason).
    headers.remove(header::EXPECT);
    headers.insert(header::HOST, host.clone());

    // An IPv4 client on a dual-stack listener shows up as ::ffff:a.b.c.d.
    let ip = fwd.client_ip.to_canonical().to_string();
    let mut chain = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        chain.extend_from_slice(value.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(ip.as_bytes());
    set(headers, X_FORWARDED_FOR, HeaderValue::from_bytes(&chain));
    set(headers, X_REAL_IP, HeaderValue::from_str(&ip));
    set(
        headers,
        X_FORWARDED_PROTO,
        HeaderValue::from_str(fwd.scheme),
    );
    set(headers, X_FORWARDED_HOST, HeaderValue::from_str(&fwd.host));
}

/// Credentials across the proxy. A client-sent `X-Forwarded-User` is always removed (only
/// wharf may say who the user is). When wharf `consumed` the `Authorization` header (the
/// route is under the server's logins), it is removed too: a password wharf checked must
/// not travel on, often over plain HTTP, to a service that did not ask for it. `user`, when
/// the route forwards it, becomes `X-Forwarded-User`.
pub fn pass_identity(headers: &mut HeaderMap, consumed: bool, user: Option<&str>) {
    headers.remove(X_FORWARDED_USER);
    if consumed {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(user) = user {
        set(headers, X_FORWARDED_USER, HeaderValue::from_str(user));
    }
}

/// Sets a header, or removes it if the value could not be encoded, so that a value the
/// client sent never stands in for ours.
pub(super) fn set<E>(headers: &mut HeaderMap, name: HeaderName, value: Result<HeaderValue, E>) {
    match value {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            tracing::debug!(header = %name, "dropped a forwarding header that could not be encoded");
            headers.remove(name);
        }
    }
}

/// Removes hop-by-hop headers: those `Connection` names, then the fixed list.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        // Framing and routing are decided here, not by whoever sent `Connection`.
        .filter(|name| *name != header::HOST && *name != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

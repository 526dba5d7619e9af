//! The one place where request errors become HTTP responses.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::json;

use super::proxy::ProxyError;
use crate::http_util::{Body, Reply};
use crate::registry::error::{ApiError, Code};

/// The status code of each error. No catch-all arm: a new code must choose its status here.
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::BlobUnknown
        | Code::BlobUploadUnknown
        | Code::ManifestUnknown
        | Code::NameUnknown
        | Code::NotFound => StatusCode::NOT_FOUND,
        Code::BlobUploadInvalid
        | Code::DigestInvalid
        | Code::ManifestBlobUnknown
        | Code::ManifestInvalid
        | Code::NameInvalid
        | Code::SizeInvalid
        | Code::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
        Code::ManifestTooLarge | Code::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::Denied => StatusCode::FORBIDDEN,
        Code::TagImmutable => StatusCode::CONFLICT,
        Code::Unsupported => StatusCode::BAD_REQUEST,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Misdirected => StatusCode::MISDIRECTED_REQUEST,
        Code::BadGateway => StatusCode::BAD_GATEWAY,
        Code::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The spec's JSON envelope `{"errors":[{"code","message","detail"}]}` with the error's
/// status and any headers it carries.
pub fn api_error(err: &ApiError) -> Response<Body> {
    let body = json!({
        "errors": [{ "code": err.code.as_str(), "message": err.message, "detail": null }]
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut reply = Reply::new(status_of(err.code))
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, bytes.len());
    for (name, value) in &err.headers {
        reply = reply.header(name.clone(), value);
    }
    reply.body(crate::http_util::full(bytes))
}

/// Any request error: the OCI envelope on API paths (so registry clients can read it even
/// when the gateway, not the engine, refused), plain text elsewhere.
pub fn error(err: &ApiError, is_api: bool) -> Response<Body> {
    if is_api {
        return api_error(err);
    }
    let body = format!("{}\n", err.message);
    let mut reply = Reply::new(status_of(err.code))
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONTENT_LENGTH, body.len());
    for (name, value) in &err.headers {
        reply = reply.header(name.clone(), value);
    }
    reply.body(crate::http_util::full(body))
}

/// What the client learns when an upstream fails; the cause is already in the log.
pub fn proxy_error(err: &ProxyError) -> ApiError {
    match err {
        ProxyError::Unreachable { .. } => {
            ApiError::new(Code::BadGateway, "the upstream could not be reached")
        }
        ProxyError::Timeout { .. } => {
            ApiError::new(Code::GatewayTimeout, "the upstream did not answer in time")
        }
        ProxyError::BadPath { reason, .. } => ApiError::new(
            Code::Unsupported,
            format!("this path cannot be proxied: {reason}"),
        ),
        ProxyError::ClientBody { .. } => {
            ApiError::new(Code::BlobUploadInvalid, "the request body broke off")
        }
    }
}

/// A short plain-text answer for the non-API paths (`/`, `/healthz`, unknown paths).
pub fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    Reply::new(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONTENT_LENGTH, message.len())
        .body(crate::http_util::full(message))
}

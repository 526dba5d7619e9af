//! The OCI error codes and the one error type every registry handler returns.
//!
//! Handlers say *what* went wrong; `gateway::respond` is the one place that turns an
//! [`ApiError`] into a status code and the spec's JSON envelope.

use std::fmt;

use http::HeaderName;

use super::storage::StorageError;

/// The error codes of the distribution-spec, plus the few Distribution also sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// The manifest is over the configured size limit (413).
    ManifestTooLarge,
    /// A request body over the route's configured limit (413).
    BodyTooLarge,
    /// A request line plus headers over `limits.max_header_bytes` (431).
    HeadersTooLarge,
    /// A chunk or byte range that does not fit (416).
    RangeInvalid,
    Unauthorized,
    Denied,
    /// A push or delete would move an `[[immutable]]` tag (409, code `DENIED`).
    TagImmutable,
    Unsupported,
    TooManyRequests,
    /// `n` or `page` is not a number.
    PaginationNumberInvalid,
    /// No route for this path.
    NotFound,
    MethodNotAllowed,
    /// Storage is failing; the client may retry later.
    Unavailable,
    /// No server block answers to the request's host, or Host and SNI disagree (421).
    Misdirected,
    /// An upstream could not be reached or broke off (502).
    BadGateway,
    /// An upstream did not answer in time (504).
    GatewayTimeout,
    /// A bug or an unexpected I/O failure; details are only in the log.
    Internal,
}

impl Code {
    /// The code string written into the JSON envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid | Code::ManifestTooLarge | Code::BodyTooLarge => "SIZE_INVALID",
            Code::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied | Code::TagImmutable => "DENIED",
            Code::Unsupported | Code::MethodNotAllowed => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::NotFound => "UNSUPPORTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Misdirected => "MISDIRECTED_REQUEST",
            Code::BadGateway => "BAD_GATEWAY",
            Code::GatewayTimeout => "GATEWAY_TIMEOUT",
            Code::Internal => "INTERNAL_ERROR",
        }
    }
}

/// A request failure as the client will see it. Never carries internal paths or I/O
/// messages: those are logged where the error is created.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Extra headers the spec asks for with this error (for example `Range` on a 416).
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io { op, source } => {
                tracing::error!(op, error = %source, "storage failure");
                ApiError::new(Code::Internal, "internal storage error")
            }
            StorageError::Unavailable { op, source } => {
                tracing::error!(op, error = %source, "storage unavailable");
                ApiError::new(
                    Code::Unavailable,
                    "storage is temporarily unavailable; retry later",
                )
            }
            StorageError::Corrupt { what } => {
                tracing::error!(what, "storage holds corrupt data");
                ApiError::new(Code::Internal, "internal storage error")
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

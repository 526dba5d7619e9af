//! Small HTTP helpers shared by the gateway and the registry: the one body type, a
//! response builder that cannot fail, and query parsing.

use std::convert::Infallible;
use std::fmt::Display;
use std::io;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};

use crate::registry::storage::ByteStream;

/// The body of every response wharf writes.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map_ok(http_body::Frame::data)).boxed_unsync()
}

/// Turns any request body into a byte stream, dropping trailers.
pub fn body_stream<B>(body: B) -> ByteStream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Box::pin(
        TryStreamExt::map_err(http_body_util::BodyStream::new(body), io::Error::other)
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) }),
    )
}

/// Any request body as the one body type.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    body.map_err(io::Error::other).boxed_unsync()
}

/// Passes a body through until it has carried more than `max` bytes, then fails it with
/// an error saying so (for bodies whose length was not announced up front).
pub fn limited(body: Body, max: u64) -> Body {
    let mut seen = 0u64;
    let s = body_stream(body).and_then(move |chunk| {
        seen += chunk.len() as u64;
        let over = seen > max;
        async move {
            match over {
                true => Err(io::Error::other(format!(
                    "the request body is over the route's {max}-byte limit"
                ))),
                false => Ok(chunk),
            }
        }
    });
    stream(Box::pin(s))
}

/// Builds a response; header values that could not be encoded are logged and skipped
/// rather than failing the request (every value wharf sets is plain ASCII).
pub struct Reply(Response<Body>);

impl Reply {
    pub fn new(status: StatusCode) -> Self {
        let mut r = Response::new(empty());
        *r.status_mut() = status;
        Self(r)
    }

    pub fn header(mut self, name: HeaderName, value: impl Display) -> Self {
        match HeaderValue::try_from(value.to_string()) {
            Ok(v) => {
                self.0.headers_mut().insert(name, v);
            }
            Err(_) => {
                tracing::warn!(header = %name, "dropped a header value that is not valid ASCII")
            }
        }
        self
    }

    pub fn body(mut self, body: Body) -> Response<Body> {
        *self.0.body_mut() = body;
        self.0
    }

    pub fn empty(self) -> Response<Body> {
        self.0
    }

    pub fn json(self, value: &serde_json::Value) -> Response<Body> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, bytes.len())
            .body(full(bytes))
    }
}

/// The decoded value of the first `key` in a query string.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Displays an error with its sources: `a: b: c` (for log lines).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

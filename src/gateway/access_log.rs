//! What happens when a response has been sent: one access-log line and the request metrics.
//!
//! The response body is wrapped so this runs when the body is finished (or the client goes
//! away), with the bytes really sent and the whole duration, as nginx logs them. Never
//! credentials: the path is logged without its query string.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Version};
use http_body::{Frame, SizeHint};

use super::metrics::Metrics;
use crate::config::AccessFormat;
use crate::http_util::Body;

/// Everything logged about one request, gathered while it is handled.
pub struct Entry {
    pub client: IpAddr,
    pub user: Option<String>,
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub status: u16,
    pub vhost: String,
    pub route: String,
    pub referer: String,
    pub user_agent: String,
    pub request_bytes: u64,
    pub started: Instant,
    pub time: time::OffsetDateTime,
}

/// Where finished requests are reported.
pub struct Recorder {
    pub format: Option<AccessFormat>,
    pub metrics: Arc<Metrics>,
}

impl Recorder {
    /// Wraps a response body so `entry` is reported when the body ends.
    pub fn wrap(self: &Arc<Self>, body: Body, entry: Entry) -> Body {
        http_body_util::BodyExt::boxed_unsync(Recorded {
            inner: body,
            sent: 0,
            entry: Some(entry),
            recorder: self.clone(),
        })
    }

    fn finish(&self, e: &Entry, sent: u64) {
        let seconds = e.started.elapsed().as_secs_f64();
        self.metrics
            .request_done(&e.vhost, &e.route, e.status, sent, e.request_bytes, seconds);
        match self.format {
            None => {}
            Some(AccessFormat::Combined) => {
                tracing::info!(target: "wharf::access", "{}", combined(e, sent, seconds))
            }
            Some(AccessFormat::Json) => tracing::info!(
                target: "wharf::access",
                client = %e.client,
                user = e.user.as_deref().unwrap_or("-"),
                method = %e.method,
                path = e.path,
                status = e.status,
                bytes = sent,
                vhost = e.vhost,
                route = e.route,
                duration_ms = seconds * 1000.0,
                user_agent = e.user_agent,
            ),
        }
    }
}

/// nginx's `combined` format plus `vhost=`, `route=` and `rt=` (request time in seconds).
fn combined(e: &Entry, sent: u64, seconds: f64) -> String {
    let time = e
        .time
        .format(time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        ))
        .unwrap_or_else(|_| "-".into());
    format!(
        "{} - {} [{time}] \"{} {} {:?}\" {} {sent} \"{}\" \"{}\" vhost={} route={} rt={seconds:.3}",
        e.client,
        e.user.as_deref().unwrap_or("-"),
        e.method,
        e.path,
        e.version,
        e.status,
        e.referer,
        e.user_agent,
        e.vhost,
        e.route,
    )
}

struct Recorded {
    inner: Body,
    sent: u64,
    entry: Option<Entry>,
    recorder: Arc<Recorder>,
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.recorder.finish(&entry, self.sent);
        }
    }
}

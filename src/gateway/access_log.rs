//! What happens when a response has been sent: one access-log line and the request metrics.
//!
//! The response body is wrapped so this runs when the body is finished (or the client goes
//! away), with the bytes really sent and the whole duration, as nginx logs them. Never
//! credentials: the path is logged without its query string.

use std::io::Write;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Version};
use http_body::{Frame, SizeHint};

use super::metrics::Metrics;
use crate::config::{AccessFormat, AccessTarget, LogConfig};
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
    format: AccessFormat,
    sink: Option<Sink>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Opens the access log `log` names (a file is created if missing and appended to).
    pub fn new(log: &LogConfig, metrics: Arc<Metrics>) -> Result<Self, AccessLogError> {
        let sink = match &log.access {
            AccessTarget::Off => None,
            AccessTarget::Stderr => Some(Sink::start(Box::new(std::io::stderr()))),
            AccessTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|cause| AccessLogError {
                        path: path.clone(),
                        cause,
                    })?;
                Some(Sink::start(Box::new(file)))
            }
        };
        Ok(Self {
            format: log.access_format,
            sink,
            metrics,
        })
    }

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
        if let Some(sink) = &self.sink {
            sink.write(match self.format {
                AccessFormat::Combined => combined(e, sent, seconds),
                AccessFormat::Json => json(e, sent, seconds),
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {path}: {cause}; fix log.access (a writable file, \"stderr\" or \"off\")")]
pub struct AccessLogError {
    path: std::path::PathBuf,
    cause: std::io::Error,
}

/// Access lines go through a channel to a thread of their own, so a slow disk or a full
/// pipe never stalls the reactor; the thread writes what has queued up, then flushes.
struct Sink {
    lines: Option<mpsc::Sender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(out: Box<dyn Write + Send>) -> Self {
        let (tx, rx) = mpsc::channel::<String>();
        let writer = std::thread::Builder::new()
            .name("wharf-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                let mut failed = false;
                while let Ok(line) = rx.recv() {
                    let mut result = writeln!(out, "{line}");
                    while let Ok(more) = rx.try_recv() {
                        result = result.and_then(|()| writeln!(out, "{more}"));
                    }
                    result = result.and_then(|()| out.flush());
                    // Said once, not once per request; lines are lost until it works again.
                    match result {
                        Err(error) if !failed => {
                            tracing::error!(%error, "cannot write the access log");
                            failed = true;
                        }
                        Err(_) => {}
                        Ok(()) => failed = false,
                    }
                }
            });
        match writer {
            Ok(writer) => Self {
                lines: Some(tx),
                writer: Some(writer),
            },
            Err(error) => {
                tracing::error!(%error, "cannot start the access log writer; no access lines");
                Self {
                    lines: None,
                    writer: None,
                }
            }
        }
    }

    fn write(&self, line: String) {
        if let Some(lines) = &self.lines {
            // Fails only once the writer thread is gone, which it never is while `self` lives.
            let _ = lines.send(line);
        }
    }
}

impl Drop for Sink {
    /// Waits for the queued lines to be written, so none are lost at exit or on reload.
    fn drop(&mut self) {
        self.lines.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// One JSON object per request, with the combined line's fields.
fn json(e: &Entry, sent: u64, seconds: f64) -> String {
    let time = e
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into());
    serde_json::json!({
        "time": time,
        "client": e.client.to_string(),
        "user": e.user.as_deref().unwrap_or("-"),
        "method": e.method.as_str(),
        "path": e.path,
        "protocol": format!("{:?}", e.version),
        "status": e.status,
        "bytes": sent,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "vhost": e.vhost,
        "route": e.route,
        "duration_ms": seconds * 1000.0,
    })
    .to_string()
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

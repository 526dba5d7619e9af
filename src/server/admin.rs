//! The admin listener: `GET /metrics` in the Prometheus text format, nothing else. It is a
//! separate listener so it can stay on a private address while the registry is public.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway::metrics::Metrics;
use crate::http_util::{full, Body, Reply};

pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn answer(req: &Request<Incoming>, metrics: &Metrics) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let text = metrics.render();
            Reply::new(StatusCode::OK)
                .header(
                    CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .header(CONTENT_LENGTH, text.len())
                .body(full(text))
        }
        _ => Reply::new(StatusCode::NOT_FOUND)
            .header(CONTENT_LENGTH, 10)
            .body(full("not found\n")),
    }
}

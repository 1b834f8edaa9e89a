//! `GET /metrics`: this process's figures in the Prometheus text format — the data layer's
//! ([`service::metrics`]: pool, queries, errors, replicas, migrations) and the API's own:
//!
//! | metric | type | labels | what it is |
//! | ------ | ---- | ------ | ---------- |
//! | [`HTTP_REQUESTS`] | counter | `method`, `route`, `status` | requests answered |
//! | [`HTTP_REQUEST_DURATION`] | histogram | `method`, `route`, `status` | time from receiving a request to its response's head |
//!
//! `route` is the template of the route that matched (`/users/{id}`), never the path asked for,
//! and `unmatched` for a request no route matched; `method` is one of the standard methods or
//! `OTHER`; `status` the response's code. So a client cannot add series by inventing paths or
//! methods, and no label carries an id or an email. Scrapes are not counted.
//!
//! The recorder is `metrics-exporter-prometheus`'s, installed once per process by
//! [`install_recorder`], with [`service::metrics::DURATION_BUCKETS`] for every `_seconds`
//! histogram (rendered as Prometheus histograms, which aggregate across instances, not as
//! summaries). Where `/metrics` is served is [`crate::Application`]'s business
//! (`API_METRICS_ADDR`).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::Label;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use service::DatabaseService;

/// `http_requests_total`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// `http_request_duration_seconds`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often recorded histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus metrics recorder: {0}")]
pub struct InstallError(#[source] BuildError);

/// Installs the Prometheus recorder for this process (the first call) and returns its handle
/// (every call: the same recorder). Then describes the metrics of [`service::metrics`] and of
/// this module.
///
/// # Errors
///
/// [`InstallError`] when another recorder was installed in this process already.
pub fn install_recorder() -> Result<PrometheusHandle, InstallError> {
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            service::metrics::DURATION_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(InstallError)?;
    service::metrics::describe();
    metrics::describe_counter!(
        HTTP_REQUESTS,
        metrics::Unit::Count,
        "HTTP requests answered."
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving an HTTP request to its response's head."
    );
    *installed = Some(handle.clone());
    Ok(handle)
}

/// `GET /metrics` over `handle`; each scrape first samples `service`'s pools.
pub(crate) fn router(handle: PrometheusHandle, service: DatabaseService) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move {
            service.record_pool_metrics();
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
        }),
    )
}

/// Folds recorded histogram samples into their buckets every few seconds, so that memory stays
/// bounded when nobody scrapes (a scrape does it too). Ends when the returned task is aborted.
pub(crate) fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Middleware recording [`HTTP_REQUESTS`] and [`HTTP_REQUEST_DURATION`] for every request of
/// the routes it wraps (add it with `Router::layer`, which runs it after routing, so the
/// matched route's template is known).
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        Label::new("method", method),
        Label::new("route", route),
        Label::new("status", status),
    ];
    metrics::counter!(HTTP_REQUESTS, labels.iter()).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, labels.iter()).record(started.elapsed());
    response
}

/// A request's method as a label: the standard methods by name, anything else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_become_labels() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"ADA-LOVELACE").unwrap();
        assert_eq!(method_label(&invented), "OTHER");
    }
}

//! Prometheus metrics: names of what the gateway records, the exporter every crate's
//! metrics go through, and the middleware that counts and times each request.

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::Error;

/// HTTP requests, labelled `route` (the matched pattern) and `status`.
pub const HTTP_REQUESTS: &str = "aimbus_http_requests_total";
/// HTTP request durations in seconds, labelled `route`.
pub const HTTP_DURATION: &str = "aimbus_http_request_duration_seconds";
/// Calls to the gRPC API, labelled `method` (`Send`, `Request`, `Watch`) and `code`
/// (`OK`, `UNAVAILABLE`, …).
pub const GRPC_REQUESTS: &str = "aimbus_grpc_requests_total";
/// gRPC API call durations in seconds (a watch: until it was set up), labelled `method`.
pub const GRPC_DURATION: &str = "aimbus_grpc_request_duration_seconds";
/// Requests refused because their token's subject exceeded its rate.
pub const RATE_LIMITED: &str = "aimbus_http_rate_limited_total";

/// The process's own metrics under Prometheus's standard names (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, `process_threads`, …), read by a
/// well-kept crate that asks the system for its clock tick and page size.
static PROCESS: LazyLock<metrics_process::Collector> =
    LazyLock::new(metrics_process::Collector::default);

/// Latency buckets (seconds) for every `*_seconds` histogram: 100 µs to 60 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus exporter as the process's metrics recorder, once; later
/// calls return the same handle. Call it before the actors start: metric handles made
/// before it (the router's per-system ones) record nowhere.
pub fn install_recorder(node_id: &str) -> Result<PrometheusHandle, Error> {
    // A lock, not a OnceLock check-then-set: two first callers must not both install.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock().expect("recorder lock");
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    // Every series names its node, so several nodes' metrics can be told apart.
    if !node_id.is_empty() {
        builder = builder.add_global_label("node", node_id);
    }
    let recorder = builder
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), BUCKETS)
        .map_err(|e| Error::Metrics(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| Error::Metrics(e.to_string()))?;
    PROCESS.describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

pub(crate) async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let response = next.call(request).await?;
    // The pattern, not the path, so ids in paths do not explode the label set.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// Sets the process metrics, just before a scrape renders them.
pub(crate) fn sample_process() {
    PROCESS.collect();
}

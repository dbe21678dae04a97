//! The span of each API request, named and attributed as OpenTelemetry's HTTP server
//! conventions say, continuing the caller's trace when it sends a `traceparent`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, USER_AGENT};
use actix_web::middleware::Next;
use aimbus_telemetry::Extractor;
use tracing::Instrument;

/// Only the API is traced: probes and scrapes (`/healthz`, `/readyz`, `/metrics`) arrive
/// every few seconds and would bury the traces of messages.
const TRACED_PREFIX: &str = "/api/";

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

pub(crate) async fn trace_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Nothing is looked at, not even the headers, when nobody takes the span.
    if !request.path().starts_with(TRACED_PREFIX) || !tracing::span_enabled!(tracing::Level::DEBUG)
    {
        return next.call(request).await;
    }
    let method = request.method().as_str().to_owned();
    let route = request.match_pattern();
    // Sampled before the span is made; an unsampled request's work makes none.
    let make = || {
        tracing::debug_span!(
            "http_request",
            otel.name = %format_args!("{method} {}", route.as_deref().unwrap_or_default()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = route.as_deref(),
            url.path = request.path(),
            url.scheme = request.connection_info().scheme(),
            network.protocol.version = ?request.version(),
            client.address = request.peer_addr().map(|peer| peer.ip().to_string()),
            user_agent.original = request
                .headers()
                .get(USER_AGENT)
                .and_then(|agent| agent.to_str().ok()),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
    let trace = aimbus_telemetry::Trace::continued(&Headers(request.headers()), make);
    let Some(span) = trace.span().cloned() else {
        return trace.instrument(next.call(request)).await;
    };
    let response = next.call(request).instrument(span.clone()).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    // As i64: tracing-opentelemetry records unsigned integers through Debug, as strings,
    // where the HTTP conventions want an int.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    // Client errors are the caller's; only server errors fail the span.
    if status.is_server_error() {
        span.record("otel.status_code", "error");
        span.record("error.type", status.as_str());
    }
    response
}

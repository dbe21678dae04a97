//! One message is one trace over gRPC too: W3C trace context travels in the metadata,
//! and every call is a span named as OpenTelemetry's RPC conventions say, for the bus's
//! calls to systems, its API, and a system served by the SDK alike.

use std::time::Duration;

use aimbus_telemetry::{Extractor, Trace};
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap};
use tonic::{Code, Request, Status};

use crate::code_name;

struct Metadata<'a>(&'a MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                KeyRef::Ascii(key) => Some(key.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The trace of serving one call of `service`/`method`, continuing the caller's when its
/// metadata carries a `traceparent`; sampled before its span is made.
pub fn server_trace(service: &'static str, method: &'static str, metadata: &MetadataMap) -> Trace {
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return Trace::default();
    }
    let make = || {
        tracing::debug_span!(
            "grpc_request",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
    Trace::continued(&Metadata(metadata), make)
}

/// Serves a call in its trace and writes its status on the span.
pub async fn traced<T>(
    trace: Trace,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let span = trace.span().cloned();
    let result = trace.instrument(call).await;
    if let Some(span) = span {
        let code = result.as_ref().err().map_or(Code::Ok, Status::code);
        record_status(&span, code, is_server_fault(code).then(|| code_name(code)));
    }
    result
}

/// Whether a status says the server (or what it called) failed, not the caller: as
/// HTTP's 5xx, only those fail a server's span.
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::DataLoss
    )
}

/// Writes a call's status code on its span, and marks the span failed with `error` (its
/// `error.type`) when it failed.
pub fn record_status(span: &tracing::Span, code: Code, error: Option<&str>) {
    span.record("rpc.grpc.status_code", code as i64);
    if let Some(error) = error {
        span.record("otel.status_code", "error");
        span.record("error.type", error);
    }
}

/// The span of one call to `address`, as the RPC client conventions name it: none for
/// an unsampled message, whose context still goes out in the metadata.
pub fn client_span(service: &str, method: &str, address: &str) -> tracing::Span {
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return tracing::Span::none();
    }
    let make = || {
        let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
        tracing::debug_span!(
            "grpc_client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            server.address = host,
            server.port = port.parse::<i64>().ok(),
            rpc.grpc.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
    Trace::current(make).into_span()
}

/// A request carrying the current work's trace context, with `timeout` as its deadline.
/// Call it inside the client span, whose context the metadata then carries.
pub fn request<T>(message: T, timeout: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    for (name, value) in aimbus_telemetry::context_headers() {
        let (Ok(name), Ok(value)) = (MetadataKey::from_bytes(name.as_bytes()), value.parse())
        else {
            continue;
        };
        request.metadata_mut().insert(name, value);
    }
    request
}

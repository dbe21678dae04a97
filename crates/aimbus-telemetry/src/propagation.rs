//! W3C trace context across process boundaries. Carriers (HTTP headers, AMQP header
//! tables) implement opentelemetry's `Injector` and `Extractor`; these functions move
//! the current span's context into them and out of them.

use std::sync::LazyLock;

use opentelemetry::propagation::{Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `traceparent` and `tracestate`, then `baggage`; independent of any global setting so
/// the bus propagates the same way in every process.
pub(crate) static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
});

/// The headers that carry the current work's trace context (`traceparent`, `tracestate`,
/// `baggage`): its span's, or its unsampled message's (sampled flag cleared); none when
/// it is not traced (tracing off, or no span).
pub fn context_headers() -> Vec<(String, String)> {
    let current = tracing::Span::current();
    let context = if !current.is_disabled() {
        current.context()
    } else if let Some(unsampled) = crate::sampling::current_unsampled() {
        opentelemetry::Context::new().with_remote_span_context(unsampled)
    } else {
        return Vec::new();
    };
    let mut headers = Headers::default();
    PROPAGATOR.inject_context(&context, &mut headers);
    headers.0
}

#[derive(Default)]
struct Headers(Vec<(String, String)>);

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

//! W3C trace context across process boundaries. Carriers (HTTP headers, AMQP header
//! tables) implement opentelemetry's `Injector` and `Extractor`; these functions move
//! the current span's context into them and out of them.

use std::sync::LazyLock;

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `traceparent` and `tracestate`, then `baggage`; independent of any global setting so
/// the bus propagates the same way in every process.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
});

/// The headers that carry the current span's context (`traceparent`, `tracestate`,
/// `baggage`): none when the span is not traced (tracing off, or the span disabled).
pub fn context_headers() -> Vec<(String, String)> {
    let current = tracing::Span::current();
    if current.is_disabled() {
        return Vec::new();
    }
    let context = current.context();
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

/// Makes `span` continue the trace `carrier` names, keeping its `tracestate` and
/// baggage. A carrier without a valid `traceparent` leaves `span` where it is (a child
/// of the current span, or a new trace). Call it before `span` is first entered.
pub fn continue_trace(span: &tracing::Span, carrier: &dyn Extractor) {
    if span.is_disabled() {
        return;
    }
    let context = PROPAGATOR.extract(carrier);
    use opentelemetry::trace::TraceContextExt;
    if context.span().span_context().is_valid() {
        // Fails only when tracing is off or the span was already started: then there is
        // nothing to continue.
        let _ = span.set_parent(context);
    }
}

//! Trace context in AMQP headers (`traceparent`, `tracestate`, `baggage`) and the
//! messaging spans of publishing and processing, named and attributed as OpenTelemetry's
//! messaging conventions for RabbitMQ say, so a trace crosses the broker unbroken.

use aimbus_telemetry::{Extractor, Trace};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tracing::Span;

/// A delivery's headers, read by the propagator.
struct Headers<'a>(Option<&'a FieldTable>);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0?.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .map(|headers| headers.inner().keys().map(ShortString::as_str).collect())
            .unwrap_or_default()
    }
}

/// `properties` with the current span's context in its headers; unchanged when the
/// current span is not traced.
pub fn with_current_context(properties: BasicProperties) -> BasicProperties {
    let context = aimbus_telemetry::context_headers();
    if context.is_empty() {
        return properties;
    }
    let mut headers = properties.headers().clone().unwrap_or_default();
    for (key, value) in context {
        headers.insert(key.into(), AMQPValue::LongString(value.into()));
    }
    properties.with_headers(headers)
}

/// The span of one publish: a child of the current span, and the parent of whatever
/// processes the message on the other side; none when the message is not sampled.
pub fn publish_span(exchange: &str, routing_key: &str, properties: &BasicProperties) -> Span {
    // The default exchange routes by queue name: the queue is the destination then.
    let destination = if exchange.is_empty() {
        routing_key
    } else {
        exchange
    };
    let make = || {
        tracing::debug_span!(
            "publish",
            otel.name = %format_args!("publish {destination}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = destination,
            messaging.rabbitmq.destination.routing_key = routing_key,
            messaging.message.id = properties.message_id().as_ref().map(ShortString::as_str),
            messaging.message.conversation_id =
                properties.correlation_id().as_ref().map(ShortString::as_str),
        )
    };
    Trace::current(make).into_span()
}

/// The trace of processing one delivery from `queue`, continuing the one its headers
/// carry (or starting one when they carry none), sampled before its span is made.
pub fn process_trace(queue: &str, delivery: &Delivery) -> Trace {
    let properties = &delivery.properties;
    let make = || {
        tracing::debug_span!(
            "process",
            otel.name = %format_args!("process {queue}"),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.operation.name = "deliver",
            messaging.destination.name = queue,
            messaging.message.id = properties.message_id().as_ref().map(ShortString::as_str),
            messaging.message.conversation_id =
                properties.correlation_id().as_ref().map(ShortString::as_str),
            // As i64: tracing-opentelemetry records unsigned integers through Debug, as
            // strings, where the conventions want an int (no channel reaches 2^63 tags).
            messaging.rabbitmq.message.delivery_tag =
                i64::try_from(delivery.delivery_tag).unwrap_or(i64::MAX),
        )
    };
    Trace::continued(&Headers(properties.headers().as_ref()), make)
}

/// Marks `span` failed, for spans whose work ended in an error.
pub fn mark_failed(span: &Span) {
    span.record("otel.status_code", "error");
}

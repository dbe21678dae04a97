//! What a routed message's outcome leaves behind: its route span's fields and the
//! routed-messages counter.

use crate::transport::DeliveryMode;
use crate::{Error, metrics};
use aimbus_core::IntegrationMessage;
use aimbus_telemetry::Trace;

use super::Routed;

/// The trace of routing one message: a `route` span, a child of the caller's, when the
/// message is sampled (decided here when it enters here); its outcome is recorded when
/// routing ends.
pub fn route_trace(message: &IntegrationMessage, mode: DeliveryMode) -> Trace {
    let make = || {
        tracing::debug_span!(
            "route",
            otel.name = %format_args!("route {}", message.message_type),
            otel.status_code = tracing::field::Empty,
            // As `&str`, not `%`: a Display field is formatted into a new string per span.
            aimbus.message_id = message.message_id.as_str(),
            aimbus.message_type = message.message_type.as_str(),
            aimbus.source_system = message.source_system.as_str(),
            aimbus.target_system = message.target_system.as_str(),
            aimbus.delivery_mode = mode.as_str(),
            // `delivered`, `fallback` (a stand-in answered), `cached`, or why it failed.
            aimbus.outcome = tracing::field::Empty,
            aimbus.served_by = tracing::field::Empty,
            aimbus.attempts = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
    Trace::current(make)
}

/// Counts a routed message by its outcome and writes the outcome on the route's span.
/// Each arm names its label literally, so the metric key is built once, not per message.
pub(super) fn record_outcome(trace: &Trace, result: &Result<Routed, Error>) {
    use ::metrics::counter;
    use metrics::MESSAGES_ROUTED as ROUTED;
    let (counter, outcome) = match result {
        Ok(r) if r.cached => (counter!(ROUTED, "outcome" => "cached"), "cached"),
        Ok(r) if r.fallback => (counter!(ROUTED, "outcome" => "fallback"), "fallback"),
        Ok(_) => (counter!(ROUTED, "outcome" => "delivered"), "delivered"),
        Err(Error::RateLimited { .. }) => (
            counter!(ROUTED, "outcome" => "rate_limited"),
            "rate_limited",
        ),
        Err(Error::UnknownTarget(_)) => (
            counter!(ROUTED, "outcome" => "unknown_target"),
            "unknown_target",
        ),
        Err(Error::Unavailable { .. }) => {
            (counter!(ROUTED, "outcome" => "unavailable"), "unavailable")
        }
        Err(Error::Overloaded { .. }) => {
            (counter!(ROUTED, "outcome" => "overloaded"), "overloaded")
        }
        Err(Error::Timeout { .. }) => (counter!(ROUTED, "outcome" => "timeout"), "timeout"),
        Err(Error::Expired { .. }) => (counter!(ROUTED, "outcome" => "expired"), "expired"),
        Err(Error::Registry(_)) => (counter!(ROUTED, "outcome" => "invalid"), "invalid"),
        Err(_) => (counter!(ROUTED, "outcome" => "failed"), "failed"),
    };
    counter.increment(1);
    // Attributes are computed only for a span that records.
    let Some(span) = trace.span() else {
        return;
    };
    span.record("aimbus.outcome", outcome);
    match result {
        Ok(routed) => {
            span.record("aimbus.served_by", &*routed.served_by);
            // As i64, as the attempt span's number is (see there).
            span.record("aimbus.attempts", i64::from(routed.attempts));
        }
        Err(_) => {
            span.record("otel.status_code", "error");
            span.record("error.type", outcome);
        }
    }
}

//! Telemetry of aimbus: logs and OpenTelemetry traces set up from the configuration, and
//! the W3C trace context (`traceparent`, `tracestate`, `baggage`) carried across HTTP
//! and AMQP, so one message is one trace from the caller to the system that answers.
#![forbid(unsafe_code)]

mod error;
mod export;
mod logs;
pub mod metrics;
mod propagation;
#[cfg(feature = "receiver")]
pub mod receiver;
mod sampling;
mod setup;

pub use error::Error;
pub use propagation::context_headers;
pub use sampling::{Trace, Traced};
pub use setup::{Process, Telemetry, init, subscriber};

/// Re-exported so carriers can implement it without naming opentelemetry themselves.
pub use opentelemetry::propagation::Extractor;

//! Where AMQP meets the router: the bridge that keeps the bus connected to RabbitMQ, the
//! ingress consumer that routes what clients publish, and the AMQP transport to systems.
//! The wire side they stand on (and that the SDK shares) is `aimbus-amqp`.
#![forbid(unsafe_code)]

mod bridge;
mod ingress;
pub mod metrics;
mod security;
mod transport;

pub use bridge::Bridge;
pub use security::BridgeSecurity;
pub use transport::AmqpTransport;

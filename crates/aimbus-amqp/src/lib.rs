//! The RabbitMQ bridge of aimbus: the AMQP contract's topology, confirmed publishing, the
//! AMQP transport, request/reply, the ingress consumer and dead letters.
#![forbid(unsafe_code)]

mod acks;
mod bridge;
mod dead_letters;
mod dedup;
pub mod envelope;
mod error;
mod ingress;
mod link;
pub mod metrics;
mod names;
pub mod parking;
mod publisher;
mod replies;
pub mod topology;
pub mod trace_context;
mod transport;

pub use acks::Acks;
pub use bridge::{Bridge, BridgeSecurity};
pub use dead_letters::{DeadLetter, DeadLetters, Selection};
pub use dedup::{Begin, DedupWindow, Handling};
pub use error::Error;
pub use link::{close, until_lost};
pub use names::{INGRESS_ROUTING_KEY, Names};
pub use publisher::Publisher;
pub use replies::{PendingReply, ReplyInbox, ReplyMessage};
pub use transport::AmqpTransport;

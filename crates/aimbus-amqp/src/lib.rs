//! The AMQP contract of aimbus, the wire side any client needs: names, topology, the
//! envelope, confirmed publishing, request/reply, acknowledgements, deduplication,
//! parking for later, dead letters and trace context. Where AMQP meets the router (the
//! bridge, the ingress, the AMQP transport) is `aimbus-bridge`'s.
#![forbid(unsafe_code)]

mod acks;
mod dead_letters;
mod dedup;
mod drain;
pub mod envelope;
mod error;
mod link;
pub mod metrics;
mod names;
pub mod parking;
mod publisher;
mod replies;
pub mod topology;
pub mod trace_context;

pub use acks::Acks;
pub use dead_letters::{DeadLetter, DeadLetters, Selection};
pub use dedup::{Begin, DedupWindow, Handling};
pub use drain::drain;
pub use error::Error;
pub use link::{close, until_channel_lost, until_lost};
pub use names::{INGRESS_ROUTING_KEY, Names};
pub use publisher::Publisher;
pub use replies::{PendingReply, ReplyInbox, ReplyMessage};

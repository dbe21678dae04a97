//! Actors of aimbus: a registry actor that supervises one actor per AIM-OS system.
#![forbid(unsafe_code)]

mod bootstrap;
pub mod breaker;
mod error;
mod handle;
pub mod metrics;
mod registry_actor;
pub mod router;
mod stats;
mod supervision;
mod system_actor;
mod transport;

pub use bootstrap::seed_registry;
pub use error::Error;
pub use handle::RegistryHandle;
pub use registry_actor::{
    ApplyHealthCheck, ChildState, GetChild, Leave, ListNodes, NodeIdentity, Query, Register,
    RegistryActor, Seed, SetPerformanceMetrics, SetStatus, StatusHistory, Subscribe, Subscription,
    Unregister,
};
pub use router::{Routed, RouterHandle};
pub use stats::{LatencySummary, SystemMetrics};
pub use supervision::{RestartPolicy, RestartTracker, Verdict};
pub use system_actor::{
    ActorInfo, Deliver, Describe, ExitReason, Fault, SystemActor, SystemDirectory,
};
pub use transport::{
    DeliveryFailure, DeliveryFuture, DeliveryMode, InProcessTransport, Reply, Transport,
    TransportSet,
};

/// Maps keyed by system id on the routing path. Ids come from the registry, not from
/// message senders, so a fast hash is safe here; maps keyed by what senders choose (the
/// rate limiter's source names) keep the standard, flood-resistant hash.
pub(crate) type FastMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests;

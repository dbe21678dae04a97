//! Actors of aimbus: a registry actor that supervises one actor per AIM-OS system.
#![forbid(unsafe_code)]

mod bootstrap;
pub mod breaker;
mod error;
mod handle;
pub mod metrics;
mod registry_actor;
mod supervision;
mod system_actor;

pub use bootstrap::start_registry;
pub use error::Error;
pub use handle::RegistryHandle;
pub use registry_actor::{
    ApplyHealthCheck, ChildState, GetChild, Query, RecordOutcome, Register, RegistryActor,
    SetStatus, Subscribe, Subscription, Unregister,
};
pub use supervision::{RestartPolicy, RestartTracker, Verdict};
pub use system_actor::{ActorInfo, Describe, ExitReason, Fault, SystemActor};

#[cfg(test)]
mod tests;

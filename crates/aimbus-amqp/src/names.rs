//! The names of the AMQP contract, under a namespace (`aimbus` by default), so two buses
//! can share a broker.

use std::time::Duration;

use aimbus_core::{SystemInfo, interface};

/// Routing key of the ingress binding.
pub const INGRESS_ROUTING_KEY: &str = "ingress";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    namespace: String,
}

impl Names {
    pub fn new(namespace: &str) -> Names {
        Names {
            namespace: namespace.to_owned(),
        }
    }

    /// Where clients publish messages for the bus to route (exchange and queue alike).
    pub fn ingress(&self) -> String {
        format!("{}.ingress", self.namespace)
    }

    /// The topic exchange messages are parked through: key `<level ms>.<queue>` (see
    /// [`crate::parking`]).
    pub fn delay(&self) -> String {
        format!("{}.delay", self.namespace)
    }

    /// The delay queue whose messages all wait `level`.
    pub fn delay_queue(&self, level: Duration) -> String {
        format!("{}.delay.{}", self.namespace, level.as_millis())
    }

    /// The topic exchange parked messages come back through, each to the queue its key
    /// names: every queue that parks is bound to it with `*.<queue>`.
    pub fn returns(&self) -> String {
        format!("{}.returns", self.namespace)
    }

    /// The topic exchange the bus delivers to systems through.
    pub fn deliver(&self) -> String {
        format!("{}.deliver", self.namespace)
    }

    /// The fanout exchange of dead letters.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// The queue dead letters land in.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.namespace)
    }

    /// The topic exchange of registry events.
    pub fn events(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// A system's queue: `<namespace>.system.<system_id>`.
    pub fn system_queue(&self, system_id: &str) -> String {
        format!("{}.system.{system_id}", self.namespace)
    }

    /// The queue a system's messages wait in: its `amqp` interface, with `{namespace}`
    /// made this namespace, or [`Names::system_queue`] when it has none.
    pub fn queue_of(&self, system: &SystemInfo) -> String {
        match system.interfaces.get(interface::AMQP) {
            Some(queue) => queue.replace(interface::NAMESPACE_PLACEHOLDER, &self.namespace),
            None => self.system_queue(&system.system_id),
        }
    }

    /// The key a system's queue is bound with on the deliver exchange.
    pub fn system_routing_key(system: &SystemInfo) -> String {
        format!("{}.{}", system.system_type, system.system_id)
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{IntegrationStatus, SystemInfo};

/// A change in the registry, as published to subscribers (and, with the broker bridge, to
/// the `aimbus.events` exchange under `<kind>.<system_id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegistryEvent {
    SystemRegistered {
        system: SystemInfo,
    },
    /// Registered again at another version.
    SystemUpdated {
        system: SystemInfo,
        previous_version: String,
    },
    SystemUnregistered {
        system_id: String,
    },
    StatusUpdate {
        system_id: String,
        previous: IntegrationStatus,
        status: IntegrationStatus,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl RegistryEvent {
    /// The `kind` field: the first part of the event's routing key.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryEvent::SystemRegistered { .. } => "system_registered",
            RegistryEvent::SystemUpdated { .. } => "system_updated",
            RegistryEvent::SystemUnregistered { .. } => "system_unregistered",
            RegistryEvent::StatusUpdate { .. } => "status_update",
        }
    }

    pub fn system_id(&self) -> &str {
        match self {
            RegistryEvent::SystemRegistered { system }
            | RegistryEvent::SystemUpdated { system, .. } => &system.system_id,
            RegistryEvent::SystemUnregistered { system_id }
            | RegistryEvent::StatusUpdate { system_id, .. } => system_id,
        }
    }

    /// `<kind>.<system_id>`, the routing key on `aimbus.events`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.kind(), self.system_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_serialized_tag() {
        let event = RegistryEvent::StatusUpdate {
            system_id: "cmc_001".into(),
            previous: IntegrationStatus::Healthy,
            status: IntegrationStatus::Unhealthy,
            reason: "fault".into(),
            at: Utc::now(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], event.kind());
        assert_eq!(event.routing_key(), "status_update.cmc_001");
    }
}

use std::fmt;

use serde::{Deserialize, Serialize};

/// How well a system is integrated right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    Healthy,
    Degraded,
    Unhealthy,
    Disconnected,
    /// Its actor kept failing past the restart limit; it takes no traffic until re-registered.
    Failed,
}

impl IntegrationStatus {
    pub const ALL: [IntegrationStatus; 5] = [
        IntegrationStatus::Healthy,
        IntegrationStatus::Degraded,
        IntegrationStatus::Unhealthy,
        IntegrationStatus::Disconnected,
        IntegrationStatus::Failed,
    ];

    /// The seed routes only to HEALTHY or DEGRADED systems.
    pub fn takes_traffic(self) -> bool {
        matches!(
            self,
            IntegrationStatus::Healthy | IntegrationStatus::Degraded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Healthy => "healthy",
            IntegrationStatus::Degraded => "degraded",
            IntegrationStatus::Unhealthy => "unhealthy",
            IntegrationStatus::Disconnected => "disconnected",
            IntegrationStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{IntegrationStatus, SystemType};

/// The outcome of checking one system's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckResult {
    pub system_id: String,
    pub system_type: SystemType,
    pub status: IntegrationStatus,
    pub response_time_ms: f64,
    #[serde(default = "Utc::now")]
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl HealthCheckResult {
    pub fn new(
        system_id: impl Into<String>,
        system_type: SystemType,
        status: IntegrationStatus,
        response_time_ms: f64,
    ) -> Self {
        HealthCheckResult {
            system_id: system_id.into(),
            system_type,
            status,
            response_time_ms,
            timestamp: Utc::now(),
            error_message: None,
            details: serde_json::Map::new(),
        }
    }
}

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::{Error, IntegrationStatus};

/// The seed's `get_registry_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrySummary {
    pub total_systems: usize,
    pub system_types: Vec<String>,
    pub total_capabilities: usize,
    pub total_interfaces: usize,
    /// Dependency edges (system → system it depends on).
    pub total_dependencies: usize,
    /// Current version → number of systems running it.
    pub version_distribution: BTreeMap<String, usize>,
    pub capability_distribution: BTreeMap<String, usize>,
    pub interface_distribution: BTreeMap<String, usize>,
    /// When the registry last changed.
    pub last_updated: DateTime<Utc>,
}

/// The seed's `get_system_compatibility`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compatibility {
    pub system_id: String,
    pub system_type: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub interfaces: Vec<String>,
    pub dependencies: Vec<String>,
    pub dependents: Vec<String>,
    /// Systems sharing an interface kind and a capability with this one.
    pub compatible_systems: Vec<String>,
    pub incompatible_systems: Vec<String>,
}

/// Requests across all systems, as in the seed's integration summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestTotals {
    pub total_requests: u64,
    pub average_success_rate: f64,
    pub average_error_rate: f64,
}

/// The seed's `get_integration_summary`: how many systems are in each status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationSummary {
    pub total_systems: usize,
    pub healthy_systems: usize,
    pub degraded_systems: usize,
    pub unhealthy_systems: usize,
    pub disconnected_systems: usize,
    pub failed_systems: usize,
    pub health_percentage: f64,
    pub performance_metrics: RequestTotals,
    pub last_updated: DateTime<Utc>,
}

impl Registry {
    /// O(n + c + i) for n systems, c capabilities and i interface kinds.
    pub fn summary(&self) -> RegistrySummary {
        let system_types: BTreeSet<String> = self
            .type_index
            .keys()
            .map(|t| t.as_str().to_owned())
            .collect();
        let mut version_distribution = BTreeMap::new();
        for system in self.systems() {
            *version_distribution
                .entry(system.version.clone())
                .or_default() += 1;
        }
        let sizes = |index: &BTreeMap<String, BTreeSet<String>>| {
            index
                .iter()
                .map(|(k, ids)| (k.clone(), ids.len()))
                .collect()
        };
        RegistrySummary {
            total_systems: self.len(),
            system_types: system_types.into_iter().collect(),
            total_capabilities: self.capability_index.len(),
            total_interfaces: self.interface_index.len(),
            total_dependencies: self.dependency_edges,
            version_distribution,
            capability_distribution: sizes(&self.capability_index),
            interface_distribution: sizes(&self.interface_index),
            last_updated: self.last_changed,
        }
    }

    /// O(n · (c + i)): every other system is checked against the seed's rule.
    pub fn compatibility(&self, system_id: &str) -> Result<Compatibility, Error> {
        let system = self
            .get(system_id)
            .ok_or_else(|| Error::UnknownSystem(system_id.to_owned()))?;
        let (compatible, incompatible): (Vec<_>, Vec<_>) = self
            .systems()
            .filter(|other| other.system_id != system.system_id)
            .partition(|other| system.is_compatible_with(other));
        let ids = |systems: Vec<&crate::SystemInfo>| {
            systems.into_iter().map(|s| s.system_id.clone()).collect()
        };
        Ok(Compatibility {
            system_id: system.system_id.clone(),
            system_type: system.system_type.to_string(),
            version: system.version.clone(),
            capabilities: system.capabilities.clone(),
            interfaces: system.interfaces.keys().cloned().collect(),
            dependencies: system.dependencies.clone(),
            dependents: self
                .dependents(system_id)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            compatible_systems: ids(compatible),
            incompatible_systems: ids(incompatible),
        })
    }

    /// O(n). Status and metrics are the systems' own, so the counts and a system's
    /// status can never disagree.
    pub fn integration_summary(&self) -> IntegrationSummary {
        let count = |status| self.systems().filter(|s| s.status == status).count();
        let total = self.len();
        let healthy = count(IntegrationStatus::Healthy);
        let metrics = self.systems().map(|s| &s.performance_metrics);
        let (requests, success_sum, error_sum) = metrics.fold((0, 0.0, 0.0), |acc, m| {
            (
                acc.0 + m.request_count,
                acc.1 + m.success_rate,
                acc.2 + m.error_rate,
            )
        });
        let mean = |sum: f64| if total == 0 { 0.0 } else { sum / total as f64 };
        IntegrationSummary {
            total_systems: total,
            healthy_systems: healthy,
            degraded_systems: count(IntegrationStatus::Degraded),
            unhealthy_systems: count(IntegrationStatus::Unhealthy),
            disconnected_systems: count(IntegrationStatus::Disconnected),
            failed_systems: count(IntegrationStatus::Failed),
            health_percentage: if total == 0 {
                0.0
            } else {
                healthy as f64 * 100.0 / total as f64
            },
            performance_metrics: RequestTotals {
                total_requests: requests,
                average_success_rate: mean(success_sum),
                average_error_rate: mean(error_sum),
            },
            last_updated: Utc::now(),
        }
    }
}

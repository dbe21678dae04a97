use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{IntegrationStatus, PerformanceMetrics, SystemType};
use crate::{Error, validate};

/// Interface kinds the bus knows how to check and, with their issues, to speak.
pub mod interface {
    /// Base URL of a system's REST API, `http(s)://host:port`.
    pub const REST_API: &str = "rest_api";
    /// A system's gRPC endpoint, `host:port`.
    pub const GRPC: &str = "grpc";
    /// The AMQP queue the bus delivers a system's messages to. `{namespace}` in it stands
    /// for the bus's `amqp.namespace`, so one systems file serves buses in any namespace
    /// without their sharing a queue.
    pub const AMQP: &str = "amqp";

    /// What `{namespace}` in an `amqp` interface is replaced with.
    pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

    /// The queue the AMQP contract gives a system, in whatever namespace the bus runs:
    /// `{namespace}.system.<system_id>`.
    pub fn amqp_queue(system_id: &str) -> String {
        format!("{NAMESPACE_PLACEHOLDER}.system.{system_id}")
    }
}

/// A registered AIM-OS system: what it is, what it offers, what it needs and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInfo {
    pub system_id: String,
    pub system_type: SystemType,
    pub name: String,
    pub version: String,
    #[serde(default = "healthy")]
    pub status: IntegrationStatus,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Ids of the systems this one needs; each must be registered first.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Interface kind (`rest_api`, `grpc`, `amqp`, or another) to its endpoint.
    #[serde(default)]
    pub interfaces: BTreeMap<String, String>,
    #[serde(default)]
    pub configuration: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub last_health_check: Option<DateTime<Utc>>,
    #[serde(default)]
    pub performance_metrics: PerformanceMetrics,
}

fn healthy() -> IntegrationStatus {
    IntegrationStatus::Healthy
}

impl SystemInfo {
    /// The seed's `_validate_system_info` (id, name, version and interfaces present), and
    /// what the bus relies on besides: safe identifiers, parseable interface endpoints,
    /// no repeated capability or dependency.
    pub fn validate(&self) -> Result<(), Error> {
        validate::identifier("system_id", &self.system_id)?;
        // A message's target may name a type or an id; keeping the two apart keeps that
        // unambiguous.
        if SystemType::is_built_in_name(&self.system_id) {
            return Err(Error::invalid(
                "system_id",
                format!(
                    "`{}` is the name of a system type; choose an id such as `{}_001`",
                    self.system_id, self.system_id
                ),
            ));
        }
        validate::text("name", &self.name)?;
        validate::identifier("version", &self.version)?;
        if self.interfaces.is_empty() {
            return Err(Error::invalid(
                "interfaces",
                "are required: give at least one of rest_api, grpc or amqp",
            ));
        }
        for (kind, endpoint) in &self.interfaces {
            let field = format!("interfaces.{kind}");
            validate::identifier("interface kind", kind)?;
            match kind.as_str() {
                interface::REST_API => validate::http_url(&field, endpoint)?,
                interface::GRPC => validate::host_port(&field, endpoint)?,
                interface::AMQP => validate::queue_name(&field, endpoint)?,
                _ => validate::text(&field, endpoint)?,
            }
        }
        unique_identifiers("capabilities", &self.capabilities)?;
        unique_identifiers("dependencies", &self.dependencies)?;
        Ok(())
    }

    /// Whether the seed's compatibility rule holds: a shared interface kind and a shared
    /// capability.
    pub fn is_compatible_with(&self, other: &SystemInfo) -> bool {
        self.interfaces
            .keys()
            .any(|k| other.interfaces.contains_key(k))
            && self
                .capabilities
                .iter()
                .any(|c| other.capabilities.contains(c))
    }
}

fn unique_identifiers(field: &str, values: &[String]) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for (i, value) in values.iter().enumerate() {
        validate::identifier(&format!("{field}[{i}]"), value)?;
        if !seen.insert(value) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("`{value}` is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> SystemInfo {
        serde_json::from_value(serde_json::json!({
            "system_id": "test_system_001",
            "system_type": "cmc",
            "name": "Test System",
            "version": "1.0.0",
            "capabilities": ["test_capability"],
            "interfaces": {"rest_api": "http://localhost:8000"},
        }))
        .unwrap()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let s = system();
        assert_eq!(s.status, IntegrationStatus::Healthy);
        assert_eq!(s.performance_metrics, PerformanceMetrics::default());
        s.validate().unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        type Breakage = fn(&mut SystemInfo);
        let cases: [(&str, Breakage); 8] = [
            ("system_id", |s| s.system_id.clear()),
            ("system_id", |s| s.system_id = "cmc".into()),
            ("name", |s| s.name = " ".into()),
            ("version", |s| s.version.clear()),
            ("interfaces", |s| s.interfaces.clear()),
            ("interfaces.rest_api", |s| {
                s.interfaces.insert("rest_api".into(), "localhost:1".into());
            }),
            ("capabilities[1]", |s| {
                s.capabilities.push("test_capability".into())
            }),
            ("dependencies[0]", |s| s.dependencies.push("bad id".into())),
        ];
        for (field, break_it) in cases {
            let mut s = system();
            break_it(&mut s);
            match s.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_value::<SystemInfo>(serde_json::json!({
            "system_id": "x_001", "system_type": "cmc", "name": "X", "version": "1",
            "interface": {}
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `interface`"),
            "{err}"
        );
    }
}

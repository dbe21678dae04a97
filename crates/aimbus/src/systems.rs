//! `aimbus systems …`: the configured registry as tables for people or JSON for scripts.

use std::io::Write;

use aimbus_core::{Registry, SystemInfo, SystemType, SystemsFile};
use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use crate::cli::{ListFilter, QueryCommand, SystemSelection};

pub fn run(registry: &Registry, command: QueryCommand) -> anyhow::Result<()> {
    let text = match command {
        QueryCommand::List { filter, output } => {
            let systems = filtered(registry, &filter)?;
            if output.json {
                to_json(&systems)?
            } else {
                list_table(&systems)
            }
        }
        QueryCommand::Show { system_id, output } => {
            let system = known(registry, &system_id)?;
            let dependents = registry.dependents(&system_id);
            if output.json {
                let metadata = registry.metadata(&system_id);
                to_json(&json!({
                    "system": system,
                    "dependents": dependents,
                    "registered_at": metadata.map(|m| m.registered_at),
                    "last_updated": metadata.map(|m| m.last_updated),
                }))?
            } else {
                show_table(system, &dependents)
            }
        }
        QueryCommand::Chain { system_id, output } => {
            let chain = registry.dependency_chain(&system_id)?;
            if output.json {
                to_json(&json!({"system_id": system_id, "chain": chain}))?
            } else {
                chain_table(registry, &chain)
            }
        }
    };
    writeln!(std::io::stdout(), "{text}").context("cannot write to standard output")
}

fn filtered<'r>(
    registry: &'r Registry,
    filter: &ListFilter,
) -> anyhow::Result<Vec<&'r SystemInfo>> {
    let mut systems: Vec<&SystemInfo> = match &filter.system_type {
        Some(name) => registry.by_type(&name.parse::<SystemType>()?),
        None => registry.systems().collect(),
    };
    if let Some(capability) = &filter.capability {
        systems.retain(|s| s.capabilities.contains(capability));
    }
    if let Some(kind) = &filter.interface {
        systems.retain(|s| s.interfaces.contains_key(kind));
    }
    Ok(systems)
}

/// The systems a command names: all of them, or those given by id.
pub fn selected(
    systems: &SystemsFile,
    selection: &SystemSelection,
) -> anyhow::Result<Vec<SystemInfo>> {
    if selection.all {
        return Ok(systems.systems().to_vec());
    }
    if selection.system.is_empty() {
        anyhow::bail!("name the systems with --system ID, or give --all");
    }
    selection
        .system
        .iter()
        .map(|id| known(systems.registry(), id).cloned())
        .collect()
}

fn known<'r>(registry: &'r Registry, system_id: &str) -> anyhow::Result<&'r SystemInfo> {
    registry
        .get(system_id)
        .ok_or_else(|| aimbus_core::Error::UnknownSystem(system_id.to_owned()).into())
}

fn to_json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items.join(", ")
    }
}

fn list_table(systems: &[&SystemInfo]) -> String {
    let mut t = table(&[
        "ID",
        "TYPE",
        "NAME",
        "VERSION",
        "STATUS",
        "DEPENDENCIES",
        "INTERFACES",
    ]);
    for s in systems {
        t.add_row(vec![
            s.system_id.clone(),
            s.system_type.to_string(),
            s.name.clone(),
            s.version.clone(),
            s.status.to_string(),
            or_none(&s.dependencies),
            s.interfaces.keys().cloned().collect::<Vec<_>>().join(", "),
        ]);
    }
    format!("{t}\n{} systems", systems.len())
}

fn show_table(s: &SystemInfo, dependents: &[&str]) -> String {
    let mut t = table(&["FIELD", "VALUE"]);
    let metrics = &s.performance_metrics;
    let dependents: Vec<String> = dependents.iter().map(|d| (*d).to_owned()).collect();
    let mut rows = vec![
        ("system_id", s.system_id.clone()),
        ("system_type", s.system_type.to_string()),
        ("name", s.name.clone()),
        ("version", s.version.clone()),
        ("status", s.status.to_string()),
        ("capabilities", or_none(&s.capabilities)),
        ("dependencies", or_none(&s.dependencies)),
        ("dependents", or_none(&dependents)),
    ];
    let interfaces: Vec<(String, String)> = s
        .interfaces
        .iter()
        .map(|(kind, endpoint)| (format!("interfaces.{kind}"), endpoint.clone()))
        .collect();
    let configuration: Vec<(String, String)> = s
        .configuration
        .iter()
        .map(|(key, value)| (format!("configuration.{key}"), value.to_string()))
        .collect();
    rows.push((
        "last_health_check",
        s.last_health_check
            .map_or("never".into(), |t| t.to_rfc3339()),
    ));
    rows.push((
        "requests",
        format!(
            "{} ({:.1}% success, {:.1} ms mean)",
            metrics.request_count,
            metrics.success_rate * 100.0,
            metrics.response_time_ms
        ),
    ));
    for (field, value) in rows {
        t.add_row(vec![field.to_owned(), value]);
    }
    for (field, value) in interfaces.into_iter().chain(configuration) {
        t.add_row(vec![field, value]);
    }
    t.to_string()
}

fn chain_table(registry: &Registry, chain: &[String]) -> String {
    let mut t = table(&["#", "ID", "NAME", "DEPENDS ON"]);
    for (position, id) in chain.iter().enumerate() {
        let (name, deps) = match registry.get(id) {
            Some(s) => (s.name.clone(), or_none(&s.dependencies)),
            None => ("(not registered)".to_owned(), "—".to_owned()),
        };
        t.add_row(vec![(position + 1).to_string(), id.clone(), name, deps]);
    }
    t.to_string()
}

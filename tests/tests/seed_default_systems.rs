//! `configs/systems.toml` must register the AIM-OS systems exactly as the seed's
//! `_register_default_systems` does. Rather than trust a hand copy, this reads the seed
//! itself and compares field by field.

use std::path::Path;

use aimbus_core::{SystemsFile, interface};
use serde_json::Value;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/seed/system-integration-protocols-L4.md"
);
const SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/systems.toml");

/// One `SystemInfo(...)` call of the seed, its Python literals turned into JSON.
struct SeedSystem {
    fields: serde_json::Map<String, Value>,
}

impl SeedSystem {
    fn str(&self, key: &str) -> &str {
        self.fields[key].as_str().unwrap()
    }
}

/// The keyword arguments of each `self.register_system(SystemInfo(...))` in
/// `_register_default_systems`, in order.
fn seed_default_systems(seed: &str) -> Vec<SeedSystem> {
    let start = seed
        .find("def _register_default_systems")
        .expect("the seed registers defaults");
    let end = start + seed[start..].find("def register_system").unwrap();
    seed[start..end]
        .split("self.register_system(SystemInfo(")
        .skip(1)
        .map(|call| {
            let body = &call[..call.find("\n        ))").unwrap()];
            let fields = body
                .lines()
                .filter_map(|line| line.trim().trim_end_matches(',').split_once('='))
                .map(|(key, literal)| (key.trim().to_owned(), python_literal(literal.trim())))
                .collect();
            SeedSystem { fields }
        })
        .collect()
}

/// The seed's literals are JSON but for Python's booleans and enum members.
fn python_literal(literal: &str) -> Value {
    if let Some(member) = literal
        .strip_prefix("SystemType.")
        .or(literal.strip_prefix("IntegrationStatus."))
    {
        return Value::String(member.to_ascii_lowercase());
    }
    let json = literal.replace("True", "true").replace("False", "false");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("`{literal}` is not a literal: {e}"))
}

#[test]
fn systems_toml_registers_the_seed_default_systems_exactly() {
    if !Path::new(SEED).exists() {
        // The seed lives beside the repository, where CI always lays it.
        assert!(std::env::var_os("CI").is_none(), "{SEED} is missing");
        eprintln!("skipped: {SEED} is not here");
        return;
    }
    let seed = seed_default_systems(&std::fs::read_to_string(SEED).unwrap());
    assert_eq!(seed.len(), 11, "the seed registers eleven systems");
    let file = SystemsFile::load(Path::new(SYSTEMS)).unwrap();
    assert_eq!(file.systems().len(), seed.len());
    for (ours, theirs) in file.systems().iter().zip(&seed) {
        let id = theirs.str("system_id");
        assert_eq!(ours.system_id, id);
        assert_eq!(ours.system_type.as_str(), theirs.str("system_type"), "{id}");
        assert_eq!(ours.name, theirs.str("name"), "{id}");
        assert_eq!(ours.version, theirs.str("version"), "{id}");
        assert_eq!(ours.status.as_str(), theirs.str("status"), "{id}");
        assert_eq!(
            serde_json::json!(ours.capabilities),
            theirs.fields["capabilities"],
            "{id}"
        );
        assert_eq!(
            serde_json::json!(ours.dependencies),
            theirs.fields["dependencies"],
            "{id}"
        );
        assert_eq!(
            Value::Object(ours.configuration.clone()),
            theirs.fields["configuration"],
            "{id}"
        );
        // The seed's rest_api and grpc, plus the AMQP queue the bridge delivers to.
        let mut interfaces = theirs.fields["interfaces"].as_object().unwrap().clone();
        interfaces.insert(interface::AMQP.into(), interface::amqp_queue(id).into());
        assert_eq!(
            serde_json::json!(ours.interfaces),
            Value::Object(interfaces),
            "{id}"
        );
    }
}

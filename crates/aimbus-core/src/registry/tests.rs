use serde_json::json;

use super::*;

/// A valid system from a compact description, for graph-shaped tests.
fn system(
    id: &str,
    system_type: &str,
    deps: &[&str],
    caps: &[&str],
    ifaces: &[&str],
) -> SystemInfo {
    let interfaces: serde_json::Map<String, serde_json::Value> = ifaces
        .iter()
        .map(|kind| {
            let endpoint = match *kind {
                "rest_api" => "http://localhost:8000".to_owned(),
                "grpc" => "localhost:8001".to_owned(),
                other => format!("aimbus.system.{other}"),
            };
            ((*kind).to_owned(), json!(endpoint))
        })
        .collect();
    serde_json::from_value(json!({
        "system_id": id, "system_type": system_type, "name": id, "version": "1.0.0",
        "dependencies": deps, "capabilities": caps, "interfaces": interfaces,
    }))
    .unwrap()
}

fn chain_of(ids: &[(&str, &[&str])]) -> Registry {
    let mut registry = Registry::new();
    for (id, deps) in ids {
        registry
            .register(system(id, "cmc", deps, &[], &["rest_api"]))
            .unwrap();
    }
    registry
}

/// Counterparts of the seed's `TestAdvancedSystemRegistry`, one test each, same names.
mod seed_test_advanced_system_registry {
    use super::*;

    fn test_system_info() -> SystemInfo {
        serde_json::from_value(json!({
            "system_id": "test_system_001", "system_type": "cmc", "name": "Test System",
            "version": "1.0.0", "status": "healthy", "capabilities": ["test_capability"],
            "dependencies": [], "interfaces": {"rest_api": "http://localhost:8000"},
            "configuration": {"test_config": "test_value"},
        }))
        .unwrap()
    }

    #[test]
    fn test_registry_initialization() {
        let registry = Registry::new();
        assert!(registry.is_empty());
        let summary = registry.summary();
        assert_eq!(summary.total_systems, 0);
        assert_eq!(summary.total_capabilities, 0);
        assert_eq!(summary.total_interfaces, 0);
        assert_eq!(summary.total_dependencies, 0);
    }

    #[test]
    fn test_system_registration() {
        let mut registry = Registry::new();
        let info = test_system_info();
        assert_eq!(
            registry.register(info.clone()).unwrap(),
            Registration::Added
        );
        assert_eq!(registry.get("test_system_001"), Some(&info));
        assert!(registry.dependencies("test_system_001").is_empty());
        let stored = registry.get("test_system_001").unwrap();
        assert_eq!(stored.capabilities, ["test_capability"]);
        assert_eq!(stored.interfaces["rest_api"], "http://localhost:8000");
        assert_eq!(stored.version, "1.0.0");
        assert_eq!(stored.configuration["test_config"], "test_value");
        assert_eq!(stored.status, IntegrationStatus::Healthy);
        assert_eq!(stored.system_type.as_str(), "cmc");
        let metadata = registry.metadata("test_system_001").unwrap();
        assert_eq!(metadata.registered_at, metadata.last_updated);
    }

    #[test]
    fn test_advanced_indexes() {
        let mut registry = Registry::new();
        registry.register(test_system_info()).unwrap();
        let ids = |systems: Vec<&SystemInfo>| -> Vec<String> {
            systems.into_iter().map(|s| s.system_id.clone()).collect()
        };
        assert_eq!(
            ids(registry.by_capability("test_capability")),
            ["test_system_001"]
        );
        assert_eq!(ids(registry.by_interface("rest_api")), ["test_system_001"]);
        assert_eq!(ids(registry.by_type(&SystemType::Cmc)), ["test_system_001"]);
        assert_eq!(registry.version_history("test_system_001"), ["1.0.0"]);
    }

    #[test]
    fn test_dependency_graph() {
        let registry = chain_of(&[("system_001", &[]), ("system_002", &["system_001"])]);
        assert_eq!(registry.dependencies("system_002"), ["system_001"]);
        assert!(registry.dependencies("system_001").is_empty());
        assert_eq!(registry.dependents("system_001"), ["system_002"]);
        assert!(registry.dependents("system_002").is_empty());
    }

    #[test]
    fn test_get_system_dependents() {
        let registry = chain_of(&[("system_001", &[]), ("system_002", &["system_001"])]);
        assert!(registry.dependents("system_001").contains(&"system_002"));
    }

    #[test]
    fn test_get_dependency_chain() {
        let registry = chain_of(&[
            ("system_001", &[]),
            ("system_002", &["system_001"]),
            ("system_003", &["system_002"]),
        ]);
        assert_eq!(
            registry.dependency_chain("system_003").unwrap(),
            ["system_001", "system_002", "system_003"]
        );
    }

    #[test]
    fn test_get_system_compatibility() {
        let mut registry = Registry::new();
        registry.register(test_system_info()).unwrap();
        let c = registry.compatibility("test_system_001").unwrap();
        assert_eq!(c.system_id, "test_system_001");
        assert_eq!(c.system_type, "cmc");
        assert_eq!(c.version, "1.0.0");
        assert_eq!(c.capabilities, ["test_capability"]);
        assert_eq!(c.interfaces, ["rest_api"]);
        assert!(c.dependencies.is_empty());
        assert!(c.dependents.is_empty());
        assert!(c.compatible_systems.is_empty());
        assert!(c.incompatible_systems.is_empty());
    }

    #[test]
    fn test_get_registry_summary() {
        let mut registry = Registry::new();
        registry.register(test_system_info()).unwrap();
        let summary = registry.summary();
        assert_eq!(summary.total_systems, 1);
        assert_eq!(summary.system_types, ["cmc"]);
        assert_eq!(summary.total_capabilities, 1);
        assert_eq!(summary.total_interfaces, 1);
        // The seed asserts 0 here while its code would count the system itself; edges
        // are what the name promises.
        assert_eq!(summary.total_dependencies, 0);
        assert_eq!(summary.version_distribution["1.0.0"], 1);
        assert_eq!(summary.capability_distribution["test_capability"], 1);
        assert_eq!(summary.interface_distribution["rest_api"], 1);
    }
}

#[test]
fn duplicate_id_at_the_same_version_is_a_typed_error() {
    let mut registry = chain_of(&[("a_001", &[])]);
    let err = registry
        .register(system("a_001", "cmc", &[], &[], &["rest_api"]))
        .unwrap_err();
    assert!(
        matches!(err, Error::DuplicateSystem { ref system_id, ref version } if system_id == "a_001" && version == "1.0.0")
    );
    assert_eq!(err.kind(), crate::ErrorKind::Conflict);
}

#[test]
fn a_new_version_upgrades_the_entry_and_tracks_the_version() {
    let mut registry = Registry::new();
    registry
        .register(system("a_001", "cmc", &[], &["old_cap"], &["rest_api"]))
        .unwrap();
    let registered_at = registry.metadata("a_001").unwrap().registered_at;
    let mut upgraded = system("a_001", "cmc", &[], &["new_cap"], &["grpc"]);
    upgraded.version = "1.1.0".into();
    assert_eq!(
        registry.register(upgraded).unwrap(),
        Registration::Upgraded {
            previous_version: "1.0.0".into()
        }
    );
    assert_eq!(registry.version_history("a_001"), ["1.0.0", "1.1.0"]);
    assert!(registry.by_capability("old_cap").is_empty());
    assert!(registry.by_interface("rest_api").is_empty());
    assert_eq!(registry.by_capability("new_cap").len(), 1);
    assert_eq!(
        registry.metadata("a_001").unwrap().registered_at,
        registered_at
    );
    assert_eq!(
        registry
            .summary()
            .version_distribution
            .keys()
            .collect::<Vec<_>>(),
        ["1.1.0"]
    );
}

#[test]
fn unregister_leaves_no_trace_in_any_index() {
    let mut registry = Registry::new();
    registry
        .register(system("a_001", "cmc", &[], &["cap"], &["rest_api"]))
        .unwrap();
    registry
        .register(system("b_001", "hhni", &["a_001"], &["cap"], &["grpc"]))
        .unwrap();
    let removed = registry.unregister("b_001").unwrap();
    assert_eq!(removed.system_id, "b_001");
    assert!(registry.get("b_001").is_none());
    assert!(registry.dependents("a_001").is_empty());
    assert!(registry.by_type(&SystemType::Hhni).is_empty());
    assert_eq!(registry.by_capability("cap").len(), 1);
    assert!(registry.by_interface("grpc").is_empty());
    assert!(registry.version_history("b_001").is_empty());
    let summary = registry.summary();
    assert_eq!((summary.total_systems, summary.total_dependencies), (1, 0));
    assert_eq!(summary.system_types, ["cmc"]);
    assert!(matches!(
        registry.unregister("b_001"),
        Err(Error::UnknownSystem(_))
    ));
}

#[test]
fn dependencies_must_be_registered_first() {
    let mut registry = Registry::new();
    let err = registry
        .register(system("b_001", "cmc", &["a_001"], &[], &["rest_api"]))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownDependency { ref dependency, .. } if dependency == "a_001")
    );
    assert!(registry.is_empty());
}

#[test]
fn a_cycle_is_refused_and_named() {
    let mut registry = chain_of(&[("a_001", &[]), ("b_001", &["a_001"]), ("c_001", &["b_001"])]);
    // Upgrading a so that it depends on c closes a -> c -> b -> a.
    let mut cyclic = system("a_001", "cmc", &["c_001"], &[], &["rest_api"]);
    cyclic.version = "2.0.0".into();
    let err = registry.register(cyclic).unwrap_err();
    match &err {
        Error::DependencyCycle { cycle } => {
            assert_eq!(cycle, &["a_001", "c_001", "b_001", "a_001"])
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "dependency cycle: a_001 -> c_001 -> b_001 -> a_001"
    );
    // Nothing changed.
    assert_eq!(registry.get("a_001").unwrap().version, "1.0.0");
    assert_eq!(
        registry.dependency_chain("c_001").unwrap(),
        ["a_001", "b_001", "c_001"]
    );

    let self_loop = registry.register(system("d_001", "cmc", &["d_001"], &[], &["rest_api"]));
    assert!(
        matches!(self_loop, Err(Error::DependencyCycle { cycle }) if cycle == ["d_001", "d_001"])
    );
}

#[test]
fn re_registering_an_unregistered_dependency_cannot_close_a_cycle() {
    let mut registry = chain_of(&[("a_001", &[]), ("b_001", &["a_001"])]);
    registry.unregister("a_001").unwrap();
    assert_eq!(registry.unmet_dependencies("b_001"), ["a_001"]);
    assert_eq!(
        registry.dependency_chain("b_001").unwrap(),
        ["a_001", "b_001"]
    );
    let err = registry
        .register(system("a_001", "cmc", &["b_001"], &[], &["rest_api"]))
        .unwrap_err();
    assert!(
        matches!(err, Error::DependencyCycle { cycle } if cycle == ["a_001", "b_001", "a_001"])
    );
}

#[test]
fn chain_lists_shared_dependencies_once_before_their_dependents() {
    // A diamond: d needs b and c, both need a.
    let registry = chain_of(&[
        ("a_001", &[]),
        ("b_001", &["a_001"]),
        ("c_001", &["a_001"]),
        ("d_001", &["b_001", "c_001"]),
    ]);
    let chain = registry.dependency_chain("d_001").unwrap();
    assert_eq!(chain, ["a_001", "b_001", "c_001", "d_001"]);
    assert!(matches!(
        registry.dependency_chain("zz_001"),
        Err(Error::UnknownSystem(_))
    ));
}

#[test]
fn systems_requiring_a_capability_are_the_dependents_of_its_providers() {
    let mut registry = Registry::new();
    registry
        .register(system("a_001", "cmc", &[], &["memory"], &["rest_api"]))
        .unwrap();
    registry
        .register(system("b_001", "cmc", &[], &["memory"], &["rest_api"]))
        .unwrap();
    registry
        .register(system("c_001", "hhni", &["a_001"], &[], &["rest_api"]))
        .unwrap();
    registry
        .register(system(
            "d_001",
            "vif",
            &["a_001", "b_001"],
            &[],
            &["rest_api"],
        ))
        .unwrap();
    registry
        .register(system("e_001", "vif", &[], &[], &["rest_api"]))
        .unwrap();
    assert_eq!(
        registry.systems_requiring_capability("memory"),
        ["c_001", "d_001"]
    );
    assert!(registry.systems_requiring_capability("unknown").is_empty());
}

#[test]
fn compatibility_needs_a_shared_interface_and_a_shared_capability() {
    let mut registry = Registry::new();
    registry
        .register(system("a_001", "cmc", &[], &["x", "y"], &["rest_api"]))
        .unwrap();
    registry
        .register(system("b_001", "cmc", &[], &["y"], &["rest_api", "grpc"]))
        .unwrap();
    registry
        .register(system("c_001", "cmc", &[], &["y"], &["grpc"]))
        .unwrap();
    registry
        .register(system("d_001", "cmc", &[], &["z"], &["rest_api"]))
        .unwrap();
    let c = registry.compatibility("a_001").unwrap();
    assert_eq!(c.compatible_systems, ["b_001"]);
    assert_eq!(c.incompatible_systems, ["c_001", "d_001"]);
}

#[test]
fn invalid_systems_are_refused_before_touching_any_index() {
    let mut registry = Registry::new();
    let mut bad = system("a_001", "cmc", &[], &[], &["rest_api"]);
    bad.interfaces.insert("rest_api".into(), "not a url".into());
    assert!(matches!(registry.register(bad), Err(Error::Invalid { .. })));
    assert!(registry.is_empty());
    assert!(registry.summary().interface_distribution.is_empty());
}

#[test]
fn status_and_health_checks_update_the_one_status_there_is() {
    let mut registry = chain_of(&[("a_001", &[])]);
    let before = registry.metadata("a_001").unwrap().last_updated;
    assert_eq!(
        registry
            .set_status("a_001", IntegrationStatus::Unhealthy)
            .unwrap(),
        IntegrationStatus::Healthy
    );
    assert!(registry.metadata("a_001").unwrap().last_updated >= before);
    let check = HealthCheckResult::new("a_001", SystemType::Cmc, IntegrationStatus::Healthy, 12.0);
    assert_eq!(
        registry.apply_health_check(&check).unwrap(),
        IntegrationStatus::Unhealthy
    );
    let system = registry.get("a_001").unwrap();
    assert_eq!(system.status, IntegrationStatus::Healthy);
    assert_eq!(system.last_health_check, Some(check.timestamp));
    assert_eq!(registry.integration_summary().healthy_systems, 1);
    assert!(matches!(
        registry.set_status("nope_001", IntegrationStatus::Healthy),
        Err(Error::UnknownSystem(_))
    ));
}

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/aimbus.toml");
const SHIPPED_SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/systems.toml");

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn parse(text: &str, env: Vec<(String, String)>) -> Result<Config, Error> {
    Config::from_toml_str("test.toml", text, env, PathBuf::from("/etc/aimbus"))
}

fn config_error(result: Result<Config, Error>) -> (String, String, String) {
    match result {
        Err(Error::Config {
            origin,
            key,
            problem,
        }) => (origin, key, problem),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn the_shipped_file_holds_the_seed_defaults() {
    let shipped = Config::load(SHIPPED.as_ref(), no_env()).unwrap();
    assert_eq!(shipped.sections, Sections::default());
    let core = shipped.core();
    assert_eq!(core.max_concurrent_requests, 1000);
    assert_eq!(core.request_timeout_seconds, 60);
    assert_eq!(core.retry_attempts, 3);
    assert_eq!(shipped.monitoring().health_check_interval_seconds, 30);
    assert_eq!(shipped.monitoring().log_level, LogLevel::Info);
    assert_eq!(shipped.caching().cache_eviction_policy, EvictionPolicy::Lru);
    assert_eq!(
        shipped.circuit_breaker().circuit_breaker_failure_threshold,
        5
    );
    assert_eq!(shipped.fallback().fallback_retry_attempts, 2);
    assert_eq!(
        shipped.load_balancing().load_balancing_algorithm,
        LoadBalancingAlgorithm::RoundRobin
    );
    assert!(shipped.systems_file().ends_with("configs/systems.toml"));
}

#[test]
fn the_shipped_file_documents_every_key() {
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let defaults = toml::Value::try_from(Sections::default()).unwrap();
    let mut expected = BTreeSet::new();
    for (section, fields) in defaults.as_table().unwrap() {
        for field in fields.as_table().unwrap().keys() {
            expected.insert(format!("{section}.{field}"));
        }
    }
    let mut documented = BTreeSet::new();
    let mut section = String::new();
    let mut previous = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                previous.starts_with('#'),
                "`{section}.{key}` has no comment above it"
            );
            documented.insert(format!("{section}.{key}"));
        }
        previous = line;
    }
    assert_eq!(documented, expected);
}

#[test]
fn an_empty_file_means_the_defaults() {
    assert_eq!(
        parse("", no_env()).unwrap(),
        Config {
            base_dir: PathBuf::from("/etc/aimbus"),
            ..Config::default()
        }
    );
}

#[test]
fn environment_overrides_file_values() {
    let config = parse(
        "[core]\nrequest_timeout_seconds = 30\n",
        env(&[
            ("AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS", "5"),
            ("AIMBUS_MONITORING__LOG_LEVEL", "debug"),
            ("AIMBUS_CORE__RETRY_DELAY_SECONDS", "0.25"),
            ("AIMBUS_REGISTRY__SYSTEMS_FILE", "/srv/systems.toml"),
            ("AIMBUS_CONFIG", "ignored: not a key"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.core().request_timeout_seconds, 5);
    assert_eq!(config.core().retry_delay_seconds, 0.25);
    assert_eq!(config.monitoring().log_level, LogLevel::Debug);
    assert_eq!(config.systems_file(), PathBuf::from("/srv/systems.toml"));
}

#[test]
fn unknown_keys_are_refused_wherever_they_come_from() {
    let (origin, key, problem) =
        config_error(parse("[core]\nmax_concurrent_request = 5\n", no_env()));
    assert_eq!(origin, "test.toml");
    assert_eq!(key, "core.max_concurrent_request");
    assert!(
        problem.contains("unknown field `max_concurrent_request`"),
        "{problem}"
    );
    assert!(
        problem.contains("max_concurrent_requests"),
        "valid keys are listed: {problem}"
    );

    let (_, key, problem) = config_error(parse("[cores]\n", no_env()));
    assert_eq!(key, "cores");
    assert!(problem.contains("unknown field `cores`"), "{problem}");

    let (origin, key, _) = config_error(parse("", env(&[("AIMBUS_CORE__TIMEOUT", "5")])));
    assert_eq!(origin, "environment variable AIMBUS_CORE__TIMEOUT");
    assert_eq!(key, "core.timeout");

    let (origin, _, problem) = config_error(parse("", env(&[("AIMBUS_A__B__C", "5")])));
    assert_eq!(origin, "environment variable AIMBUS_A__B__C");
    assert!(problem.contains("AIMBUS_<SECTION>__<FIELD>"), "{problem}");
}

#[test]
fn the_moved_interface_preference_says_where_it_went() {
    let (origin, key, problem) = config_error(parse(
        "[amqp]\ninterface_preference = [\"rest_api\"]\n",
        no_env(),
    ));
    assert_eq!(
        (origin.as_str(), key.as_str()),
        ("test.toml", "amqp.interface_preference")
    );
    assert!(
        problem.contains("transports.interface_preference"),
        "{problem}"
    );
    let (origin, ..) = config_error(parse(
        "",
        env(&[("AIMBUS_AMQP__INTERFACE_PREFERENCE", "[\"grpc\"]")]),
    ));
    assert_eq!(
        origin,
        "environment variable AIMBUS_AMQP__INTERFACE_PREFERENCE"
    );
    let config = parse(
        "[transports]\ninterface_preference = [\"grpc\", \"amqp\"]\n",
        no_env(),
    )
    .unwrap();
    assert_eq!(config.transports().interface_preference, ["grpc", "amqp"]);
    assert_eq!(
        Config::default().transports().interface_preference,
        ["amqp", "grpc", "rest_api"]
    );
}

#[test]
fn bad_values_name_the_key_the_value_and_what_is_valid() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[load_balancing]\nload_balancing_algorithm = \"fastest\"",
            "load_balancing.load_balancing_algorithm",
            &["\"fastest\"", "round_robin", "least_in_flight", "weighted"],
        ),
        (
            "[circuit_breaker]\ncircuit_breaker_failure_threshold = 0",
            "circuit_breaker.circuit_breaker_failure_threshold",
            &["got 0", "from 1 to 10000"],
        ),
        (
            "[core]\nmax_concurrent_requests = -1",
            "core.max_concurrent_requests",
            &["got -1", "u32"],
        ),
        (
            "[core]\nrequest_timeout_seconds = \"sixty\"",
            "core.request_timeout_seconds",
            &["\"sixty\"", "u64"],
        ),
        (
            "[monitoring]\nlog_level = \"LOUD\"",
            "monitoring.log_level",
            &["LOUD", "TRACE, DEBUG, INFO, WARN, ERROR"],
        ),
        (
            "[core]\nretry_backoff_multiplier = nan",
            "core.retry_backoff_multiplier",
            &["got NaN", "from 1 to 10"],
        ),
        (
            "[caching]\nredis_url = \"127.0.0.1:6379\"",
            "caching.redis_url",
            &["127.0.0.1:6379", "redis://127.0.0.1:6379"],
        ),
        (
            "[registry]\ndatabase_url = \"mysql://db/aimbus\"",
            "registry.database_url",
            &["sqlite://<file>", "postgres://"],
        ),
        (
            "[cluster]\nheartbeat_interval_seconds = 10\nnode_expiry_seconds = 5",
            "cluster.node_expiry_seconds",
            &["got 5", "from 11"],
        ),
        (
            "[supervision]\nrestart_initial_backoff_ms = 500\nrestart_max_backoff_ms = 100",
            "supervision.restart_max_backoff_ms",
            &["got 100", "from 500"],
        ),
        (
            "[limits]\nmax_nesting_depth = 500",
            "limits.max_nesting_depth",
            &["got 500", "to 128"],
        ),
        (
            "[telemetry]\notlp_endpoint = \"localhost:4317\"",
            "telemetry.otlp_endpoint",
            &["localhost:4317", "http://127.0.0.1:4317"],
        ),
        (
            "[telemetry]\nsampling_ratio = 1.5",
            "telemetry.sampling_ratio",
            &["got 1.5", "from 0 to 1"],
        ),
        (
            "[telemetry]\nexport_queue_size = 100\nexport_batch_size = 200",
            "telemetry.export_batch_size",
            &["got 200", "to 100"],
        ),
        (
            "[telemetry]\notlp_protocol = \"thrift\"",
            "telemetry.otlp_protocol",
            &["thrift", "grpc", "http_protobuf"],
        ),
        (
            "[security]\nencryption_algorithm = \"ROT13\"",
            "security.encryption_algorithm",
            &["ROT13", "AES-256-GCM"],
        ),
        (
            "[security]\nauthentication_method = \"oauth\"",
            "security.authentication_method",
            &["oauth", "jwt"],
        ),
    ];
    for (text, expected_key, fragments) in cases {
        let (origin, key, problem) = config_error(parse(text, no_env()));
        assert_eq!(origin, "test.toml");
        assert_eq!(&key, expected_key, "{text}");
        for fragment in *fragments {
            assert!(
                problem.contains(fragment),
                "{text}: `{problem}` lacks `{fragment}`"
            );
        }
    }
}

#[test]
fn a_bad_environment_value_blames_the_variable() {
    let (origin, key, problem) = config_error(parse(
        "",
        env(&[("AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS", "0")]),
    ));
    assert_eq!(
        origin,
        "environment variable AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS"
    );
    assert_eq!(key, "core.request_timeout_seconds");
    assert!(problem.contains("got 0"), "{problem}");
    let message = Error::Config {
        origin,
        key,
        problem,
    }
    .to_string();
    assert!(message.starts_with("environment variable AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS: `core.request_timeout_seconds`: got 0"), "{message}");
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let err = parse("[core]\nmax_concurrent_requests = \n", no_env()).unwrap_err();
    let Error::ConfigFile { path, reason } = &err else {
        panic!("expected a file error, got {err:?}");
    };
    assert_eq!(path, "test.toml");
    assert!(reason.contains("line 2"), "{reason}");
}

#[test]
fn a_missing_file_is_a_config_error() {
    let err = Config::load("/nonexistent/aimbus.toml".as_ref(), no_env()).unwrap_err();
    assert!(err.is_config_error());
    assert!(
        err.to_string()
            .starts_with("/nonexistent/aimbus.toml: cannot read"),
        "{err}"
    );
}

mod systems_file {
    use super::*;
    use crate::{IntegrationStatus, SystemType, interface};

    #[test]
    fn the_shipped_file_registers_the_eleven_aim_os_systems() {
        let file = SystemsFile::load(SHIPPED_SYSTEMS.as_ref()).unwrap();
        let ids: Vec<&str> = file
            .systems()
            .iter()
            .map(|s| s.system_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "cmc_001",
                "hhni_001",
                "vif_001",
                "apoe_001",
                "seg_001",
                "sdfcvf_001",
                "cas_001",
                "timeline_001",
                "cross_model_001",
                "dual_prompt_001",
                "mcp_001"
            ]
        );
        for (system, (port, system_type)) in file
            .systems()
            .iter()
            .zip((8001..).step_by(2).zip(SystemType::BUILT_IN))
        {
            assert_eq!(system.system_type, system_type);
            assert_eq!(system.version, "1.0.0");
            assert_eq!(system.status, IntegrationStatus::Healthy);
            assert_eq!(system.capabilities.len(), 3);
            assert_eq!(
                system.interfaces["rest_api"],
                format!("http://localhost:{port}")
            );
            assert_eq!(system.interfaces["grpc"], format!("localhost:{}", port + 1));
            assert_eq!(
                system.interfaces["amqp"],
                interface::amqp_queue(&system.system_id)
            );
        }
        let registry = file.registry();
        assert_eq!(
            registry.dependencies("apoe_001"),
            ["cmc_001", "hhni_001", "vif_001"]
        );
        assert_eq!(
            registry.get("cmc_001").unwrap().configuration["memory_limit"],
            "1GB"
        );
        assert_eq!(
            registry.get("dual_prompt_001").unwrap().configuration["context_dump_threshold"],
            0.85
        );
        assert_eq!(registry.dependents("cmc_001").len(), 10);
        assert_eq!(
            registry.dependency_chain("mcp_001").unwrap(),
            ["cmc_001", "hhni_001", "vif_001", "apoe_001", "mcp_001"]
        );
    }

    fn entry(id: &str, deps: &str, rest: &str) -> String {
        format!(
            "[[systems]]\nsystem_id = \"{id}\"\nsystem_type = \"cmc\"\nname = \"N\"\nversion = \"1\"\n\
             dependencies = {deps}\ninterfaces = {{ rest_api = \"{rest}\" }}\n"
        )
    }

    fn file_error(text: &str) -> (String, String) {
        match SystemsFile::parse("systems.toml", text) {
            Err(Error::Config {
                origin,
                key,
                problem,
            }) => {
                assert_eq!(origin, "systems.toml");
                (key, problem)
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn errors_point_at_the_entry_and_field() {
        let ok = entry("a_001", "[]", "http://localhost:1");
        let (key, problem) = file_error(&format!("{ok}{}", entry("b_001", "[]", "localhost:1")));
        assert_eq!(key, "systems[1].interfaces.rest_api");
        assert!(problem.contains("`localhost:1`"), "{problem}");

        let (key, problem) = file_error(&format!("{ok}{ok}"));
        assert_eq!(key, "systems[1]");
        assert!(problem.contains("already registered"), "{problem}");

        let (key, problem) = file_error(&entry("b_001", "[\"a_001\"]", "http://x:1"));
        assert_eq!(key, "systems[0]");
        assert!(
            problem.contains("`a_001`, which is not registered"),
            "{problem}"
        );

        let (key, problem) = file_error(
            "[[systems]]\nsystem_id = \"a\"\nsystem_type = \"cmc\"\nname = \"N\"\nversion = \"1\"\nport = 1\n",
        );
        assert_eq!(key, "systems[0].port");
        assert!(problem.contains("unknown field `port`"), "{problem}");
    }
}

/// The configuration docker-compose runs with is valid and points where the stack is.
#[test]
fn the_docker_configuration_is_valid() {
    let docker = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/docker.toml");
    let config = Config::load(docker.as_ref(), no_env()).unwrap();
    assert_eq!(config.amqp().url, "amqp://guest:guest@rabbitmq:5672/%2f");
    assert_eq!(config.telemetry().otlp_endpoint, "http://jaeger:4317");
    assert_eq!(config.telemetry().log_format, LogFormat::Json);
    assert_eq!(
        config.resolve_path(&config.security().encryption_keyring_file),
        std::path::Path::new("/var/lib/aimbus/keyring.toml")
    );
}

/// The three-node configuration is valid and says what a cluster needs: a shared store,
/// quorum queues and the shared cache tier.
#[test]
fn the_cluster_configuration_is_valid() {
    let cluster = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/cluster.toml");
    let config = Config::load(cluster.as_ref(), no_env()).unwrap();
    assert!(config.registry_database_url().starts_with("postgres://"));
    assert_eq!(config.amqp().queue_type, QueueType::Quorum);
    assert!(config.caching().distributed_cache_enabled);
    assert!(config.systems_file().ends_with("configs/systems.toml"));
    assert!(
        config.cluster().node_id.is_empty(),
        "each node gets its own"
    );
}

#[test]
fn an_empty_node_id_is_generated_once_and_a_configured_one_kept() {
    let generated = Config::default().with_node_id();
    let id = generated.cluster().node_id.clone();
    assert!(crate::validate::identifier("node_id", &id).is_ok(), "{id}");
    assert_eq!(
        generated.with_node_id().cluster().node_id,
        id,
        "kept once set"
    );
    let configured = Config::from_toml_str(
        "t",
        "[cluster]\nnode_id = \"node-a\"\n",
        no_env(),
        ".".into(),
    )
    .unwrap()
    .with_node_id();
    assert_eq!(configured.cluster().node_id, "node-a");
}

fn with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml_str("aimbus.toml", text, env, ".".into())
}

/// OpenTelemetry's variables, as every OpenTelemetry SDK reads them: over the file, under
/// the bus's own `AIMBUS_TELEMETRY__*`.
#[test]
fn opentelemetry_variables_override_the_file_and_aimbus_variables_override_them() {
    let file = "[telemetry]\notlp_endpoint = \"http://file:4317\"\nservice_name = \"from-file\"\n";
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:14317"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:14318/custom/traces",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s%3Dcret,x-team = aim",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-resource,deployment.environment=prod",
        ),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ];
    let config = with_env(file, &otel).unwrap();
    let t = config.telemetry();
    assert_eq!(t.otlp_endpoint, "http://collector:14317");
    assert_eq!(
        t.otlp_traces_endpoint,
        "http://collector:14318/custom/traces"
    );
    assert_eq!(t.otlp_protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(t.otlp_headers["api-key"], "s=cret");
    assert_eq!(t.otlp_headers["x-team"], "aim");
    assert_eq!(
        t.service_name, "from-resource",
        "OTEL_RESOURCE_ATTRIBUTES' service.name"
    );
    assert_eq!(t.resource_attributes["deployment.environment"], "prod");
    assert_eq!(t.sampler, TraceSampler::TraceIdRatio);
    assert_eq!(t.sampling_ratio, 0.25);
    assert!(config.monitoring().enable_tracing);

    let mut both = otel.to_vec();
    both.push(("OTEL_SERVICE_NAME", "from-otel"));
    both.push(("AIMBUS_TELEMETRY__OTLP_ENDPOINT", "http://aimbus:4317"));
    both.push(("OTEL_SDK_DISABLED", "TRUE"));
    let config = with_env(file, &both).unwrap();
    assert_eq!(config.telemetry().service_name, "from-otel");
    assert_eq!(config.telemetry().otlp_endpoint, "http://aimbus:4317");
    assert!(!config.monitoring().enable_tracing, "OTEL_SDK_DISABLED");
}

#[test]
fn bad_opentelemetry_variables_are_refused_naming_the_variable() {
    for (var, value, expected) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "expected grpc or http/protobuf",
        ),
        (
            "OTEL_TRACES_SAMPLER",
            "jaeger_remote",
            "parentbased_traceidratio",
        ),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "from 0 to 1"),
        ("OTEL_TRACES_SAMPLER_ARG", "2", "from 0 to 1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team", "not key=value"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz", "percent escape"),
        ("OTEL_SERVICE_NAME", "two words", "telemetry.service_name"),
    ] {
        let error = with_env("", &[(var, value)]).unwrap_err().to_string();
        assert!(
            error.contains(&format!("environment variable {var}")),
            "{var}: {error}"
        );
        assert!(error.contains(expected), "{var}: {error}");
    }
}

//! Configuration: parsed from TOML into serde sections (unknown keys rejected, seed
//! defaults), overridden from `AIMBUS_<SECTION>__<FIELD>` environment variables, then
//! validated into an immutable [`Config`]. Every error names where the value came from,
//! the key, the value and what would be valid.

mod sections;
mod systems_file;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use sections::{
    AmqpConfig, AuthenticationMethod, CachingConfig, CircuitBreakerConfig, ClusterConfig,
    CoreConfig, EncryptionAlgorithm, EvictionPolicy, FallbackConfig, GatewayConfig, JwtAlgorithm,
    LimitsConfig, LoadBalancingAlgorithm, LoadBalancingConfig, LogFormat, LogLevel,
    MonitoringConfig, OtlpProtocol, PerformanceConfig, QueueType, RateLimitingConfig,
    RegistryConfig, SecurityConfig, SlidingWindowType, SupervisionConfig, TelemetryConfig,
    TraceSampler, TransportsConfig,
};
pub use systems_file::SystemsFile;

use crate::Error;
use crate::codec::{Codec, Compression, DecodeLimits, MAX_SUPPORTED_DEPTH};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "AIMBUS_";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Sections {
    core: CoreConfig,
    performance: PerformanceConfig,
    caching: CachingConfig,
    security: SecurityConfig,
    monitoring: MonitoringConfig,
    rate_limiting: RateLimitingConfig,
    load_balancing: LoadBalancingConfig,
    circuit_breaker: CircuitBreakerConfig,
    fallback: FallbackConfig,
    registry: RegistryConfig,
    cluster: ClusterConfig,
    limits: LimitsConfig,
    supervision: SupervisionConfig,
    amqp: AmqpConfig,
    transports: TransportsConfig,
    gateway: GatewayConfig,
    telemetry: TelemetryConfig,
}

/// Validated configuration of one bus instance. Only [`Config::load`],
/// [`Config::from_toml_str`] and [`Config::default`] make one, so every instance holds
/// values that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    sections: Sections,
    /// The folder relative paths in the file are taken from.
    base_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sections: Sections::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

impl Config {
    /// Reads `path`, applies the `AIMBUS_<SECTION>__<FIELD>` overrides found in `env`
    /// (pass `std::env::vars()`, or a map of your own in tests) and validates the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            reason: format!("cannot read the configuration file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_toml_str(&path.display().to_string(), &text, env, base_dir)
    }

    /// Like [`Config::load`] for text at hand; `origin` names it in error messages.
    pub fn from_toml_str(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        base_dir: PathBuf,
    ) -> Result<Config, Error> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| Error::ConfigFile {
                    path: origin.to_owned(),
                    reason: e.to_string().trim_end().to_owned(),
                })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        // OpenTelemetry's own variables over the file, the bus's own over both: the more
        // specific setting wins (and is named first when an error is blamed).
        let otel = apply_otel_env(&mut table, &env)?;
        let mut overrides = apply_env_overrides(&mut table, env)?;
        overrides.extend(otel);
        let origin_of = |key: &str| -> String {
            overrides
                .iter()
                .find(|(k, _)| key == k.as_str() || key.starts_with(&format!("{k}.")))
                .map(|(_, var)| format!("environment variable {var}"))
                .unwrap_or_else(|| origin.to_owned())
        };
        // It orders every transport, not AMQP's alone; a file written before the move is
        // told where the key went rather than that it is unknown.
        let moved = "amqp.interface_preference";
        if lookup(&table, moved).is_some() {
            return Err(Error::Config {
                origin: origin_of(moved),
                key: moved.to_owned(),
                problem: "moved: set transports.interface_preference instead".to_owned(),
            });
        }
        let sections: Sections =
            serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                let key = e.path().to_string();
                let shown = lookup(&table, &key)
                    .map(|v| format!("got {v}: "))
                    .unwrap_or_default();
                Error::Config {
                    origin: origin_of(&key),
                    key,
                    problem: format!("{shown}{}", e.inner().message().trim_end()),
                }
            })?;
        let config = Config { sections, base_dir };
        config.validate(&origin_of)?;
        Ok(config)
    }

    pub fn core(&self) -> &CoreConfig {
        &self.sections.core
    }
    pub fn performance(&self) -> &PerformanceConfig {
        &self.sections.performance
    }
    pub fn caching(&self) -> &CachingConfig {
        &self.sections.caching
    }
    pub fn security(&self) -> &SecurityConfig {
        &self.sections.security
    }
    pub fn monitoring(&self) -> &MonitoringConfig {
        &self.sections.monitoring
    }
    pub fn rate_limiting(&self) -> &RateLimitingConfig {
        &self.sections.rate_limiting
    }
    pub fn load_balancing(&self) -> &LoadBalancingConfig {
        &self.sections.load_balancing
    }
    pub fn circuit_breaker(&self) -> &CircuitBreakerConfig {
        &self.sections.circuit_breaker
    }
    pub fn fallback(&self) -> &FallbackConfig {
        &self.sections.fallback
    }
    pub fn registry(&self) -> &RegistryConfig {
        &self.sections.registry
    }
    pub fn cluster(&self) -> &ClusterConfig {
        &self.sections.cluster
    }
    pub fn supervision(&self) -> &SupervisionConfig {
        &self.sections.supervision
    }
    pub fn amqp(&self) -> &AmqpConfig {
        &self.sections.amqp
    }
    pub fn transports(&self) -> &TransportsConfig {
        &self.sections.transports
    }

    pub fn gateway(&self) -> &GatewayConfig {
        &self.sections.gateway
    }
    pub fn telemetry(&self) -> &TelemetryConfig {
        &self.sections.telemetry
    }

    /// A path from the configuration, relative ones taken from the config file's folder.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The systems file, with a relative path taken from the config file's folder.
    pub fn systems_file(&self) -> PathBuf {
        self.base_dir.join(&self.sections.registry.systems_file)
    }

    /// This configuration with `cluster.node_id` set: kept when configured, otherwise
    /// `<hostname>-<8 random hex digits>`, new at each start.
    pub fn with_node_id(mut self) -> Config {
        if self.sections.cluster.node_id.is_empty() {
            let host: String = host_name()
                .unwrap_or_else(|| "aimbus".to_owned())
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(48)
                .collect();
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            self.sections.cluster.node_id = format!("{host}-{}", &suffix[..8]);
        }
        self
    }

    /// The registry store's URL: `registry.database_url`, or the SQLite file in
    /// `registry.data_dir` when that is empty.
    pub fn registry_database_url(&self) -> String {
        let r = &self.sections.registry;
        if r.database_url.is_empty() {
            let file = self.base_dir.join(&r.data_dir).join("registry.db");
            format!("sqlite://{}", file.display())
        } else {
            r.database_url.clone()
        }
    }

    /// The codec for the wire: the decode limits, and compression as configured.
    pub fn codec(&self) -> Codec {
        let p = &self.sections.performance;
        let compression =
            (p.enable_compression && p.compression_level > 0).then_some(Compression {
                level: p.compression_level,
                threshold_bytes: p.compression_threshold_bytes,
            });
        Codec::new(self.decode_limits()).with_compression(compression)
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_bytes: self.sections.limits.max_message_bytes,
            max_depth: self.sections.limits.max_nesting_depth,
        }
    }

    fn validate(&self, origin_of: &dyn Fn(&str) -> String) -> Result<(), Error> {
        let check = Checker { origin_of };
        let s = &self.sections;
        check.range(
            "core.max_concurrent_requests",
            s.core.max_concurrent_requests,
            1,
            1_000_000,
        )?;
        check.range(
            "core.request_timeout_seconds",
            s.core.request_timeout_seconds,
            1,
            3_600,
        )?;
        check.range("core.retry_attempts", s.core.retry_attempts, 1, 100)?;
        check.range(
            "core.retry_delay_seconds",
            s.core.retry_delay_seconds,
            0.0,
            3_600.0,
        )?;
        check.range(
            "core.retry_backoff_multiplier",
            s.core.retry_backoff_multiplier,
            1.0,
            10.0,
        )?;
        check.range(
            "core.max_concurrent_requests_per_system",
            s.core.max_concurrent_requests_per_system,
            1,
            s.core.max_concurrent_requests,
        )?;
        check.range(
            "core.retry_budget_ratio",
            s.core.retry_budget_ratio,
            0.0,
            10.0,
        )?;
        check.range(
            "core.retry_budget_min_retries_per_second",
            s.core.retry_budget_min_retries_per_second,
            0,
            100_000,
        )?;
        let p = &s.performance;
        check.range(
            "performance.max_connections_per_host",
            p.max_connections_per_host,
            1,
            10_000,
        )?;
        check.range(
            "performance.keepalive_timeout_seconds",
            p.keepalive_timeout_seconds,
            1,
            3_600,
        )?;
        check.range("performance.compression_level", p.compression_level, 0, 9)?;
        check.range(
            "performance.compression_threshold_bytes",
            p.compression_threshold_bytes,
            0,
            64 * 1024 * 1024,
        )?;
        let c = &s.caching;
        check.range(
            "caching.cache_ttl_seconds",
            c.cache_ttl_seconds,
            1,
            2_592_000,
        )?;
        check.range(
            "caching.cache_max_size_mb",
            c.cache_max_size_mb,
            1,
            1_048_576,
        )?;
        for (i, message_type) in c.cacheable_message_types.iter().enumerate() {
            let key = format!("caching.cacheable_message_types[{i}]");
            crate::validate::identifier(&key, message_type).map_err(|e| check.error(&key, e))?;
        }
        match url::Url::parse(&c.redis_url) {
            Ok(url) if matches!(url.scheme(), "redis" | "rediss") => {}
            _ => {
                return Err(check.error(
                    "caching.redis_url",
                    format!(
                        "got {:?}: expected a redis:// URL such as redis://127.0.0.1:6379",
                        c.redis_url
                    ),
                ));
            }
        }
        check.range(
            "caching.distributed_cache_timeout_ms",
            c.distributed_cache_timeout_ms,
            1,
            10_000,
        )?;
        check.range(
            "security.key_rotation_days",
            s.security.key_rotation_days,
            1,
            3_650,
        )?;
        check.range(
            "security.token_expiration_hours",
            s.security.token_expiration_hours,
            1,
            8_760,
        )?;
        check.range(
            "security.jwt_leeway_seconds",
            s.security.jwt_leeway_seconds,
            0,
            30,
        )?;
        check.range(
            "security.max_token_bytes",
            s.security.max_token_bytes,
            256,
            65_536,
        )?;
        for (key, value) in [
            ("security.jwt_issuer", &s.security.jwt_issuer),
            ("security.jwt_audience", &s.security.jwt_audience),
            ("security.jwt_role_claim", &s.security.jwt_role_claim),
        ] {
            if value.trim().is_empty() {
                return Err(check.error(key, "got an empty value: tokens must name one"));
            }
        }
        if s.security.enable_authentication
            && s.security.jwt_algorithm != JwtAlgorithm::HS256
            && s.security.jwt_public_keys.is_empty()
        {
            return Err(check.error(
                "security.jwt_public_keys",
                format!(
                    "got none: {:?} tokens are verified with public keys; add `kid = \"path/to/key.pem\"` entries or set jwt_algorithm = \"HS256\"",
                    s.security.jwt_algorithm
                ),
            ));
        }
        if s.security.require_signed_ingress && s.security.signing_keys_file.is_empty() {
            return Err(check.error(
                "security.require_signed_ingress",
                "got true with no security.signing_keys_file: name the file of the systems' signing keys, or set it to false",
            ));
        }
        if s.gateway.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(check.error(
                "gateway.listen",
                format!(
                    "got `{}`: expected an address and port such as 127.0.0.1:8000",
                    s.gateway.listen
                ),
            ));
        }
        let grpc = &s.gateway.grpc_listen;
        if !grpc.is_empty() && grpc.parse::<std::net::SocketAddr>().is_err() {
            return Err(check.error(
                "gateway.grpc_listen",
                format!(
                    "got `{grpc}`: expected an address and port such as 127.0.0.1:50051, or \"\" for no gRPC API"
                ),
            ));
        }
        let t = &s.telemetry;
        if !(t.otlp_endpoint.starts_with("http://") || t.otlp_endpoint.starts_with("https://"))
            || url::Url::parse(&t.otlp_endpoint).is_err()
        {
            return Err(check.error(
                "telemetry.otlp_endpoint",
                format!(
                    "got `{}`: expected an http:// or https:// URL such as http://127.0.0.1:4317",
                    t.otlp_endpoint
                ),
            ));
        }
        let traces = t.otlp_traces_endpoint.as_str();
        if !(traces.is_empty() || traces.starts_with("http://") || traces.starts_with("https://")) {
            return Err(check.error(
                "telemetry.otlp_traces_endpoint",
                format!(
                    "got `{}`: expected empty or a URL such as http://127.0.0.1:4318/v1/traces",
                    t.otlp_traces_endpoint
                ),
            ));
        }
        for (name, value) in &t.otlp_headers {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(check.error(
                    "telemetry.otlp_headers",
                    format!("`{name}` is not a header name"),
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(check.error(
                    "telemetry.otlp_headers",
                    format!("the value of `{name}` holds a control character"),
                ));
            }
        }
        if t.resource_attributes.keys().any(String::is_empty) {
            return Err(check.error("telemetry.resource_attributes", "a key is empty"));
        }
        crate::validate::identifier("telemetry.service_name", &t.service_name)
            .map_err(|e| check.error("telemetry.service_name", e))?;
        check.range("telemetry.sampling_ratio", t.sampling_ratio, 0.0, 1.0)?;
        check.range(
            "telemetry.export_queue_size",
            t.export_queue_size,
            1,
            1_000_000,
        )?;
        check.range(
            "telemetry.export_batch_size",
            t.export_batch_size,
            1,
            t.export_queue_size,
        )?;
        check.range(
            "telemetry.export_interval_ms",
            t.export_interval_ms,
            1,
            3_600_000,
        )?;
        check.range(
            "telemetry.export_timeout_ms",
            t.export_timeout_ms,
            1,
            600_000,
        )?;
        let m = &s.monitoring;
        check.range("monitoring.metrics_port", m.metrics_port, 1, u16::MAX)?;
        check.range(
            "monitoring.health_check_interval_seconds",
            m.health_check_interval_seconds,
            1,
            86_400,
        )?;
        check.range(
            "monitoring.health_check_degraded_threshold_ms",
            m.health_check_degraded_threshold_ms,
            1,
            3_600_000,
        )?;
        check.range(
            "monitoring.health_check_failures_before_unhealthy",
            m.health_check_failures_before_unhealthy,
            1,
            1_000,
        )?;
        let r = &s.rate_limiting;
        check.range(
            "rate_limiting.rate_limit_requests_per_minute",
            r.rate_limit_requests_per_minute,
            1,
            10_000_000,
        )?;
        check.range(
            "rate_limiting.rate_limit_burst_size",
            r.rate_limit_burst_size,
            1,
            1_000_000,
        )?;
        check.range(
            "rate_limiting.rate_limit_window_seconds",
            r.rate_limit_window_seconds,
            1,
            86_400,
        )?;
        let b = &s.circuit_breaker;
        check.range(
            "circuit_breaker.circuit_breaker_failure_threshold",
            b.circuit_breaker_failure_threshold,
            1,
            10_000,
        )?;
        check.range(
            "circuit_breaker.circuit_breaker_recovery_timeout_seconds",
            b.circuit_breaker_recovery_timeout_seconds,
            1,
            86_400,
        )?;
        check.range(
            "circuit_breaker.circuit_breaker_half_open_max_calls",
            b.circuit_breaker_half_open_max_calls,
            1,
            10_000,
        )?;
        check.range(
            "circuit_breaker.sliding_window_size",
            b.sliding_window_size,
            1,
            100_000,
        )?;
        check.range(
            "circuit_breaker.minimum_number_of_calls",
            b.minimum_number_of_calls,
            1,
            100_000,
        )?;
        check.range(
            "circuit_breaker.failure_rate_threshold",
            b.failure_rate_threshold,
            1.0,
            100.0,
        )?;
        check.range(
            "circuit_breaker.slow_call_duration_threshold_ms",
            b.slow_call_duration_threshold_ms,
            1,
            3_600_000,
        )?;
        check.range(
            "circuit_breaker.slow_call_rate_threshold",
            b.slow_call_rate_threshold,
            1.0,
            100.0,
        )?;
        check.range(
            "circuit_breaker.half_open_max_wait_seconds",
            b.half_open_max_wait_seconds,
            1,
            86_400,
        )?;
        check.range(
            "fallback.fallback_timeout_seconds",
            s.fallback.fallback_timeout_seconds,
            1,
            3_600,
        )?;
        check.range(
            "fallback.fallback_retry_attempts",
            s.fallback.fallback_retry_attempts,
            0,
            100,
        )?;
        if s.registry.systems_file.as_os_str().is_empty() {
            return Err(check.error(
                "registry.systems_file",
                "is empty: name the TOML file that lists the systems, for example \"systems.toml\"",
            ));
        }
        let r = &s.registry;
        let scheme = r.database_url.split_once("://").map(|(scheme, _)| scheme);
        if !r.database_url.is_empty()
            && !matches!(scheme, Some("sqlite" | "postgres" | "postgresql"))
        {
            return Err(check.error(
                "registry.database_url",
                "expected empty (SQLite in registry.data_dir), sqlite://<file> or postgres://user@host:port/database",
            ));
        }
        if r.data_dir.as_os_str().is_empty() {
            return Err(check.error(
                "registry.data_dir",
                "is empty: name the folder of the SQLite store, for example \"data\"",
            ));
        }
        check.range("registry.max_connections", r.max_connections, 1, 1_000)?;
        check.range(
            "registry.store_timeout_seconds",
            r.store_timeout_seconds,
            1,
            300,
        )?;
        let n = &s.cluster;
        if !n.node_id.is_empty() {
            crate::validate::identifier("cluster.node_id", &n.node_id)
                .map_err(|e| check.error("cluster.node_id", e))?;
        }
        check.range(
            "cluster.heartbeat_interval_seconds",
            n.heartbeat_interval_seconds,
            1,
            3_600,
        )?;
        check.range(
            "cluster.node_expiry_seconds",
            n.node_expiry_seconds,
            n.heartbeat_interval_seconds + 1,
            86_400,
        )?;
        let l = &s.limits;
        check.range(
            "limits.max_message_bytes",
            l.max_message_bytes,
            1_024,
            64 * 1024 * 1024,
        )?;
        // The message is one level and its payload another.
        check.range(
            "limits.max_nesting_depth",
            l.max_nesting_depth,
            2,
            MAX_SUPPORTED_DEPTH,
        )?;
        let v = &s.supervision;
        check.range(
            "supervision.restart_initial_backoff_ms",
            v.restart_initial_backoff_ms,
            1,
            3_600_000,
        )?;
        check.range(
            "supervision.restart_max_backoff_ms",
            v.restart_max_backoff_ms,
            v.restart_initial_backoff_ms,
            3_600_000,
        )?;
        check.range("supervision.restart_limit", v.restart_limit, 0, 1_000)?;
        check.range(
            "supervision.restart_window_seconds",
            v.restart_window_seconds,
            1,
            86_400,
        )?;
        check.range(
            "supervision.mailbox_capacity",
            v.mailbox_capacity,
            1,
            1_000_000,
        )?;
        check.range("supervision.event_buffer", v.event_buffer, 1, 1_000_000)?;
        let a = &s.amqp;
        match url::Url::parse(&a.url) {
            Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => {}
            _ => {
                return Err(check.error(
                    "amqp.url",
                    format!("got {:?}: expected an amqp:// URL such as amqp://guest:guest@127.0.0.1:5672/%2f", a.url),
                ));
            }
        }
        crate::validate::identifier("amqp.namespace", &a.namespace)
            .map_err(|e| check.error("amqp.namespace", e))?;
        check.range("amqp.prefetch", a.prefetch, 1, 10_000)?;
        // Messages carry 0–9: more levels than 10 only cost the broker.
        check.range("amqp.max_priority", a.max_priority, 0, 10)?;
        check.range("amqp.delivery_limit", a.delivery_limit, 1, 1_000)?;
        check.range("amqp.dedup_window", a.dedup_window, 1, 10_000_000)?;
        check.range("amqp.dedup_window_mib", a.dedup_window_mib, 1, 65_536)?;
        check.range(
            "amqp.shutdown_grace_seconds",
            a.shutdown_grace_seconds,
            1,
            3_600,
        )?;
        for (i, kind) in s.transports.interface_preference.iter().enumerate() {
            let key = format!("transports.interface_preference[{i}]");
            crate::validate::identifier(&key, kind).map_err(|e| check.error(&key, e))?;
        }
        Ok(())
    }
}

struct Checker<'a> {
    origin_of: &'a dyn Fn(&str) -> String,
}

impl Checker<'_> {
    fn error(&self, key: &str, problem: impl Display) -> Error {
        Error::Config {
            origin: (self.origin_of)(key),
            key: key.to_owned(),
            problem: problem.to_string(),
        }
    }

    /// NaN fails too: it is in no range.
    fn range<T: PartialOrd + Display>(
        &self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> Result<(), Error> {
        if value >= min && value <= max {
            Ok(())
        } else {
            Err(self.error(
                key,
                format!("got {value}: expected a value from {min} to {max}"),
            ))
        }
    }
}

/// Moves `AIMBUS_<SECTION>__<FIELD>=value` variables into `table`; returns which key each
/// variable set, so errors can blame the variable rather than the file. Variables without
/// `__` (such as `AIMBUS_CONFIG`) are not configuration keys and are left alone.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, Error> {
    let mut overrides: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") || !seen.insert(var.clone()) {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let [section, field] = parts.as_slice() else {
            return Err(Error::Config {
                origin: format!("environment variable {var}"),
                key: parts.join("."),
                problem: "expected the form AIMBUS_<SECTION>__<FIELD>, for example AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS".into(),
            });
        };
        let key = format!("{section}.{field}");
        let section_table = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = section_table.as_table_mut() else {
            return Err(Error::Config {
                origin: format!("environment variable {var}"),
                key: section.clone(),
                problem: "the file sets this key to a value, not a section".into(),
            });
        };
        section_table.insert(field.clone(), env_value(&raw));
        overrides.insert(key, var);
    }
    Ok(overrides.into_iter().collect())
}

/// Maps OpenTelemetry's environment variables (as every OpenTelemetry SDK reads them)
/// onto `telemetry` and `monitoring` keys; returns which key each variable set.
fn apply_otel_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(var, _)| var == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    };
    let refused = |var: &str, key: &str, problem: String| Error::Config {
        origin: format!("environment variable {var}"),
        key: key.to_owned(),
        problem,
    };
    let mut set: Vec<(String, String, toml::Value)> = Vec::new();
    let mut put = |key: &str, var: &str, value: toml::Value| {
        set.push((key.to_owned(), var.to_owned(), value));
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        put(
            "monitoring.enable_tracing",
            "OTEL_SDK_DISABLED",
            false.into(),
        );
    }
    if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        put(
            "telemetry.otlp_endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            endpoint.into(),
        );
    }
    if let Some(endpoint) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        let var = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        put("telemetry.otlp_traces_endpoint", var, endpoint.into());
    }
    for var in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        let Some(protocol) = get(var) else { continue };
        let ours = match protocol {
            "grpc" => "grpc",
            "http/protobuf" => "http_protobuf",
            other => {
                return Err(refused(
                    var,
                    "telemetry.otlp_protocol",
                    format!("got `{other}`: expected grpc or http/protobuf"),
                ));
            }
        };
        put("telemetry.otlp_protocol", var, ours.into());
    }
    let mut headers = toml::Table::new();
    let mut headers_from = None;
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let Some(list) = get(var) else { continue };
        let pairs = key_value_list(list)
            .map_err(|problem| refused(var, "telemetry.otlp_headers", problem))?;
        headers.extend(pairs.into_iter().map(|(k, v)| (k, v.into())));
        headers_from = Some(var);
    }
    if let Some(var) = headers_from {
        put("telemetry.otlp_headers", var, headers.into());
    }
    let service_name = get("OTEL_SERVICE_NAME");
    if let Some(list) = get("OTEL_RESOURCE_ATTRIBUTES") {
        let var = "OTEL_RESOURCE_ATTRIBUTES";
        let pairs = key_value_list(list)
            .map_err(|problem| refused(var, "telemetry.resource_attributes", problem))?;
        if let (None, Some((_, name))) = (
            service_name,
            pairs.iter().find(|(k, _)| k == "service.name"),
        ) {
            put("telemetry.service_name", var, name.clone().into());
        }
        let attributes: toml::Table = pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
        put("telemetry.resource_attributes", var, attributes.into());
    }
    if let Some(name) = service_name {
        put("telemetry.service_name", "OTEL_SERVICE_NAME", name.into());
    }
    if let Some(sampler) = get("OTEL_TRACES_SAMPLER") {
        const KNOWN: [&str; 6] = [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ];
        if !KNOWN.contains(&sampler) {
            return Err(refused(
                "OTEL_TRACES_SAMPLER",
                "telemetry.sampler",
                format!("got `{sampler}`: expected one of {}", KNOWN.join(", ")),
            ));
        }
        put("telemetry.sampler", "OTEL_TRACES_SAMPLER", sampler.into());
    }
    if let Some(arg) = get("OTEL_TRACES_SAMPLER_ARG") {
        let ratio: f64 = arg.parse().map_err(|_| {
            refused(
                "OTEL_TRACES_SAMPLER_ARG",
                "telemetry.sampling_ratio",
                format!("got `{arg}`: expected a number from 0 to 1"),
            )
        })?;
        put(
            "telemetry.sampling_ratio",
            "OTEL_TRACES_SAMPLER_ARG",
            ratio.into(),
        );
    }
    let mut origins = Vec::with_capacity(set.len());
    for (key, var, value) in set {
        let (section, field) = key.split_once('.').expect("section.field");
        let section = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(refused(
                &var,
                &key,
                "the file sets this key to a value, not a section".into(),
            ));
        };
        section.insert(field.to_owned(), value);
        origins.push((key, var));
    }
    Ok(origins)
}

/// OpenTelemetry's `key1=value1,key2=value2` lists, values percent-decoded.
fn key_value_list(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{}` is not key=value", item.trim()))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!("`{}` has no key", item.trim()));
            }
            Ok((key.to_owned(), percent_decoded(value.trim())?))
        })
        .collect()
}

fn percent_decoded(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{text}` has a bad percent escape"))?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

/// An environment value is read as a TOML value (`5`, `2.5`, `true`, `[1, 2]`) when it
/// parses as one, and as a plain string otherwise (`INFO`, `configs/systems.toml`).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn lookup<'t>(table: &'t toml::Table, dotted: &str) -> Option<&'t toml::Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests;

/// This machine's host name, if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

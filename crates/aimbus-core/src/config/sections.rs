//! The configuration sections. Each field carries the seed's name and default; the
//! `AdvancedSystemIntegrationConfig` fields are grouped as the seed's comments group them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the bus reaches systems, whatever the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportsConfig {
    /// Interface kinds tried, in order, to reach a system: the first of a system's
    /// interfaces that a transport of this bus serves carries its traffic.
    pub interface_preference: Vec<String>,
}

impl Default for TransportsConfig {
    fn default() -> Self {
        TransportsConfig {
            interface_preference: ["amqp", "grpc", "rest_api"].map(str::to_owned).to_vec(),
        }
    }
}

/// Core request handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Requests in flight at once across the bus; excess is refused.
    pub max_concurrent_requests: u32,
    /// Time allowed for one delivery attempt.
    pub request_timeout_seconds: u64,
    /// Delivery attempts for message types without a policy of their own.
    pub retry_attempts: u32,
    /// Wait before the second attempt.
    pub retry_delay_seconds: f64,
    /// Each later wait is the previous one times this.
    pub retry_backoff_multiplier: f64,
    /// Requests in flight at once to one system; more are refused at once.
    pub max_concurrent_requests_per_system: u32,
    /// Retries allowed as a share of recent requests (10 s window).
    pub retry_budget_ratio: f64,
    /// Retries allowed every second on top of the ratio.
    pub retry_budget_min_retries_per_second: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_concurrent_requests: 1000,
            request_timeout_seconds: 60,
            retry_attempts: 3,
            retry_delay_seconds: 1.0,
            retry_backoff_multiplier: 2.0,
            max_concurrent_requests_per_system: 100,
            retry_budget_ratio: 0.2,
            retry_budget_min_retries_per_second: 10,
        }
    }
}

/// Connections to systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceConfig {
    pub enable_connection_pooling: bool,
    pub max_connections_per_host: u32,
    /// Idle pooled connections are closed after this long.
    pub keepalive_timeout_seconds: u64,
    pub enable_compression: bool,
    /// 0 (none) to 9 (smallest).
    pub compression_level: u32,
    /// Message bodies larger than this travel compressed (not in the seed).
    pub compression_threshold_bytes: usize,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            enable_connection_pooling: true,
            max_connections_per_host: 100,
            keepalive_timeout_seconds: 30,
            enable_compression: true,
            compression_level: 6,
            compression_threshold_bytes: 4096,
        }
    }
}

/// Which entries a full response cache drops first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionPolicy {
    /// Least recently used.
    Lru,
    /// Least frequently used (TinyLFU admission).
    Lfu,
}

/// The response cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachingConfig {
    pub enable_response_caching: bool,
    pub cache_ttl_seconds: u64,
    /// Bytes of cached responses, in MiB.
    pub cache_max_size_mb: u64,
    pub cache_eviction_policy: EvictionPolicy,
    /// A second tier shared between bus nodes, in Redis: a reply one node cached is
    /// served by every node. Redis being away never fails a request.
    pub distributed_cache_enabled: bool,
    /// The Redis of the shared tier.
    pub redis_url: String,
    /// How long a lookup or a store in Redis may take before the request goes on without it.
    pub distributed_cache_timeout_ms: u64,
    /// Message types whose replies are cached.
    pub cacheable_message_types: Vec<String>,
}

impl Default for CachingConfig {
    fn default() -> Self {
        CachingConfig {
            enable_response_caching: true,
            cache_ttl_seconds: 3600,
            cache_max_size_mb: 1024,
            cache_eviction_policy: EvictionPolicy::Lru,
            distributed_cache_enabled: false,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            distributed_cache_timeout_ms: 100,
            cacheable_message_types: vec!["data_request".to_owned()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionAlgorithm {
    #[serde(rename = "AES-256-GCM")]
    Aes256Gcm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticationMethod {
    Jwt,
}

/// Payload encryption and caller authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub enable_encryption: bool,
    pub encryption_algorithm: EncryptionAlgorithm,
    pub key_rotation_days: u32,
    /// The AES-256-GCM keyring (ids, keys, creation times, the primary), created with
    /// one random key when missing.
    pub encryption_keyring_file: String,
    /// HMAC-SHA256 keys of the systems that sign what they publish to the ingress, by
    /// source system; empty for none.
    pub signing_keys_file: String,
    /// Dead-letter ingress messages that are not signed (mis-signed ones always are).
    pub require_signed_ingress: bool,
    pub enable_authentication: bool,
    pub authentication_method: AuthenticationMethod,
    pub token_expiration_hours: u32,
    /// The one signature algorithm bearer tokens may use; any other is refused, so a
    /// token cannot pick its own (`none`, or HS256 keyed with a public key).
    pub jwt_algorithm: JwtAlgorithm,
    /// File holding the HS256 secret, created with a random one when missing;
    /// `AIMBUS_JWT_SECRET`, when set, is used instead.
    pub jwt_secret_file: String,
    /// RS256/EdDSA verification keys by `kid`: paths of PEM public keys.
    pub jwt_public_keys: BTreeMap<String, String>,
    /// Required `iss` of every token.
    pub jwt_issuer: String,
    /// Required `aud` of every token.
    pub jwt_audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub jwt_leeway_seconds: u64,
    /// The claim listing the caller's roles (`readonly`, `publisher`, `admin`).
    pub jwt_role_claim: String,
    /// Longest bearer token accepted, in bytes.
    pub max_token_bytes: usize,
}

/// Signature algorithms the gateway can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    EdDSA,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            enable_encryption: true,
            encryption_algorithm: EncryptionAlgorithm::Aes256Gcm,
            key_rotation_days: 30,
            encryption_keyring_file: "keyring.toml".to_owned(),
            signing_keys_file: String::new(),
            require_signed_ingress: false,
            enable_authentication: true,
            authentication_method: AuthenticationMethod::Jwt,
            token_expiration_hours: 24,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_secret_file: "jwt.secret".to_owned(),
            jwt_public_keys: BTreeMap::new(),
            jwt_issuer: "aimbus".to_owned(),
            jwt_audience: "aimbus".to_owned(),
            jwt_leeway_seconds: 30,
            jwt_role_claim: "roles".to_owned(),
            max_token_bytes: 4096,
        }
    }
}

/// Log verbosity, named as the seed names Python's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Ok(LogLevel::Trace),
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warn),
            "ERROR" | "CRITICAL" => Ok(LogLevel::Error),
            _ => Err(format!(
                "unknown log level `{s}`, expected one of TRACE, DEBUG, INFO, WARN, ERROR"
            )),
        }
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LogLevel> for String {
    fn from(level: LogLevel) -> String {
        level.as_str().to_owned()
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metrics, health checks, logs and traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    pub enable_metrics: bool,
    pub metrics_port: u16,
    /// How often every system's health is checked (the seed sets it in three groups, always
    /// to the same value; it lives here once).
    pub health_check_interval_seconds: u64,
    pub log_level: LogLevel,
    pub enable_tracing: bool,
    /// Health checks answered slower than this mark a system degraded.
    pub health_check_degraded_threshold_ms: u64,
    /// Consecutive failed health checks that mark a system unhealthy; fewer mark it
    /// degraded.
    pub health_check_failures_before_unhealthy: u32,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            enable_metrics: true,
            metrics_port: 8080,
            health_check_interval_seconds: 30,
            log_level: LogLevel::Info,
            enable_tracing: true,
            health_check_degraded_threshold_ms: 1000,
            health_check_failures_before_unhealthy: 3,
        }
    }
}

/// Token buckets per source system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitingConfig {
    pub enable_rate_limiting: bool,
    pub rate_limit_requests_per_minute: u32,
    /// Requests a source may send at once above its steady rate.
    pub rate_limit_burst_size: u32,
    pub rate_limit_window_seconds: u64,
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        RateLimitingConfig {
            enable_rate_limiting: true,
            rate_limit_requests_per_minute: 1000,
            rate_limit_burst_size: 100,
            rate_limit_window_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancingAlgorithm {
    RoundRobin,
    /// Power of two choices on requests in flight.
    LeastInFlight,
    /// By the `weight` in each system's configuration.
    Weighted,
}

/// Spreading messages for a system type across its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancingConfig {
    pub enable_load_balancing: bool,
    pub load_balancing_algorithm: LoadBalancingAlgorithm,
    /// Leave instances that fail their health checks out of the rotation.
    pub health_check_enabled: bool,
}

impl Default for LoadBalancingConfig {
    fn default() -> Self {
        LoadBalancingConfig {
            enable_load_balancing: true,
            load_balancing_algorithm: LoadBalancingAlgorithm::RoundRobin,
            health_check_enabled: true,
        }
    }
}

/// How a breaker's sliding window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlidingWindowType {
    /// The last `sliding_window_size` calls.
    Count,
    /// The calls of the last `sliding_window_size` seconds.
    Time,
}

/// One breaker per system instance: the seed's consecutive-failure rule, plus
/// Resilience4j's failure-rate and slow-call-rate rules over a sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    pub enable_circuit_breaker: bool,
    /// Consecutive failures that open the breaker.
    pub circuit_breaker_failure_threshold: u32,
    /// Time an open breaker waits before letting trial calls through.
    pub circuit_breaker_recovery_timeout_seconds: u64,
    /// Trial calls allowed while half-open; that many successes close the breaker.
    pub circuit_breaker_half_open_max_calls: u32,
    pub sliding_window_type: SlidingWindowType,
    /// Calls (count window) or seconds (time window).
    pub sliding_window_size: u32,
    /// Calls the window must hold before its rates may open the breaker.
    pub minimum_number_of_calls: u32,
    /// Percent of failed calls in the window that opens the breaker.
    pub failure_rate_threshold: f64,
    /// A call slower than this counts as slow.
    pub slow_call_duration_threshold_ms: u64,
    /// Percent of slow calls in the window that opens the breaker.
    pub slow_call_rate_threshold: f64,
    /// A half-open breaker whose trial calls have not all answered by then opens again.
    pub half_open_max_wait_seconds: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            enable_circuit_breaker: true,
            circuit_breaker_failure_threshold: 5,
            circuit_breaker_recovery_timeout_seconds: 60,
            circuit_breaker_half_open_max_calls: 3,
            sliding_window_type: SlidingWindowType::Count,
            sliding_window_size: 100,
            minimum_number_of_calls: 20,
            failure_rate_threshold: 50.0,
            slow_call_duration_threshold_ms: 60_000,
            slow_call_rate_threshold: 100.0,
            half_open_max_wait_seconds: 120,
        }
    }
}

/// Sending to another system when the chosen one's breaker is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    pub enable_fallback: bool,
    pub fallback_timeout_seconds: u64,
    pub fallback_retry_attempts: u32,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            enable_fallback: true,
            fallback_timeout_seconds: 30,
            fallback_retry_attempts: 2,
        }
    }
}

/// Where the registry keeps its systems, and where they come from on first start (not in
/// the seed, whose systems are hard-coded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Systems the registry is seeded with; a relative path is taken from the config
    /// file's folder. The file registers each of its systems once, the first time it names
    /// it; later changes go through the API.
    pub systems_file: PathBuf,
    /// The store: empty for SQLite in `data_dir`, or `postgres://user@host:port/db` for a
    /// store several nodes share.
    pub database_url: String,
    /// Folder of the SQLite store, created on first start; a relative path is taken from
    /// the config file's folder.
    pub data_dir: PathBuf,
    /// Connections to the store.
    pub max_connections: u32,
    /// How long a registry write waits for the store before it is answered 503.
    pub store_timeout_seconds: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            systems_file: PathBuf::from("systems.toml"),
            database_url: String::new(),
            data_dir: PathBuf::from("data"),
            max_connections: 8,
            store_timeout_seconds: 3,
        }
    }
}

/// This bus node among others on one store and broker (not in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The node's id in logs, metrics and traces; empty for `<hostname>-<random>`.
    pub node_id: String,
    /// How often the node writes its heartbeat to the store.
    pub heartbeat_interval_seconds: u64,
    /// A node not seen for this long is no longer listed as live.
    pub node_expiry_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            heartbeat_interval_seconds: 5,
            node_expiry_seconds: 15,
        }
    }
}

/// The HTTP gateway (not in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Serve the HTTP API.
    pub enabled: bool,
    /// Address and port the gateway listens on.
    pub listen: String,
    /// Address and port of the gRPC API (`aimbus.v1.Bus`, with `grpc.health.v1`); empty
    /// serves none. Behind the same tokens, roles and limits as the HTTP API.
    pub grpc_listen: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            listen: "127.0.0.1:8000".to_owned(),
            grpc_listen: String::new(),
        }
    }
}

/// Bounds on what the bus accepts from outside (not in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest encoded message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Deepest nesting of maps and arrays accepted; the message itself is level 1.
    pub max_nesting_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 1024 * 1024,
            max_nesting_depth: 32,
        }
    }
}

/// How the registry actor restarts a system actor that failed (not in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Wait before the first restart; each further restart doubles it.
    pub restart_initial_backoff_ms: u64,
    /// The longest wait between restarts.
    pub restart_max_backoff_ms: u64,
    /// Restarts allowed within `restart_window_seconds`; one more marks the system failed.
    pub restart_limit: u32,
    /// An actor that runs this long without failing has its restart count cleared.
    pub restart_window_seconds: u64,
    /// Messages an actor's mailbox holds before senders wait or are refused.
    pub mailbox_capacity: usize,
    /// Registry events buffered for each subscriber; one that falls further behind is told
    /// it lagged and re-reads the registry.
    pub event_buffer: usize,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            restart_initial_backoff_ms: 100,
            restart_max_backoff_ms: 30_000,
            restart_limit: 5,
            restart_window_seconds: 60,
            mailbox_capacity: 1024,
            event_buffer: 1024,
        }
    }
}

/// Queue type of the per-system queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// Classic queues, with message priorities up to `amqp.max_priority`.
    Classic,
    /// Quorum queues (replicated), with `x-delivery-limit`; no priorities.
    Quorum,
}

/// The RabbitMQ bridge (not in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Connect to RabbitMQ and serve the AMQP contract.
    pub enabled: bool,
    /// AMQP 0-9-1 URL of the broker.
    pub url: String,
    /// Prefix of every exchange and queue name; `aimbus` gives the documented contract.
    /// Two buses on one broker keep apart by using different prefixes.
    pub namespace: String,
    /// Unacknowledged ingress messages the bus works on at once.
    pub prefetch: u16,
    pub queue_type: QueueType,
    /// `x-max-priority` of classic system queues; 0 declares them without priorities, so
    /// a deployment that does not use them does not pay the broker's priority queues.
    pub max_priority: u8,
    /// Write the bus's requests to systems, whose caller waits for the answer (each
    /// attempt of a synchronous HTTP request or an AMQP request, a health check), and
    /// their replies, to disk (`delivery_mode` 2). Off by default: the waiting caller
    /// retries when a request is lost, so persisting it costs the broker a write and
    /// protects nothing (the SDK's `BusClient::request` sends transient for the same
    /// reason). Forwarded and `respond-async` messages, which nobody waits for, are
    /// always persistent and confirmed.
    pub persistent_requests: bool,
    /// Deliveries of one message before it is dead-lettered.
    pub delivery_limit: u32,
    /// Message ids remembered per consumer to drop redeliveries already processed.
    pub dedup_window: usize,
    /// Memory those ids, and the answers an SDK system keeps to resend, may take per
    /// consumer, in MiB; past it the oldest are forgotten first.
    pub dedup_window_mib: usize,
    /// On shutdown, how long deliveries in progress may take to finish before the rest
    /// are handed back to the broker, in seconds.
    pub shutdown_grace_seconds: u64,
}

impl AmqpConfig {
    /// [`AmqpConfig::dedup_window_mib`] in bytes.
    pub fn dedup_window_bytes(&self) -> usize {
        self.dedup_window_mib.saturating_mul(1 << 20)
    }

    /// [`AmqpConfig::shutdown_grace_seconds`] as a duration.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace_seconds)
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            enabled: true,
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            namespace: "aimbus".to_owned(),
            prefetch: 64,
            queue_type: QueueType::Classic,
            max_priority: 10,
            persistent_requests: false,
            delivery_limit: 5,
            dedup_window: 100_000,
            dedup_window_mib: 64,
            shutdown_grace_seconds: 10,
        }
    }
}

/// Wire protocol of the OTLP trace exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP over gRPC (collectors listen on 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (collectors listen on 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// Which new traces are recorded, as OpenTelemetry names its samplers
/// (`OTEL_TRACES_SAMPLER`); the ratio ones take `sampling_ratio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    /// A caller's sampled `traceparent` decides; new traces by `sampling_ratio`.
    #[serde(rename = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text when standard error is a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// OpenTelemetry trace export and the shape of logs (not in the seed; the seed's
/// `monitoring.enable_tracing` and `monitoring.log_level` switch them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where spans are sent: the collector's base URL. For `http_protobuf` the path
    /// `/v1/traces` is appended unless the URL already ends with it.
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` of the bus's spans; `aimbus systems simulate` exports as
    /// `<service_name>-systems`.
    pub service_name: String,
    /// Signal-specific URL of the collector's trace endpoint, used as it is (no path
    /// appended); empty for `otlp_endpoint`.
    pub otlp_traces_endpoint: String,
    /// Headers sent with every export request (an API key, say).
    pub otlp_headers: BTreeMap<String, String>,
    /// Attributes added to the resource of every exported span.
    pub resource_attributes: BTreeMap<String, String>,
    pub sampler: TraceSampler,
    /// Share of new traces recorded, from 0 to 1, for the ratio samplers.
    pub sampling_ratio: f64,
    /// Finished spans waiting for export; when full, new spans are dropped and counted
    /// (`aimbus_trace_spans_dropped_total`), never waited for.
    pub export_queue_size: usize,
    /// Most spans sent in one export request.
    pub export_batch_size: usize,
    /// Milliseconds between exports of what is queued.
    pub export_interval_ms: u64,
    /// Milliseconds an export request may take before it is abandoned.
    pub export_timeout_ms: u64,
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:4317".to_owned(),
            otlp_protocol: OtlpProtocol::Grpc,
            service_name: "aimbus".to_owned(),
            otlp_traces_endpoint: String::new(),
            otlp_headers: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            sampler: TraceSampler::ParentbasedTraceIdRatio,
            sampling_ratio: 1.0,
            export_queue_size: 8192,
            export_batch_size: 512,
            export_interval_ms: 1000,
            export_timeout_ms: 10_000,
            log_format: LogFormat::Auto,
        }
    }
}

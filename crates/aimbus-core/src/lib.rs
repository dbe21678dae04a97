//! Wire model, codecs, validation, configuration and pure registry state of aimbus.
#![forbid(unsafe_code)]

pub mod backoff;
mod codec;
mod config;
mod crypto;
mod error;
mod model;
mod registry;
pub mod secret_file;
mod signing;
pub mod validate;

pub use backoff::Backoff;
pub use codec::{Codec, Compression, DecodeLimits, Format, GZIP, MAX_SUPPORTED_DEPTH, json_len};
pub use config::{
    AmqpConfig, AuthenticationMethod, CachingConfig, CircuitBreakerConfig, ClusterConfig, Config,
    CoreConfig, ENV_PREFIX, EncryptionAlgorithm, EvictionPolicy, FallbackConfig, GatewayConfig,
    JwtAlgorithm, LimitsConfig, LoadBalancingAlgorithm, LoadBalancingConfig, LogFormat, LogLevel,
    MonitoringConfig, OtlpProtocol, PerformanceConfig, QueueType, RateLimitingConfig,
    RegistryConfig, SecurityConfig, SlidingWindowType, SupervisionConfig, SystemsFile,
    TelemetryConfig, TraceSampler, TransportsConfig, host_name,
};
pub use crypto::{Keyring, SEALED_FIELD, new_keyring_text};
pub use error::{Error, ErrorKind};
pub use model::{
    DEFAULT_MAX_RETRIES, HEALTH_CHECK, HealthCheckResult, IntegrationMessage, IntegrationStatus,
    PerformanceMetrics, RegistryEvent, RequestOutcome, SystemInfo, SystemType, interface,
};
pub use registry::{
    Compatibility, IntegrationSummary, PlannedRegistration, Registration, Registry,
    RegistrySummary, RequestTotals, SystemMetadata,
};
pub use signing::{SigningKeys, canonical as signing_canonical};

//! The wire model: what crosses AMQP, HTTP and configuration files.

mod event;
mod health;
mod message;
mod metrics;
mod status;
mod system_info;
mod system_type;

pub use event::RegistryEvent;
pub use health::HealthCheckResult;
pub use message::{DEFAULT_MAX_RETRIES, HEALTH_CHECK, IntegrationMessage};
pub use metrics::{PerformanceMetrics, RequestOutcome};
pub use status::IntegrationStatus;
pub use system_info::{SystemInfo, interface};
pub use system_type::SystemType;

//! Names of the metrics the actors record (through the `metrics` facade; the gateway
//! installs the Prometheus exporter).

/// Breaker transitions, labelled `system_id` and `to` (the new state).
pub const BREAKER_TRANSITIONS: &str = "aimbus_breaker_transitions_total";
/// Response cache lookups that found a reply.
pub const CACHE_HITS: &str = "aimbus_cache_hits_total";
/// Response cache lookups that found none.
pub const CACHE_MISSES: &str = "aimbus_cache_misses_total";
/// Messages routed, labelled `outcome` (`delivered`, `cached`, or an error kind).
pub const MESSAGES_ROUTED: &str = "aimbus_messages_routed_total";
/// Delivery attempts after the first.
pub const RETRIES: &str = "aimbus_retries_total";
/// Retries the retry budget refused.
pub const RETRIES_REFUSED: &str = "aimbus_retries_refused_total";
/// Health checks, labelled `system_id` and `status`.
pub const HEALTH_CHECKS: &str = "aimbus_health_checks_total";

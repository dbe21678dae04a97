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
/// Delivery attempts to a system, labelled `system_id`.
pub const SYSTEM_REQUESTS: &str = "aimbus_system_requests_total";
/// Delivery attempts to a system that failed, labelled `system_id`.
pub const SYSTEM_ERRORS: &str = "aimbus_system_errors_total";
/// Delivery attempt durations in seconds, labelled `system_id`.
pub const SYSTEM_LATENCY: &str = "aimbus_system_request_duration_seconds";
/// A system's breaker state, labelled `system_id`: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "aimbus_breaker_state";
/// Status changes not written to the store's history (the store was away or behind).
pub const STATUS_HISTORY_DROPPED: &str = "aimbus_status_history_dropped_total";
/// Lookups the shared (Redis) tier of the response cache answered with a reply.
pub const CACHE_SHARED_HITS: &str = "aimbus_cache_shared_hits_total";
/// Lookups the shared tier answered without one.
pub const CACHE_SHARED_MISSES: &str = "aimbus_cache_shared_misses_total";
/// Lookups and stores that went without the shared tier: Redis failed, was too slow, or
/// was resting after a failure.
pub const CACHE_SHARED_FALLBACKS: &str = "aimbus_cache_shared_fallbacks_total";

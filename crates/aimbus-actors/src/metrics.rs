//! Names of the metrics the actors record (through the `metrics` facade; the gateway
//! installs the Prometheus exporter).

/// Breaker transitions, labelled `system_id` and `to` (the new state).
pub const BREAKER_TRANSITIONS: &str = "aimbus_breaker_transitions_total";
/// Call outcomes a breaker's full mailbox could not take.
pub const BREAKER_OUTCOMES_DROPPED: &str = "aimbus_breaker_outcomes_dropped_total";

//! Names of the metrics the bridge records.

/// Registry events not published to the events exchange (broker away, or lagging).
pub const EVENTS_DROPPED: &str = "aimbus_events_dropped_total";
/// Ingress messages acknowledged without routing: copies of messages already seen through.
pub const INGRESS_DUPLICATES: &str = "aimbus_ingress_duplicates_total";
/// Ingress deliveries the broker marked redelivered.
pub const REDELIVERIES: &str = "aimbus_amqp_redeliveries_total";
/// Ingress messages put back after a transient failure, for another delivery.
pub const INGRESS_RETRIES: &str = "aimbus_ingress_retries_total";
/// Ingress messages parked for their source's rate-limit turn (never dead-lettered).
pub const INGRESS_RATE_LIMITED: &str = "aimbus_ingress_rate_limited_total";
/// Replies not delivered because the requester's reply queue was gone.
pub const REPLIES_DROPPED: &str = "aimbus_amqp_replies_dropped_total";

//! Names of the metrics the bridge records.

/// Registry events not published to the events exchange (broker away, or lagging).
pub const EVENTS_DROPPED: &str = "aimbus_events_dropped_total";
/// Ingress messages acknowledged without routing: copies of messages already seen through.
pub const INGRESS_DUPLICATES: &str = "aimbus_ingress_duplicates_total";

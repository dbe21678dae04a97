//! Names of the metrics the bridge records.

/// Registry events not published to the events exchange (broker away, or lagging).
pub const EVENTS_DROPPED: &str = "aimbus_events_dropped_total";

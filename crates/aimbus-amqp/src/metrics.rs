//! Names of the metrics the AMQP wire side records.

/// Confirmed publishes, labelled `outcome`: `confirmed`, `nacked` or `returned`.
pub const PUBLISHES: &str = "aimbus_amqp_publishes_total";
/// Messages dead-lettered, labelled `reason` (the reason's first word: `decode`,
/// `invalid`, `unknown_target`, `delivery_limit`, …).
pub const DEAD_LETTERS: &str = "aimbus_amqp_dead_letters_total";

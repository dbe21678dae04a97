//! Names of the metrics trace export records.

/// Spans handed to the exporter and accepted by the collector.
pub const SPANS_EXPORTED: &str = "aimbus_trace_spans_exported_total";
/// Spans whose export request failed or timed out (the collector is away or refused).
pub const SPANS_FAILED: &str = "aimbus_trace_spans_failed_total";
/// Spans dropped because the export queue was full: export never holds routing up.
pub const SPANS_DROPPED: &str = "aimbus_trace_spans_dropped_total";

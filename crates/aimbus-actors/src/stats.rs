//! Per-system request statistics: the seed's running metrics plus a latency histogram.
//! Updated by the routing futures as attempts finish, under a per-system lock that only
//! that system's traffic takes.

use std::sync::Mutex;

use aimbus_core::{PerformanceMetrics, RequestOutcome};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SystemMetrics {
    pub performance: PerformanceMetrics,
    pub latency: LatencySummary,
}

pub struct SystemStats {
    inner: Mutex<(PerformanceMetrics, Histogram<u64>)>,
    /// The wall clock at one instant of the monotonic clock, so a call's wall-clock time
    /// comes from the instant already read for it rather than from another clock read.
    epoch: (Instant, DateTime<Utc>),
    /// The same figures for the metrics exporter, through handles made once per system
    /// so an attempt costs no label lookup.
    exported: Exported,
}

struct Exported {
    requests: ::metrics::Counter,
    errors: ::metrics::Counter,
    latency: ::metrics::Histogram,
}

/// Microseconds up to an hour, two significant digits: a few kilobytes per system.
const HIGHEST_MICROS: u64 = 3_600_000_000;

impl SystemStats {
    pub fn new(system_id: &str) -> SystemStats {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_MICROS, 2).expect("valid bounds");
        let id = system_id.to_owned();
        SystemStats {
            inner: Mutex::new((PerformanceMetrics::default(), histogram)),
            epoch: (Instant::now(), Utc::now()),
            exported: Exported {
                requests: ::metrics::counter!(crate::metrics::SYSTEM_REQUESTS, "system_id" => id.clone()),
                errors: ::metrics::counter!(crate::metrics::SYSTEM_ERRORS, "system_id" => id.clone()),
                latency: ::metrics::histogram!(crate::metrics::SYSTEM_LATENCY, "system_id" => id),
            },
        }
    }

    pub fn record(&self, success: bool, started: Instant, finished: Instant) {
        let elapsed = finished.saturating_duration_since(started);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let since_epoch = finished.saturating_duration_since(self.epoch.0);
        let at = self.epoch.1 + chrono::Duration::from_std(since_epoch).unwrap_or_default();
        let mut inner = self.inner.lock().expect("stats lock");
        inner.0.record(RequestOutcome {
            success,
            response_time_ms: elapsed.as_secs_f64() * 1e3,
            at,
        });
        inner.1.saturating_record(micros.clamp(1, HIGHEST_MICROS));
        drop(inner);
        self.exported.requests.increment(1);
        if !success {
            self.exported.errors.increment(1);
        }
        self.exported.latency.record(elapsed.as_secs_f64());
    }

    pub fn performance(&self) -> PerformanceMetrics {
        self.inner.lock().expect("stats lock").0.clone()
    }

    pub fn snapshot(&self) -> SystemMetrics {
        let inner = self.inner.lock().expect("stats lock");
        let ms = |micros: u64| micros as f64 / 1e3;
        let h = &inner.1;
        SystemMetrics {
            performance: inner.0.clone(),
            latency: LatencySummary {
                count: h.len(),
                p50_ms: ms(h.value_at_quantile(0.50)),
                p90_ms: ms(h.value_at_quantile(0.90)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_and_seed_metrics_come_from_the_same_calls() {
        let stats = SystemStats::new("test_001");
        let t = Instant::now();
        for ms in 1..=100u64 {
            stats.record(ms % 10 != 0, t, t + Duration::from_millis(ms));
        }
        let m = stats.snapshot();
        assert_eq!(m.performance.request_count, 100);
        assert!((m.performance.success_rate - 0.9).abs() < 1e-9);
        assert!((m.performance.response_time_ms - 50.5).abs() < 1e-6);
        assert_eq!(m.latency.count, 100);
        // Two significant digits: within 1%.
        for (got, want) in [
            (m.latency.p50_ms, 50.0),
            (m.latency.p90_ms, 90.0),
            (m.latency.p99_ms, 99.0),
        ] {
            assert!((got - want).abs() <= want * 0.01 + 1e-9, "{got} vs {want}");
        }
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Per-system request statistics, as the seed's `_update_performance_metrics` keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceMetrics {
    pub request_count: u64,
    /// Mean response time over all recorded requests.
    pub response_time_ms: f64,
    pub success_rate: f64,
    pub error_rate: f64,
    pub last_request_time: Option<DateTime<Utc>>,
}

impl Default for PerformanceMetrics {
    /// A system with no requests yet counts as fully successful, as in the seed.
    fn default() -> Self {
        PerformanceMetrics {
            request_count: 0,
            response_time_ms: 0.0,
            success_rate: 1.0,
            error_rate: 0.0,
            last_request_time: None,
        }
    }
}

/// The result of one request to a system, as recorded in its metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestOutcome {
    pub success: bool,
    pub response_time_ms: f64,
    pub at: DateTime<Utc>,
}

impl PerformanceMetrics {
    /// Folds one request into the running means (O(1), no history kept).
    pub fn record(&mut self, outcome: RequestOutcome) {
        self.request_count += 1;
        let n = self.request_count as f64;
        let hit = if outcome.success { 1.0 } else { 0.0 };
        self.success_rate += (hit - self.success_rate) / n;
        self.error_rate = 1.0 - self.success_rate;
        self.response_time_ms += (outcome.response_time_ms - self.response_time_ms) / n;
        self.last_request_time = Some(outcome.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(success: bool, ms: f64) -> RequestOutcome {
        RequestOutcome {
            success,
            response_time_ms: ms,
            at: Utc::now(),
        }
    }

    #[test]
    fn running_means_match_the_seed_formula() {
        let mut m = PerformanceMetrics::default();
        m.record(outcome(true, 10.0));
        m.record(outcome(false, 30.0));
        m.record(outcome(true, 20.0));
        m.record(outcome(true, 40.0));
        assert_eq!(m.request_count, 4);
        assert!((m.success_rate - 0.75).abs() < 1e-12);
        assert!((m.error_rate - 0.25).abs() < 1e-12);
        assert!((m.response_time_ms - 25.0).abs() < 1e-12);
        assert!(m.last_request_time.is_some());
    }
}

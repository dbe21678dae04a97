//! When to restart a failed system actor: exponential backoff, and a limit on restarts
//! within a window past which the system is marked failed. Pure, so it is tested without
//! actors or clocks.

use std::time::Duration;

use aimbus_core::SupervisionConfig;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Restarts allowed within `window`.
    pub limit: u32,
    pub window: Duration,
}

impl From<&SupervisionConfig> for RestartPolicy {
    fn from(config: &SupervisionConfig) -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_millis(config.restart_initial_backoff_ms),
            max_backoff: Duration::from_millis(config.restart_max_backoff_ms),
            limit: config.restart_limit,
            window: Duration::from_secs(config.restart_window_seconds),
        }
    }
}

/// What to do about an actor that just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    RestartAfter(Duration),
    GiveUp,
}

/// Restart history of one system's actor.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    restarts: u32,
    started_at: Instant,
}

impl RestartTracker {
    pub fn new(now: Instant) -> RestartTracker {
        RestartTracker {
            restarts: 0,
            started_at: now,
        }
    }

    /// Restarts counted in the current window.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Called when the actor failed at `now`: an actor that had run a whole window since
    /// its last start begins a fresh count.
    pub fn on_failure(&mut self, policy: &RestartPolicy, now: Instant) -> Verdict {
        if now.duration_since(self.started_at) >= policy.window {
            self.restarts = 0;
        }
        if self.restarts >= policy.limit {
            return Verdict::GiveUp;
        }
        let factor = 2u32.saturating_pow(self.restarts);
        self.restarts += 1;
        Verdict::RestartAfter(
            policy
                .initial_backoff
                .saturating_mul(factor)
                .min(policy.max_backoff),
        )
    }

    pub fn on_started(&mut self, now: Instant) {
        self.started_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RestartPolicy = RestartPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        limit: 5,
        window: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let t0 = Instant::now();
        let mut tracker = RestartTracker::new(t0);
        let waits: Vec<Verdict> = (0..6).map(|_| tracker.on_failure(&POLICY, t0)).collect();
        let ms = |n| Verdict::RestartAfter(Duration::from_millis(n));
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(500), ms(500), Verdict::GiveUp]
        );
    }

    #[test]
    fn a_quiet_window_clears_the_count() {
        let t0 = Instant::now();
        let mut tracker = RestartTracker::new(t0);
        for _ in 0..5 {
            tracker.on_failure(&POLICY, t0);
        }
        tracker.on_started(t0);
        let later = t0 + POLICY.window;
        assert_eq!(
            tracker.on_failure(&POLICY, later),
            Verdict::RestartAfter(POLICY.initial_backoff)
        );
        assert_eq!(tracker.restarts(), 1);
    }

    #[test]
    fn a_zero_limit_never_restarts() {
        let t0 = Instant::now();
        let policy = RestartPolicy { limit: 0, ..POLICY };
        assert_eq!(
            RestartTracker::new(t0).on_failure(&policy, t0),
            Verdict::GiveUp
        );
    }
}

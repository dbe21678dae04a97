//! When to try a message again: the per-message-type policy table of the seed's L3 level,
//! jittered exponential backoff, and a retry budget so retries cannot multiply an outage.

use std::collections::VecDeque;
use std::time::Duration;

use aimbus_core::CoreConfig;
use aimbus_core::backoff;
pub use aimbus_core::backoff::JITTER;
use rand::Rng;
use tokio::time::Instant;

/// Attempts and backoff for one message type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_retries: u32,
    pub retry_delay: Duration,
    pub backoff_multiplier: f64,
}

impl RetryPolicy {
    /// The policy table from DESIGN.md; other types take `[core]`'s retry settings.
    pub fn for_message_type(message_type: &str, core: &CoreConfig) -> RetryPolicy {
        let policy = |max_retries, delay: f64, backoff_multiplier| RetryPolicy {
            max_retries,
            retry_delay: Duration::from_secs_f64(delay),
            backoff_multiplier,
        };
        match message_type {
            "health_check" => policy(3, 1.0, 2.0),
            "data_request" => policy(5, 2.0, 1.5),
            "data_response" => policy(3, 1.0, 2.0),
            "error_notification" => policy(1, 0.5, 1.0),
            "status_update" => policy(2, 1.0, 1.5),
            "configuration_update" => policy(3, 2.0, 2.0),
            _ => policy(
                core.retry_attempts,
                core.retry_delay_seconds,
                core.retry_backoff_multiplier,
            ),
        }
    }

    /// Attempts left for a message: the policy's, capped by the message's own
    /// `max_retries`, less the `retry_count` it has used already; always at least one.
    pub fn attempts_for(&self, max_retries: u32, retry_count: u32) -> u32 {
        self.max_retries
            .min(max_retries)
            .saturating_sub(retry_count)
            .max(1)
    }

    /// The wait after failed attempt `attempt` (0 for the first):
    /// `retry_delay × backoff_multiplier^attempt`, before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.backoff_multiplier.powi(attempt.min(64) as i32);
        Duration::try_from_secs_f64(self.retry_delay.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX)
    }

    /// [`RetryPolicy::delay`] scaled by `1 ± JITTER`, so clients that failed together do
    /// not retry together; saturates, never panics, for any delay.
    pub fn jittered_delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        backoff::jitter(self.delay(attempt), rng)
    }
}

/// Allows retries up to `ratio` of the requests of the last `window`, plus
/// `min_per_second` a second: enough to ride out a blip, never enough to multiply load
/// on a system that is down.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    /// One-second buckets: (start, requests, retries).
    buckets: VecDeque<(Instant, u64, u64)>,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> RetryBudget {
        RetryBudget {
            ratio,
            min_per_second,
            window,
            buckets: VecDeque::new(),
            requests: 0,
            retries: 0,
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut (Instant, u64, u64) {
        while let Some(&(start, requests, retries)) = self.buckets.front() {
            if now.duration_since(start) < self.window {
                break;
            }
            self.requests -= requests;
            self.retries -= retries;
            self.buckets.pop_front();
        }
        let fresh = self
            .buckets
            .back()
            .is_none_or(|(start, ..)| now.duration_since(*start) >= Duration::from_secs(1));
        if fresh {
            self.buckets.push_back((now, 0, 0));
        }
        self.buckets.back_mut().expect("just ensured")
    }

    pub fn record_request(&mut self, now: Instant) {
        self.bucket(now).1 += 1;
        self.requests += 1;
    }

    /// Takes one retry from the budget, if it has one.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.bucket(now);
        let allowed = self.ratio * self.requests as f64
            + f64::from(self.min_per_second) * self.window.as_secs_f64();
        if (self.retries as f64) < allowed {
            self.bucket(now).2 += 1;
            self.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_policy_table_is_the_seeds() {
        let core = CoreConfig::default();
        let table = [
            ("health_check", 3, 1.0, 2.0),
            ("data_request", 5, 2.0, 1.5),
            ("data_response", 3, 1.0, 2.0),
            ("error_notification", 1, 0.5, 1.0),
            ("status_update", 2, 1.0, 1.5),
            ("configuration_update", 3, 2.0, 2.0),
            ("anything_else", 3, 1.0, 2.0),
        ];
        for (message_type, attempts, delay, multiplier) in table {
            let p = RetryPolicy::for_message_type(message_type, &core);
            assert_eq!(p.max_retries, attempts, "{message_type}");
            assert_eq!(
                p.retry_delay,
                Duration::from_secs_f64(delay),
                "{message_type}"
            );
            assert_eq!(p.backoff_multiplier, multiplier, "{message_type}");
        }
    }

    #[test]
    fn delays_grow_by_the_multiplier_and_jitter_stays_within_bounds() {
        let p = RetryPolicy::for_message_type("data_request", &CoreConfig::default());
        assert_eq!(p.delay(0), Duration::from_secs(2));
        assert_eq!(p.delay(1), Duration::from_secs(3));
        assert_eq!(p.delay(2), Duration::from_millis(4500));
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 0..4 {
            for _ in 0..100 {
                let d = p.jittered_delay(attempt, &mut rng).as_secs_f64();
                let base = p.delay(attempt).as_secs_f64();
                assert!((base * 0.8..=base * 1.2 + 1e-9).contains(&d));
            }
        }
        assert!(
            p.delay(u32::MAX) >= p.delay(10),
            "large attempts neither overflow nor shrink"
        );
        let steep = RetryPolicy {
            backoff_multiplier: 10.0,
            ..p
        };
        assert_eq!(
            steep.delay(64),
            Duration::MAX,
            "saturates instead of overflowing"
        );
    }

    proptest::proptest! {
        /// Every retry setting validation lets through, at every attempt: no panic, and
        /// the jittered wait is the delay within the jitter, or saturated.
        #[test]
        fn any_valid_retry_setting_gives_a_wait_without_panicking(
            attempts in 1u32..=100,
            delay in 0.0f64..=3_600.0,
            multiplier in 1.0f64..=10.0,
            attempt in proptest::prelude::any::<u32>(),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let core = CoreConfig {
                retry_attempts: attempts,
                retry_delay_seconds: delay,
                retry_backoff_multiplier: multiplier,
                ..CoreConfig::default()
            };
            let p = RetryPolicy::for_message_type("custom", &core);
            let wait = p.jittered_delay(attempt, &mut StdRng::seed_from_u64(seed));
            let base = p.delay(attempt);
            proptest::prop_assert!(
                wait == Duration::MAX
                    || wait.as_secs_f64() <= base.as_secs_f64() * (1.0 + JITTER) + 1e-6
            );
            proptest::prop_assert!(wait.as_secs_f64() >= base.as_secs_f64() * (1.0 - JITTER) - 1e-6);
        }
    }

    #[test]
    fn attempts_respect_the_message_and_its_earlier_tries() {
        let p = RetryPolicy::for_message_type("data_request", &CoreConfig::default());
        assert_eq!(p.attempts_for(3, 0), 3, "the message asks for fewer");
        assert_eq!(p.attempts_for(10, 0), 5, "the policy caps it");
        assert_eq!(p.attempts_for(5, 2), 3, "two were used already");
        assert_eq!(p.attempts_for(5, 9), 1, "one attempt always");
    }

    #[test]
    fn the_budget_is_a_fifth_of_requests_plus_ten_a_second() {
        let t = Instant::now();
        let window = Duration::from_secs(10);
        let mut budget = RetryBudget::new(0.2, 10, window);
        for _ in 0..1_000 {
            budget.record_request(t);
        }
        // 0.2 × 1000 + 10/s × 10 s.
        let granted = (0..1_000).filter(|_| budget.try_retry(t)).count();
        assert_eq!(granted, 300);
        // Once the window has passed, the old requests and retries no longer count.
        let later = t + window;
        assert!(budget.try_retry(later));
        let granted_idle = (0..1_000).filter(|_| budget.try_retry(later)).count();
        assert_eq!(granted_idle, 99, "only the per-second floor is left");
    }
}

//! A token bucket per source system: `rate_limit_requests_per_minute` refills it and
//! `rate_limit_burst_size` bounds it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Sources tracked at once; past it, idle (full) buckets are dropped, and a source that
/// still finds no room shares one overflow bucket, so a flood of new source names cannot
/// grow memory without bound.
const MAX_SOURCES: usize = 10_000;
const OVERFLOW: &str = "";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(requests_per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(requests_per_minute) / 60.0,
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// The time one token takes to refill.
    pub fn pace(&self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.per_second).unwrap_or(Duration::MAX)
    }

    /// Takes a token for `source`, or says how long until one is there.
    pub fn acquire(&mut self, source: &str, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(source) && self.buckets.len() >= MAX_SOURCES {
            self.drop_idle(now);
        }
        let key = if self.buckets.contains_key(source) || self.buckets.len() < MAX_SOURCES {
            source
        } else {
            OVERFLOW
        };
        let (per_second, burst) = (self.per_second, self.burst);
        // Look up before inserting, so a known source costs no allocation.
        if !self.buckets.contains_key(key) {
            let fresh = Bucket {
                tokens: burst,
                updated: now,
            };
            self.buckets.insert(key.to_owned(), fresh);
        }
        let bucket = self.buckets.get_mut(key).expect("just ensured");
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    fn drop_idle(&mut self, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_the_rate_holds() {
        let t = Instant::now();
        let mut limiter = RateLimiter::new(60, 3);
        for _ in 0..3 {
            limiter.acquire("cmc_001", t).unwrap();
        }
        let wait = limiter.acquire("cmc_001", t).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            limiter.acquire("hhni_001", t).is_ok(),
            "each source has its own bucket"
        );
        assert!(
            limiter
                .acquire("cmc_001", t + Duration::from_millis(999))
                .is_err()
        );
        assert!(
            limiter
                .acquire("cmc_001", t + Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn many_sources_stay_bounded() {
        let t = Instant::now();
        let mut limiter = RateLimiter::new(60, 1);
        for i in 0..MAX_SOURCES + 50 {
            let _ = limiter.acquire(&format!("source_{i}"), t);
        }
        assert!(limiter.buckets.len() <= MAX_SOURCES + 1);
        // Later, the idle buckets are full again and make room.
        limiter
            .acquire("late_source", t + Duration::from_secs(5))
            .unwrap();
        assert!(limiter.buckets.contains_key("late_source"));
    }
}

//! The sliding window of recent call outcomes a breaker judges failure and slow-call
//! rates over, count-based (the last N calls) or time-based (the last N seconds), as in
//! Resilience4j. Both keep O(1) aggregates, so recording and reading are O(1) amortised.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `d`, in one-second buckets.
    Time(Duration),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    fn sub(&mut self, other: Tally) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }
}

/// Failure and slow-call rates, in percent, over the calls in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub calls: u32,
    pub failure_rate: f64,
    pub slow_call_rate: f64,
}

#[derive(Debug, Clone)]
pub struct Window {
    kind: WindowKind,
    /// Count-based: one entry per call. Time-based: one per second that saw calls,
    /// with the second it began.
    entries: VecDeque<(Instant, Tally)>,
    total: Tally,
}

impl Window {
    pub fn new(kind: WindowKind) -> Window {
        Window {
            kind,
            entries: VecDeque::new(),
            total: Tally::default(),
        }
    }

    pub fn record(&mut self, failed: bool, slow: bool, now: Instant) {
        let call = Tally {
            calls: 1,
            failures: u32::from(failed),
            slow: u32::from(slow),
        };
        self.total.add(call);
        match self.kind {
            WindowKind::Count(size) => {
                self.entries.push_back((now, call));
                if self.entries.len() > size as usize {
                    let (_, oldest) = self.entries.pop_front().expect("longer than size");
                    self.total.sub(oldest);
                }
            }
            WindowKind::Time(_) => {
                self.expire(now);
                match self.entries.back_mut() {
                    Some((start, bucket))
                        if now.duration_since(*start) < Duration::from_secs(1) =>
                    {
                        bucket.add(call)
                    }
                    _ => self.entries.push_back((now, call)),
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let WindowKind::Time(span) = self.kind else {
            return;
        };
        while let Some((start, bucket)) = self.entries.front() {
            if now.duration_since(*start) < span {
                break;
            }
            self.total.sub(*bucket);
            self.entries.pop_front();
        }
    }

    /// The rates, once the window holds at least `minimum_calls` calls.
    pub fn rates(&mut self, now: Instant, minimum_calls: u32) -> Option<Rates> {
        self.expire(now);
        let t = self.total;
        (t.calls >= minimum_calls.max(1)).then(|| Rates {
            calls: t.calls,
            failure_rate: f64::from(t.failures) * 100.0 / f64::from(t.calls),
            slow_call_rate: f64::from(t.slow) * 100.0 / f64::from(t.calls),
        })
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.total = Tally::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_calls() {
        let now = Instant::now();
        let mut w = Window::new(WindowKind::Count(4));
        for failed in [true, true, false, false, false, false] {
            w.record(failed, false, now);
        }
        assert_eq!(w.rates(now, 4).unwrap().failure_rate, 0.0);
        w.record(true, true, now);
        let r = w.rates(now, 4).unwrap();
        assert_eq!((r.calls, r.failure_rate, r.slow_call_rate), (4, 25.0, 25.0));
        assert!(w.rates(now, 5).is_none(), "fewer calls than the minimum");
    }

    #[test]
    fn time_window_forgets_calls_older_than_its_span() {
        let t0 = Instant::now();
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)));
        w.record(true, false, t0);
        w.record(true, false, t0 + Duration::from_millis(500));
        w.record(false, false, t0 + Duration::from_secs(5));
        assert_eq!(w.rates(t0 + Duration::from_secs(9), 1).unwrap().calls, 3);
        let r = w.rates(t0 + Duration::from_secs(10), 1).unwrap();
        assert_eq!((r.calls, r.failure_rate), (1, 0.0));
        assert!(w.rates(t0 + Duration::from_secs(16), 1).is_none());
    }
}

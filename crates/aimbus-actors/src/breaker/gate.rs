//! The breaker's published state: what the router reads on every message without an
//! actor round trip. The breaker actor writes it on each transition; readers only load
//! atomics, and half-open admission is a compare-and-swap on the remaining trial permits,
//! so exactly `half_open_max_calls` calls get through.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::state::{Breaker, BreakerState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` marks one of the half-open trial calls.
    Admitted { probe: bool },
    /// The breaker is open; it half-opens after `retry_after` (never, if forced open).
    Rejected { retry_after: Option<Duration> },
}

#[derive(Debug)]
pub struct BreakerGate {
    state: AtomicU8,
    permits: AtomicU32,
    /// When an open breaker half-opens, in nanoseconds after `epoch`.
    half_opens_at: AtomicU64,
    epoch: Instant,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;
const FORCED_OPEN: u8 = 3;

impl BreakerGate {
    pub fn new(now: Instant) -> BreakerGate {
        BreakerGate {
            state: AtomicU8::new(CLOSED),
            permits: AtomicU32::new(0),
            half_opens_at: AtomicU64::new(0),
            epoch: now,
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::ForcedOpen,
        }
    }

    /// `now` is read only when the breaker is open, so a closed breaker costs no clock
    /// read.
    pub fn admit(&self, now: impl FnOnce() -> Instant) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Admitted { probe: false },
            HALF_OPEN => {
                let took = self
                    .permits
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
                match took {
                    Ok(_) => Admission::Admitted { probe: true },
                    // Trial calls are all out; their answers decide, shortly.
                    Err(_) => Admission::Rejected {
                        retry_after: Some(Duration::ZERO),
                    },
                }
            }
            OPEN => {
                let at = Duration::from_nanos(self.half_opens_at.load(Ordering::Acquire));
                let elapsed = now().duration_since(self.epoch);
                Admission::Rejected {
                    retry_after: Some(at.saturating_sub(elapsed)),
                }
            }
            _ => Admission::Rejected { retry_after: None },
        }
    }

    /// Publishes the breaker's state after a transition. Permits and the half-open time
    /// are stored before the state, so a reader that sees the state sees them too.
    pub fn publish(&self, breaker: &Breaker) {
        let state = match breaker.state() {
            BreakerState::Closed => CLOSED,
            BreakerState::Open => {
                let at = breaker.half_opens_at().expect("an open breaker half-opens");
                let nanos = at.duration_since(self.epoch).as_nanos();
                self.half_opens_at
                    .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
                OPEN
            }
            BreakerState::HalfOpen => {
                self.permits
                    .store(breaker.policy().half_open_max_calls, Ordering::Release);
                HALF_OPEN
            }
            BreakerState::ForcedOpen => FORCED_OPEN,
        };
        self.state.store(state, Ordering::Release);
    }
}

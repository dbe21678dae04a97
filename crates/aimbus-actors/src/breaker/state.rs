//! The breaker's state machine, pure: time comes in as an argument, so every rule is
//! tested on a plain clock. The seed's rule (N consecutive failures open it; after the
//! recovery timeout it half-opens; successes close it) runs beside Resilience4j's
//! failure-rate and slow-call-rate rules over a sliding window.

use std::fmt;
use std::time::Duration;

use aimbus_core::CircuitBreakerConfig;
use tokio::time::Instant;

use super::window::{Window, WindowKind};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (the seed's rule).
    pub failure_threshold: u32,
    /// Time open before trial calls are let through.
    pub recovery_timeout: Duration,
    /// Trial calls while half-open; that many successes close the breaker.
    pub half_open_max_calls: u32,
    pub window: WindowKind,
    /// Calls the window must hold before its rates can open the breaker.
    pub minimum_calls: u32,
    /// Percent of failed calls in the window that opens the breaker.
    pub failure_rate_threshold: f64,
    /// A call slower than this is slow, whatever its result.
    pub slow_call_duration: Duration,
    /// Percent of slow calls in the window that opens the breaker.
    pub slow_call_rate_threshold: f64,
    /// A half-open breaker whose trial calls have not all answered by then opens again,
    /// so a probe that never answers cannot hold it half-open.
    pub half_open_max_wait: Duration,
}

impl From<&CircuitBreakerConfig> for BreakerPolicy {
    fn from(c: &CircuitBreakerConfig) -> Self {
        BreakerPolicy {
            failure_threshold: c.circuit_breaker_failure_threshold,
            recovery_timeout: Duration::from_secs(c.circuit_breaker_recovery_timeout_seconds),
            half_open_max_calls: c.circuit_breaker_half_open_max_calls,
            window: match c.sliding_window_type {
                aimbus_core::SlidingWindowType::Count => WindowKind::Count(c.sliding_window_size),
                aimbus_core::SlidingWindowType::Time => {
                    WindowKind::Time(Duration::from_secs(u64::from(c.sliding_window_size)))
                }
            },
            minimum_calls: c.minimum_number_of_calls,
            failure_rate_threshold: c.failure_rate_threshold,
            slow_call_duration: Duration::from_millis(c.slow_call_duration_threshold_ms),
            slow_call_rate_threshold: c.slow_call_rate_threshold,
            half_open_max_wait: Duration::from_secs(c.half_open_max_wait_seconds),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
    /// Opened by an operator; only a reset closes it.
    ForcedOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one call through the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    pub success: bool,
    pub duration: Duration,
    /// Whether the call was one of the half-open trial calls; only those decide a
    /// half-open breaker.
    pub probe: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive_failures: u32,
    window: Window,
    /// When the current state began.
    since: Instant,
    half_open_successes: u32,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy, now: Instant) -> Breaker {
        Breaker {
            policy,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            window: Window::new(policy.window),
            since: now,
            half_open_successes: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// When an open breaker half-opens.
    pub fn half_opens_at(&self) -> Option<Instant> {
        (self.state == BreakerState::Open).then(|| self.since + self.policy.recovery_timeout)
    }

    /// When the next timed transition is due, for the owner to schedule `on_tick`.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open => self.half_opens_at(),
            BreakerState::HalfOpen => Some(self.since + self.policy.half_open_max_wait),
            BreakerState::Closed | BreakerState::ForcedOpen => None,
        }
    }

    fn enter(&mut self, to: BreakerState, reason: String, now: Instant) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        self.since = now;
        // Each state judges only the calls made in it, as Resilience4j does.
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.window.clear();
        Some(Transition { from, to, reason })
    }

    pub fn on_outcome(&mut self, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        let slow = outcome.duration >= self.policy.slow_call_duration;
        match self.state {
            BreakerState::Closed => {
                if outcome.success {
                    self.consecutive_failures = 0;
                } else {
                    self.consecutive_failures += 1;
                }
                self.window.record(!outcome.success, slow, now);
                if self.consecutive_failures >= self.policy.failure_threshold {
                    let reason = format!("{} consecutive failures", self.consecutive_failures);
                    return self.enter(BreakerState::Open, reason, now);
                }
                let rates = self.window.rates(now, self.policy.minimum_calls)?;
                if rates.failure_rate >= self.policy.failure_rate_threshold {
                    let reason = format!(
                        "failure rate {:.1}% over {} calls reached {:.1}%",
                        rates.failure_rate, rates.calls, self.policy.failure_rate_threshold
                    );
                    return self.enter(BreakerState::Open, reason, now);
                }
                if rates.slow_call_rate >= self.policy.slow_call_rate_threshold {
                    let reason = format!(
                        "slow-call rate {:.1}% over {} calls reached {:.1}%",
                        rates.slow_call_rate, rates.calls, self.policy.slow_call_rate_threshold
                    );
                    return self.enter(BreakerState::Open, reason, now);
                }
                None
            }
            BreakerState::HalfOpen if !outcome.probe => None,
            BreakerState::HalfOpen => {
                if !outcome.success {
                    return self.enter(BreakerState::Open, "a trial call failed".into(), now);
                }
                self.half_open_successes += 1;
                if self.half_open_successes >= self.policy.half_open_max_calls {
                    let reason = format!("{} trial calls succeeded", self.half_open_successes);
                    return self.enter(BreakerState::Closed, reason, now);
                }
                None
            }
            // Late answers to calls let through before the breaker opened.
            BreakerState::Open | BreakerState::ForcedOpen => None,
        }
    }

    /// Applies the timed transitions due at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Open if now >= self.since + self.policy.recovery_timeout => self.enter(
                BreakerState::HalfOpen,
                "recovery timeout elapsed".into(),
                now,
            ),
            BreakerState::HalfOpen if now >= self.since + self.policy.half_open_max_wait => self
                .enter(
                    BreakerState::Open,
                    "trial calls did not answer in time".into(),
                    now,
                ),
            _ => None,
        }
    }

    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        (self.state != BreakerState::ForcedOpen)
            .then(|| self.enter(BreakerState::ForcedOpen, "forced open".into(), now))
            .flatten()
    }

    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        let transition = self.enter(BreakerState::Closed, "reset".into(), now);
        transition.filter(|t| t.from != BreakerState::Closed)
    }
}

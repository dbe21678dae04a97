use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::state::*;
use crate::breaker::gate::{Admission, BreakerGate};
use crate::breaker::window::WindowKind;

fn policy() -> BreakerPolicy {
    BreakerPolicy {
        failure_threshold: 5,
        recovery_timeout: Duration::from_secs(60),
        half_open_max_calls: 3,
        window: WindowKind::Count(100),
        minimum_calls: 100,
        failure_rate_threshold: 50.0,
        slow_call_duration: Duration::from_secs(60),
        slow_call_rate_threshold: 100.0,
        half_open_max_wait: Duration::from_secs(120),
    }
}

const FAST: Duration = Duration::from_millis(5);

fn call(success: bool) -> CallOutcome {
    CallOutcome {
        success,
        duration: FAST,
        probe: false,
    }
}

fn probe(success: bool) -> CallOutcome {
    CallOutcome {
        probe: true,
        ..call(success)
    }
}

fn open_breaker(now: Instant) -> Breaker {
    let mut b = Breaker::new(policy(), now);
    for _ in 0..5 {
        b.on_outcome(call(false), now);
    }
    assert_eq!(b.state(), BreakerState::Open);
    b
}

#[test]
fn five_consecutive_failures_open_it_and_a_success_resets_the_count() {
    let t = Instant::now();
    let mut b = Breaker::new(policy(), t);
    for _ in 0..4 {
        assert_eq!(b.on_outcome(call(false), t), None);
    }
    b.on_outcome(call(true), t);
    for _ in 0..4 {
        assert_eq!(b.on_outcome(call(false), t), None);
    }
    let opened = b.on_outcome(call(false), t).unwrap();
    assert_eq!(
        (opened.from, opened.to),
        (BreakerState::Closed, BreakerState::Open)
    );
    assert_eq!(opened.reason, "5 consecutive failures");
}

#[test]
fn a_window_of_five_at_fifty_percent_opens_on_three_failures_of_five() {
    let rate_only = BreakerPolicy {
        failure_threshold: 1_000,
        window: WindowKind::Count(5),
        minimum_calls: 5,
        ..policy()
    };
    let t = Instant::now();
    let mut b = Breaker::new(rate_only, t);
    for success in [false, true, false, true] {
        assert_eq!(
            b.on_outcome(call(success), t),
            None,
            "below the minimum of calls"
        );
    }
    let opened = b.on_outcome(call(false), t).unwrap();
    assert_eq!(opened.to, BreakerState::Open);
    assert!(
        opened.reason.starts_with("failure rate 60.0% over 5 calls"),
        "{}",
        opened.reason
    );

    let mut b = Breaker::new(rate_only, t);
    for success in [false, true, false, true, true, true, false] {
        assert_eq!(b.on_outcome(call(success), t), None, "40% stays closed");
    }
}

#[test]
fn slow_calls_open_it_by_their_rate() {
    let slow_policy = BreakerPolicy {
        window: WindowKind::Count(4),
        minimum_calls: 4,
        slow_call_duration: Duration::from_millis(100),
        slow_call_rate_threshold: 50.0,
        ..policy()
    };
    let t = Instant::now();
    let mut b = Breaker::new(slow_policy, t);
    let slow = CallOutcome {
        duration: Duration::from_millis(150),
        ..call(true)
    };
    for outcome in [slow, call(true), call(true)] {
        assert_eq!(b.on_outcome(outcome, t), None);
    }
    let opened = b.on_outcome(slow, t).unwrap();
    assert!(
        opened.reason.starts_with("slow-call rate 50.0%"),
        "{}",
        opened.reason
    );
}

#[test]
fn open_stays_open_before_the_wait_and_half_opens_after_it() {
    let t = Instant::now();
    let mut b = open_breaker(t);
    assert_eq!(b.half_opens_at(), Some(t + Duration::from_secs(60)));
    assert_eq!(b.on_tick(t + Duration::from_millis(59_999)), None);
    assert_eq!(b.state(), BreakerState::Open);
    let half = b.on_tick(t + Duration::from_secs(60)).unwrap();
    assert_eq!(
        (half.from, half.to),
        (BreakerState::Open, BreakerState::HalfOpen)
    );
}

#[test]
fn half_open_lets_exactly_the_configured_number_through() {
    let t = Instant::now();
    let gate = BreakerGate::new(t);
    let mut b = open_breaker(t);
    gate.publish(&b);
    assert_eq!(
        gate.admit(|| t + Duration::from_secs(20)),
        Admission::Rejected {
            retry_after: Some(Duration::from_secs(40))
        }
    );
    let later = t + Duration::from_secs(60);
    b.on_tick(later).unwrap();
    gate.publish(&b);
    let admitted: Vec<Admission> = (0..5).map(|_| gate.admit(|| later)).collect();
    assert_eq!(&admitted[..3], &[Admission::Admitted { probe: true }; 3]);
    assert!(matches!(admitted[3], Admission::Rejected { .. }));
    assert!(matches!(admitted[4], Admission::Rejected { .. }));
}

#[test]
fn half_open_closes_after_its_trial_calls_succeed_and_reopens_on_a_failure() {
    let t = Instant::now();
    let mut b = open_breaker(t);
    let later = t + Duration::from_secs(60);
    b.on_tick(later);
    assert_eq!(
        b.on_outcome(call(false), later),
        None,
        "a call from before the opening does not decide"
    );
    b.on_outcome(probe(true), later);
    b.on_outcome(probe(true), later);
    let closed = b.on_outcome(probe(true), later).unwrap();
    assert_eq!(
        (closed.from, closed.to),
        (BreakerState::HalfOpen, BreakerState::Closed)
    );

    let mut b = open_breaker(t);
    b.on_tick(later);
    b.on_outcome(probe(true), later);
    let reopened = b.on_outcome(probe(false), later).unwrap();
    assert_eq!(reopened.to, BreakerState::Open);
    assert_eq!(b.half_opens_at(), Some(later + Duration::from_secs(60)));
}

#[test]
fn a_probe_that_never_answers_cannot_wedge_the_breaker() {
    let t = Instant::now();
    let mut b = open_breaker(t);
    let half_open_at = t + Duration::from_secs(60);
    b.on_tick(half_open_at);
    assert_eq!(
        b.next_deadline(),
        Some(half_open_at + Duration::from_secs(120))
    );
    let reopened = b.on_tick(half_open_at + Duration::from_secs(120)).unwrap();
    assert_eq!(reopened.to, BreakerState::Open);
    assert_eq!(reopened.reason, "trial calls did not answer in time");
}

#[test]
fn forced_open_holds_until_reset() {
    let t = Instant::now();
    let gate = BreakerGate::new(t);
    let mut b = Breaker::new(policy(), t);
    b.force_open(t).unwrap();
    gate.publish(&b);
    assert_eq!(b.force_open(t), None, "already forced open");
    assert_eq!(b.on_tick(t + Duration::from_secs(3_600)), None);
    assert_eq!(gate.admit(|| t), Admission::Rejected { retry_after: None });
    let reset = b.reset(t).unwrap();
    assert_eq!(
        (reset.from, reset.to),
        (BreakerState::ForcedOpen, BreakerState::Closed)
    );
    gate.publish(&b);
    assert_eq!(gate.admit(|| t), Admission::Admitted { probe: false });
    assert_eq!(
        b.reset(t),
        None,
        "resetting a closed breaker changes nothing"
    );
}

/// The breaker's rules written the slow, obvious way: the whole history of calls kept
/// and every rate recomputed from it.
#[derive(Debug)]
struct Model {
    policy: BreakerPolicy,
    state: BreakerState,
    since: Instant,
    calls: Vec<(bool, bool)>,
    permits: u32,
    probe_successes: u32,
}

impl Model {
    fn new(policy: BreakerPolicy, now: Instant) -> Model {
        Model {
            policy,
            state: BreakerState::Closed,
            since: now,
            calls: vec![],
            permits: 0,
            probe_successes: 0,
        }
    }

    fn enter(&mut self, state: BreakerState, now: Instant) {
        self.state = state;
        self.since = now;
        self.calls.clear();
        self.probe_successes = 0;
        if state == BreakerState::HalfOpen {
            self.permits = self.policy.half_open_max_calls;
        }
    }

    fn admit(&mut self) -> Option<bool> {
        match self.state {
            BreakerState::Closed => Some(false),
            BreakerState::HalfOpen if self.permits > 0 => {
                self.permits -= 1;
                Some(true)
            }
            _ => None,
        }
    }

    fn outcome(&mut self, success: bool, slow: bool, probe: bool, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.calls.push((!success, slow));
                let WindowKind::Count(size) = self.policy.window else {
                    unreachable!()
                };
                let consecutive = self
                    .calls
                    .iter()
                    .rev()
                    .take_while(|(failed, _)| *failed)
                    .count();
                let recent: Vec<_> = self.calls.iter().rev().take(size as usize).collect();
                let n = recent.len() as f64;
                let failure_rate = recent.iter().filter(|(f, _)| *f).count() as f64 * 100.0 / n;
                let slow_rate = recent.iter().filter(|(_, s)| *s).count() as f64 * 100.0 / n;
                let enough = recent.len() as u32 >= self.policy.minimum_calls;
                if consecutive as u32 >= self.policy.failure_threshold
                    || (enough && failure_rate >= self.policy.failure_rate_threshold)
                    || (enough && slow_rate >= self.policy.slow_call_rate_threshold)
                {
                    self.enter(BreakerState::Open, now);
                }
            }
            BreakerState::HalfOpen if probe => {
                if !success {
                    self.enter(BreakerState::Open, now);
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.policy.half_open_max_calls {
                        self.enter(BreakerState::Closed, now);
                    }
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        match self.state {
            BreakerState::Open if now >= self.since + self.policy.recovery_timeout => {
                self.enter(BreakerState::HalfOpen, now)
            }
            BreakerState::HalfOpen if now >= self.since + self.policy.half_open_max_wait => {
                self.enter(BreakerState::Open, now)
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Admit,
    Complete { success: bool, slow: bool },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Admit),
        4 => (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(success, slow)| Op::Complete { success, slow }),
        1 => (0u64..40_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn the_breaker_and_its_gate_follow_the_reference_model(
        ops in prop::collection::vec(op(), 1..300),
        threshold in 1u32..6,
        window in 2u32..8,
        minimum in 1u32..8,
        rate in prop::sample::select(vec![25.0, 50.0, 75.0, 100.0]),
    ) {
        let policy = BreakerPolicy {
            failure_threshold: threshold,
            recovery_timeout: Duration::from_secs(10),
            half_open_max_calls: 2,
            window: WindowKind::Count(window),
            minimum_calls: minimum,
            failure_rate_threshold: rate,
            slow_call_duration: Duration::from_millis(100),
            slow_call_rate_threshold: rate,
            half_open_max_wait: Duration::from_secs(30),
        };
        let mut now = Instant::now();
        let mut breaker = Breaker::new(policy, now);
        let gate = BreakerGate::new(now);
        let mut model = Model::new(policy, now);
        // Calls admitted and not answered yet, each marked probe or not.
        let mut in_flight: Vec<bool> = Vec::new();
        for op in ops {
            match op {
                Op::Admit => {
                    let expected = model.admit();
                    let got = match gate.admit(|| now) {
                        Admission::Admitted { probe } => Some(probe),
                        Admission::Rejected { .. } => None,
                    };
                    prop_assert_eq!(got, expected);
                    in_flight.extend(got);
                }
                Op::Complete { success, slow } => {
                    let Some(probe) = in_flight.pop() else { continue };
                    let duration = if slow { Duration::from_millis(150) } else { FAST };
                    model.outcome(success, slow, probe, now);
                    if breaker.on_outcome(CallOutcome { success, duration, probe }, now).is_some() {
                        gate.publish(&breaker);
                    }
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    model.tick(now);
                    if breaker.on_tick(now).is_some() {
                        gate.publish(&breaker);
                    }
                }
            }
            prop_assert_eq!(breaker.state(), model.state);
            prop_assert_eq!(gate.state(), model.state);
        }
    }
}

mod actor {
    use super::*;
    use crate::breaker::{BreakerEvent, BreakerHandle, Override};
    use tokio::sync::broadcast;

    fn start(policy: BreakerPolicy) -> (BreakerHandle, broadcast::Receiver<BreakerEvent>) {
        let (events, receiver) = broadcast::channel(64);
        (
            BreakerHandle::start("cmc_001", policy, events, 64),
            receiver,
        )
    }

    /// Lets the breaker actor drain its mailbox.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[actix_rt::test]
    async fn the_actor_opens_half_opens_and_closes_on_a_paused_clock() {
        tokio::time::pause();
        let (breaker, mut events) = start(policy());
        for _ in 0..5 {
            breaker
                .admit()
                .unwrap()
                .finish(false, Instant::now(), Instant::now());
        }
        settle().await;
        assert_eq!(breaker.state(), BreakerState::Open);
        let retry_after = breaker.admit().err().unwrap().unwrap();
        assert!(retry_after > Duration::from_secs(59), "{retry_after:?}");

        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "still open before the wait"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);

        let probes: Vec<_> = (0..3).map(|_| breaker.admit().unwrap()).collect();
        assert!(probes.iter().all(|p| p.is_probe()));
        assert!(breaker.admit().is_err(), "no fourth trial call");
        for probe in probes {
            probe.finish(true, Instant::now(), Instant::now());
        }
        settle().await;
        assert_eq!(breaker.state(), BreakerState::Closed);

        let seen: Vec<(BreakerState, BreakerState)> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| (e.from, e.to))
            .collect();
        assert_eq!(
            seen,
            [
                (BreakerState::Closed, BreakerState::Open),
                (BreakerState::Open, BreakerState::HalfOpen),
                (BreakerState::HalfOpen, BreakerState::Closed),
            ]
        );
    }

    #[actix_rt::test]
    async fn an_abandoned_trial_call_counts_as_a_failure() {
        tokio::time::pause();
        let (breaker, _events) = start(policy());
        breaker.override_state(Override::ForceOpen).await.unwrap();
        assert_eq!(
            breaker.admit().err(),
            Some(None),
            "forced open never half-opens by itself"
        );
        breaker.override_state(Override::Reset).await.unwrap();
        for _ in 0..5 {
            breaker
                .admit()
                .unwrap()
                .finish(false, Instant::now(), Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        drop(breaker.admit().unwrap());
        settle().await;
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[actix_rt::test]
    async fn trial_calls_that_never_answer_reopen_it_after_the_max_wait() {
        tokio::time::pause();
        let (breaker, _events) = start(policy());
        for _ in 0..5 {
            breaker
                .admit()
                .unwrap()
                .finish(false, Instant::now(), Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(61)).await;
        let hung = breaker.admit().unwrap();
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        drop(hung);
    }
}

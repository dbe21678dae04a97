//! One circuit breaker per system instance. The [`BreakerActor`] owns the state machine
//! and its timers; it publishes every transition to a [`BreakerGate`] that the router
//! reads with atomic loads, so checking a breaker never waits on an actor.

mod gate;
mod state;
mod window;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::time::Instant;

pub use gate::{Admission, BreakerGate};
pub use state::{Breaker, BreakerPolicy, BreakerState, CallOutcome, Transition};
pub use window::WindowKind;

use crate::metrics;

/// A breaker changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerEvent {
    pub system_id: String,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Outcomes waiting for the breaker actor, each with when its call finished. Permits
/// push here and wake the actor with one `Drain` however many outcomes pile up. A fast
/// success while closed cannot cause a transition, so it wakes nobody: it waits, in
/// order, for the next outcome that might (or for the batch to fill), and the actor
/// replays the lot at their own times. The hot path then costs the breaker no message
/// at all, and no transition is ever late.
#[derive(Default)]
struct Inbox {
    outcomes: Mutex<Vec<(CallOutcome, Instant)>>,
    /// A `Drain` is on its way.
    signalled: AtomicBool,
}

/// Outcomes that may wait before the actor must look at them: memory per breaker stays
/// bounded, and the replay is rare enough to stay out of the latency tail.
const INBOX_BATCH: usize = 1024;

pub struct BreakerActor {
    system_id: String,
    breaker: Breaker,
    gate: Arc<BreakerGate>,
    inbox: Arc<Inbox>,
    events: broadcast::Sender<BreakerEvent>,
    timer: Option<SpawnHandle>,
    mailbox_capacity: usize,
}

impl BreakerActor {
    fn apply(&mut self, transition: Option<Transition>, ctx: &mut Context<Self>) {
        let Some(t) = transition else {
            return;
        };
        self.gate.publish(&self.breaker);
        tracing::info!(system_id = %self.system_id, from = %t.from, to = %t.to, reason = %t.reason, "circuit breaker transition");
        ::metrics::counter!(
            metrics::BREAKER_TRANSITIONS,
            "system_id" => self.system_id.clone(),
            "to" => t.to.as_str(),
        )
        .increment(1);
        let level = match t.to {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open | BreakerState::ForcedOpen => 2.0,
        };
        ::metrics::gauge!(metrics::BREAKER_STATE, "system_id" => self.system_id.clone()).set(level);
        let _ = self.events.send(BreakerEvent {
            system_id: self.system_id.clone(),
            from: t.from,
            to: t.to,
            reason: t.reason,
            at: Utc::now(),
        });
        self.schedule(ctx);
    }

    /// Keeps one timer armed for the next timed transition, if any.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(deadline) = self.breaker.next_deadline() {
            let wait = deadline.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(wait, |actor, ctx| {
                actor.timer = None;
                let transition = actor.breaker.on_tick(Instant::now());
                actor.apply(transition, ctx);
            }));
        }
    }
}

impl Actor for BreakerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Drain;

impl Handler<Drain> for BreakerActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        // Cleared before taking the batch: an outcome pushed after this sends a new Drain.
        self.inbox.signalled.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *self.inbox.outcomes.lock().expect("inbox lock"));
        for (outcome, finished_at) in batch {
            let transition = self.breaker.on_outcome(outcome, finished_at);
            self.apply(transition, ctx);
        }
    }
}

/// An operator's hand on the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "BreakerState")]
pub enum Override {
    ForceOpen,
    Reset,
}

impl Handler<Override> for BreakerActor {
    type Result = MessageResult<Override>;

    fn handle(&mut self, order: Override, ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let transition = match order {
            Override::ForceOpen => self.breaker.force_open(now),
            Override::Reset => self.breaker.reset(now),
        };
        self.apply(transition, ctx);
        MessageResult(self.breaker.state())
    }
}

/// The router's handle on one breaker: a cheap admission check, and the actor to report to.
/// Cloned into every call's permit: one reference count, not an actor address's two.
#[derive(Clone)]
pub struct BreakerHandle(Arc<Link>);

struct Link {
    addr: Addr<BreakerActor>,
    gate: Arc<BreakerGate>,
    inbox: Arc<Inbox>,
    slow_call_duration: Duration,
}

impl BreakerHandle {
    pub fn start(
        system_id: &str,
        policy: BreakerPolicy,
        events: broadcast::Sender<BreakerEvent>,
        mailbox_capacity: usize,
    ) -> BreakerHandle {
        let now = Instant::now();
        let gate = Arc::new(BreakerGate::new(now));
        let inbox = Arc::new(Inbox::default());
        let addr = BreakerActor {
            system_id: system_id.to_owned(),
            breaker: Breaker::new(policy, now),
            gate: Arc::clone(&gate),
            inbox: Arc::clone(&inbox),
            events,
            timer: None,
            mailbox_capacity,
        }
        .start();
        BreakerHandle(Arc::new(Link {
            addr,
            gate,
            inbox,
            slow_call_duration: policy.slow_call_duration,
        }))
    }

    pub fn state(&self) -> BreakerState {
        self.0.gate.state()
    }

    /// Whether a call may go through now; the permit must be finished with its outcome.
    pub fn admit(&self) -> Result<BreakerPermit, Option<Duration>> {
        match self.0.gate.admit(Instant::now) {
            Admission::Admitted { probe } => Ok(BreakerPermit {
                breaker: Some(self.clone()),
                probe,
            }),
            Admission::Rejected { retry_after } => Err(retry_after),
        }
    }

    pub async fn override_state(&self, order: Override) -> Result<BreakerState, MailboxError> {
        self.0.addr.send(order).await
    }
}

/// Leave to make one call. Finishing it reports the outcome; dropping it unfinished (the
/// caller gave up) reports a failure, so an abandoned trial call still decides.
pub struct BreakerPermit {
    breaker: Option<BreakerHandle>,
    probe: bool,
}

impl BreakerPermit {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome and when it started and finished (the caller has
    /// read the clock for those already).
    pub fn finish(mut self, success: bool, started: Instant, finished: Instant) {
        self.report(
            success,
            finished.saturating_duration_since(started),
            finished,
        );
    }

    fn report(&mut self, success: bool, duration: Duration, finished: Instant) {
        let Some(BreakerHandle(breaker)) = self.breaker.take() else {
            return;
        };
        let outcome = CallOutcome {
            success,
            duration,
            probe: self.probe,
        };
        let may_transition = !success
            || self.probe
            || duration >= breaker.slow_call_duration
            || breaker.gate.state() != BreakerState::Closed;
        let inbox = &breaker.inbox;
        let waiting = {
            let mut outcomes = inbox.outcomes.lock().expect("inbox lock");
            outcomes.push((outcome, finished));
            outcomes.len()
        };
        let wake = may_transition || waiting >= INBOX_BATCH;
        if wake
            && !inbox.signalled.swap(true, Ordering::AcqRel)
            && breaker.addr.try_send(Drain).is_err()
        {
            // The mailbox is full of overrides; the next outcome signals again.
            inbox.signalled.store(false, Ordering::Release);
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if self.breaker.is_some() {
            self.report(false, Duration::ZERO, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;

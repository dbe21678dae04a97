//! One circuit breaker per system instance. The [`BreakerActor`] owns the state machine
//! and its timers; it publishes every transition to a [`BreakerGate`] that the router
//! reads with atomic loads, so checking a breaker never waits on an actor.

mod gate;
mod state;
mod window;

use std::sync::Arc;
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

pub struct BreakerActor {
    system_id: String,
    breaker: Breaker,
    gate: Arc<BreakerGate>,
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
pub struct RecordCall(pub CallOutcome);

impl Handler<RecordCall> for BreakerActor {
    type Result = ();

    fn handle(&mut self, RecordCall(outcome): RecordCall, ctx: &mut Context<Self>) {
        let transition = self.breaker.on_outcome(outcome, Instant::now());
        self.apply(transition, ctx);
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
#[derive(Clone)]
pub struct BreakerHandle {
    addr: Addr<BreakerActor>,
    gate: Arc<BreakerGate>,
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
        let addr = BreakerActor {
            system_id: system_id.to_owned(),
            breaker: Breaker::new(policy, now),
            gate: Arc::clone(&gate),
            events,
            timer: None,
            mailbox_capacity,
        }
        .start();
        BreakerHandle { addr, gate }
    }

    pub fn state(&self) -> BreakerState {
        self.gate.state()
    }

    /// Whether a call may go through now; the permit must be finished with its outcome.
    pub fn admit(&self) -> Result<BreakerPermit, Option<Duration>> {
        match self.gate.admit(Instant::now()) {
            Admission::Admitted { probe } => Ok(BreakerPermit {
                addr: Some(self.addr.clone()),
                probe,
                started: Instant::now(),
            }),
            Admission::Rejected { retry_after } => Err(retry_after),
        }
    }

    pub async fn override_state(&self, order: Override) -> Result<BreakerState, MailboxError> {
        self.addr.send(order).await
    }
}

/// Leave to make one call. Finishing it reports the outcome; dropping it unfinished (the
/// caller gave up) reports a failure, so an abandoned trial call still decides.
pub struct BreakerPermit {
    addr: Option<Addr<BreakerActor>>,
    probe: bool,
    started: Instant,
}

impl BreakerPermit {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn finish(mut self, success: bool) {
        self.report(success);
    }

    fn report(&mut self, success: bool) {
        let Some(addr) = self.addr.take() else {
            return;
        };
        let outcome = CallOutcome {
            success,
            duration: self.started.elapsed(),
            probe: self.probe,
        };
        // A full breaker mailbox means it is far behind; one outcome less skews a rate
        // slightly, while waiting here would stall the caller.
        if addr.try_send(RecordCall(outcome)).is_err() {
            ::metrics::counter!(metrics::BREAKER_OUTCOMES_DROPPED).increment(1);
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        self.report(false);
    }
}

#[cfg(test)]
mod tests;

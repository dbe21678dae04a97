//! One actor per registered system. It is the unit the registry supervises: whatever
//! breaks a system's connection (a transport error, a panic while handling its traffic)
//! ends this actor, and the registry starts a fresh one after a backoff.

use std::sync::{Arc, RwLock};

use actix::prelude::*;
use aimbus_core::{IntegrationMessage, SystemInfo};
use chrono::{DateTime, Utc};

use crate::transport::{DeliveryFailure, DeliveryMode, Reply, TransportSet};

/// Why a system actor ended; sent to the registry as the actor is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// Stopped on purpose (unregistration, shutdown): not restarted.
    Requested,
    /// Reported broken: restarted after a backoff.
    Fault(String),
    /// A handler panicked: restarted after a backoff.
    Panicked,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChildExited {
    pub system_id: String,
    pub generation: u64,
    pub reason: ExitReason,
}

/// Tells a system actor that its system's connection is broken beyond repair; the actor
/// ends and its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Fault {
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Asks a system actor who it is.
#[derive(Debug, Message)]
#[rtype(result = "ActorInfo")]
pub struct Describe;

/// A running system actor's identity: which incarnation it is and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    pub system_id: String,
    /// 0 for the first actor of a registration, then one more per restart.
    pub generation: u64,
    pub started_at: DateTime<Utc>,
}

pub struct SystemActor {
    info: ActorInfo,
    system: Arc<SystemInfo>,
    transports: TransportSet,
    mailbox_capacity: usize,
    exit: ExitNotice,
}

impl SystemActor {
    pub(crate) fn new(
        system: Arc<SystemInfo>,
        generation: u64,
        transports: TransportSet,
        mailbox_capacity: usize,
        supervisor: Recipient<ChildExited>,
    ) -> SystemActor {
        let system_id = system.system_id.clone();
        SystemActor {
            info: ActorInfo {
                system_id: system_id.clone(),
                generation,
                started_at: Utc::now(),
            },
            system,
            transports,
            mailbox_capacity,
            exit: ExitNotice {
                supervisor,
                system_id,
                generation,
                reason: None,
            },
        }
    }
}

/// Carries one message to the system through its transport and answers with its reply.
/// The transport call runs beside the actor, so a slow system does not hold its mailbox.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reply, DeliveryFailure>")]
pub struct Deliver {
    pub message: Arc<IntegrationMessage>,
    pub mode: DeliveryMode,
    /// The attempt's trace: the transport's work (an AMQP publish, an HTTP call) is its
    /// span's child, though it starts in this actor's task, or as unsampled as it.
    pub trace: aimbus_telemetry::Trace,
    /// When the attempt ends, whatever the system is doing then.
    pub deadline: tokio::time::Instant,
}

impl Handler<Deliver> for SystemActor {
    type Result = ResponseFuture<Result<Reply, DeliveryFailure>>;

    fn handle(&mut self, deliver: Deliver, _: &mut Context<Self>) -> Self::Result {
        let Deliver {
            message,
            mode,
            trace,
            deadline,
        } = deliver;
        // Transports start their traced work (a publish, an HTTP call) when first polled,
        // so entering the span around the polls is enough.
        let delivery = self
            .transports
            .deliver(&self.system, message, mode, deadline);
        Box::pin(trace.instrument(delivery))
    }
}

/// The running actor of each system, for those who deliver: the registry actor keeps it
/// current across restarts, and readers take a clone of an address under a read lock.
#[derive(Clone, Default)]
pub struct SystemDirectory(Arc<RwLock<crate::FastMap<Addr<SystemActor>>>>);

impl SystemDirectory {
    pub fn get(&self, system_id: &str) -> Option<Addr<SystemActor>> {
        self.0
            .read()
            .expect("directory lock")
            .get(system_id)
            .cloned()
    }

    /// Delivers to the system's running actor, if it has one: sent under the read lock,
    /// so the hot path clones no address.
    pub fn deliver(
        &self,
        system_id: &str,
        deliver: Deliver,
    ) -> Option<actix::dev::Request<SystemActor, Deliver>> {
        let directory = self.0.read().expect("directory lock");
        directory.get(system_id).map(|addr| addr.send(deliver))
    }

    pub(crate) fn set(&self, system_id: &str, addr: Addr<SystemActor>) {
        self.0
            .write()
            .expect("directory lock")
            .insert(system_id.to_owned(), addr);
    }

    pub(crate) fn remove(&self, system_id: &str) {
        self.0.write().expect("directory lock").remove(system_id);
    }
}

impl Actor for SystemActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        tracing::debug!(system_id = %self.info.system_id, generation = self.info.generation, "system actor started");
    }
}

impl Handler<Fault> for SystemActor {
    type Result = ();

    fn handle(&mut self, fault: Fault, ctx: &mut Context<Self>) {
        tracing::warn!(system_id = %self.info.system_id, reason = %fault.reason, "system actor fault");
        self.exit.reason = Some(ExitReason::Fault(fault.reason));
        ctx.stop();
    }
}

impl Handler<Shutdown> for SystemActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.exit.reason = Some(ExitReason::Requested);
        ctx.stop();
    }
}

impl Handler<Describe> for SystemActor {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.info.clone())
    }
}

/// Tells the supervisor that the actor is gone. It lives inside the actor, so its `Drop`
/// runs however the actor ends, a panic included: the runtime drops a task that panicked.
struct ExitNotice {
    supervisor: Recipient<ChildExited>,
    system_id: String,
    generation: u64,
    reason: Option<ExitReason>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let reason = match self.reason.take() {
            _ if std::thread::panicking() => ExitReason::Panicked,
            Some(reason) => reason,
            // Every address dropped: nobody can reach the actor, so nobody wants it.
            None => ExitReason::Requested,
        };
        // `do_send` ignores the mailbox bound; at most one notice per incarnation keeps
        // this bounded by the number of systems.
        self.supervisor.do_send(ChildExited {
            system_id: std::mem::take(&mut self.system_id),
            generation: self.generation,
            reason,
        });
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Makes a system actor's handler panic, as a bug in a transport would.
    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct PanicInHandler;

    impl Handler<PanicInHandler> for SystemActor {
        type Result = ();

        fn handle(&mut self, _: PanicInHandler, _: &mut Context<Self>) {
            panic!("handler panicked on purpose");
        }
    }
}

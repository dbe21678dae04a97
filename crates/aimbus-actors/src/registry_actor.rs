//! The registry actor: owns the [`Registry`] state, starts one [`SystemActor`] per
//! registered system, restarts those that fail, and publishes every change.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use actix::prelude::*;
use aimbus_core::{
    HealthCheckResult, IntegrationStatus, PerformanceMetrics, Registration, Registry,
    RegistryEvent, SupervisionConfig, SystemInfo,
};
use chrono::Utc;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::supervision::{RestartPolicy, RestartTracker, Verdict};
use crate::system_actor::{ChildExited, ExitReason, Shutdown, SystemActor, SystemDirectory};
use crate::transport::TransportSet;

pub struct RegistryActor {
    registry: Registry,
    children: HashMap<String, Child>,
    policy: RestartPolicy,
    mailbox_capacity: usize,
    events: broadcast::Sender<RegistryEvent>,
    transports: TransportSet,
    directory: SystemDirectory,
}

/// The supervisor's record of one system's actor.
struct Child {
    /// `None` while waiting to restart, or after giving up.
    addr: Option<Addr<SystemActor>>,
    generation: u64,
    tracker: RestartTracker,
}

/// A running child as tests and operators see it.
#[derive(Debug, Clone)]
pub struct ChildState {
    pub addr: Option<Addr<SystemActor>>,
    pub generation: u64,
    /// Restarts within the current window.
    pub restarts: u32,
}

impl RegistryActor {
    pub fn new(config: &SupervisionConfig, transports: TransportSet) -> RegistryActor {
        RegistryActor {
            registry: Registry::new(),
            children: HashMap::new(),
            policy: RestartPolicy::from(config),
            mailbox_capacity: config.mailbox_capacity,
            events: broadcast::channel(config.event_buffer).0,
            transports,
            directory: SystemDirectory::default(),
        }
    }

    /// Where the running system actors are found.
    pub fn directory(&self) -> SystemDirectory {
        self.directory.clone()
    }

    fn publish(&self, event: RegistryEvent) {
        // No subscriber is not an error: the event matters only to those listening.
        let _ = self.events.send(event);
    }

    fn spawn_child(
        &self,
        system_id: &str,
        generation: u64,
        ctx: &Context<Self>,
    ) -> Addr<SystemActor> {
        let system = self
            .registry
            .get(system_id)
            .cloned()
            .expect("children exist only for registered systems");
        let addr = SystemActor::new(
            Arc::new(system),
            generation,
            self.transports.clone(),
            self.mailbox_capacity,
            ctx.address().recipient(),
        )
        .start();
        self.directory.set(system_id, addr.clone());
        addr
    }

    fn change_status(&mut self, system_id: &str, status: IntegrationStatus, reason: String) {
        if let Ok(previous) = self.registry.set_status(system_id, status) {
            self.publish_status(system_id, previous, status, reason);
        }
    }

    fn publish_status(
        &self,
        system_id: &str,
        previous: IntegrationStatus,
        status: IntegrationStatus,
        reason: String,
    ) {
        if previous == status {
            return;
        }
        tracing::info!(system_id, %previous, %status, %reason, "system status changed");
        self.publish(RegistryEvent::StatusUpdate {
            system_id: system_id.to_owned(),
            previous,
            status,
            reason,
            at: Utc::now(),
        });
    }

    fn restart(&mut self, system_id: String, generation: u64, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get(&system_id) else {
            return; // unregistered while waiting
        };
        if child.generation + 1 != generation || child.addr.is_some() {
            return; // superseded by a re-registration
        }
        let addr = self.spawn_child(&system_id, generation, ctx);
        let child = self.children.get_mut(&system_id).expect("checked above");
        child.addr = Some(addr);
        child.generation = generation;
        child.tracker.on_started(Instant::now());
        tracing::info!(system_id, generation, "system actor restarted");
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for child in self.children.values() {
            if let Some(addr) = &child.addr {
                addr.do_send(Shutdown);
            }
        }
    }
}

/// Registers a system (or upgrades it to a new version) and starts its actor.
#[derive(Debug, Message)]
#[rtype(result = "Result<Registration, aimbus_core::Error>")]
pub struct Register(pub SystemInfo);

impl Handler<Register> for RegistryActor {
    type Result = Result<Registration, aimbus_core::Error>;

    fn handle(&mut self, Register(info): Register, ctx: &mut Context<Self>) -> Self::Result {
        let registration = self.registry.register(info.clone())?;
        let system_id = info.system_id.clone();
        // An upgrade is a new deployment: it gets a fresh actor and restart history.
        let generation = match self.children.remove(&system_id) {
            Some(old) => {
                if let Some(addr) = old.addr {
                    addr.do_send(Shutdown);
                }
                old.generation + 1
            }
            None => 0,
        };
        let addr = self.spawn_child(&system_id, generation, ctx);
        self.children.insert(
            system_id.clone(),
            Child {
                addr: Some(addr),
                generation,
                tracker: RestartTracker::new(Instant::now()),
            },
        );
        tracing::info!(%system_id, name = %info.name, version = %info.version, "system registered");
        self.publish(match &registration {
            Registration::Added => RegistryEvent::SystemRegistered { system: info },
            Registration::Upgraded { previous_version } => RegistryEvent::SystemUpdated {
                system: info,
                previous_version: previous_version.clone(),
            },
        });
        Ok(registration)
    }
}

/// Unregisters a system and stops its actor.
#[derive(Debug, Message)]
#[rtype(result = "Result<SystemInfo, aimbus_core::Error>")]
pub struct Unregister(pub String);

impl Handler<Unregister> for RegistryActor {
    type Result = Result<SystemInfo, aimbus_core::Error>;

    fn handle(&mut self, Unregister(system_id): Unregister, _: &mut Context<Self>) -> Self::Result {
        let info = self.registry.unregister(&system_id)?;
        if let Some(addr) = self.children.remove(&system_id).and_then(|c| c.addr) {
            addr.do_send(Shutdown);
        }
        self.directory.remove(&system_id);
        tracing::info!(%system_id, "system unregistered");
        self.publish(RegistryEvent::SystemUnregistered { system_id });
        Ok(info)
    }
}

/// Reads the registry: `f` runs inside the actor against its state, so any read-only
/// question (a lookup, a chain, a summary) is one message without a type of its own.
pub struct Query<F, R> {
    f: F,
    result: PhantomData<fn() -> R>,
}

impl<F, R> Query<F, R>
where
    F: FnOnce(&Registry) -> R,
{
    pub fn new(f: F) -> Self {
        Query {
            f,
            result: PhantomData,
        }
    }
}

impl<F, R: 'static> Message for Query<F, R> {
    type Result = R;
}

impl<F, R> Handler<Query<F, R>> for RegistryActor
where
    F: FnOnce(&Registry) -> R,
    R: 'static,
{
    type Result = MessageResult<Query<F, R>>;

    fn handle(&mut self, query: Query<F, R>, _: &mut Context<Self>) -> Self::Result {
        MessageResult((query.f)(&self.registry))
    }
}

/// Sets a system's status (the health monitor and operators do), publishing the change.
#[derive(Debug, Message)]
#[rtype(result = "Result<IntegrationStatus, aimbus_core::Error>")]
pub struct SetStatus {
    pub system_id: String,
    pub status: IntegrationStatus,
    pub reason: String,
}

impl Handler<SetStatus> for RegistryActor {
    type Result = Result<IntegrationStatus, aimbus_core::Error>;

    fn handle(&mut self, msg: SetStatus, _: &mut Context<Self>) -> Self::Result {
        let previous = self.registry.set_status(&msg.system_id, msg.status)?;
        self.publish_status(&msg.system_id, previous, msg.status, msg.reason);
        Ok(previous)
    }
}

/// Records a health check: its status becomes the system's status.
#[derive(Debug, Message)]
#[rtype(result = "Result<IntegrationStatus, aimbus_core::Error>")]
pub struct ApplyHealthCheck(pub HealthCheckResult);

impl Handler<ApplyHealthCheck> for RegistryActor {
    type Result = Result<IntegrationStatus, aimbus_core::Error>;

    fn handle(
        &mut self,
        ApplyHealthCheck(result): ApplyHealthCheck,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let previous = self.registry.apply_health_check(&result)?;
        let reason = result.error_message.clone().unwrap_or_else(|| {
            format!("health check answered in {:.1} ms", result.response_time_ms)
        });
        self.publish_status(&result.system_id, previous, result.status, reason);
        Ok(previous)
    }
}

/// Replaces systems' performance metrics with what the router measured; systems that
/// left the registry meanwhile are skipped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetPerformanceMetrics(pub Vec<(String, PerformanceMetrics)>);

impl Handler<SetPerformanceMetrics> for RegistryActor {
    type Result = ();

    fn handle(&mut self, SetPerformanceMetrics(all): SetPerformanceMetrics, _: &mut Context<Self>) {
        for (system_id, metrics) in all {
            let _ = self.registry.set_performance_metrics(&system_id, metrics);
        }
    }
}

/// The registry as it is now, and every change after it, with nothing missed in between.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: Vec<SystemInfo>,
    /// Bounded: a subscriber that falls behind gets `RecvError::Lagged` and should
    /// subscribe again for a fresh snapshot.
    pub events: broadcast::Receiver<RegistryEvent>,
}

#[derive(Debug, Message)]
#[rtype(result = "Subscription")]
pub struct Subscribe;

impl Handler<Subscribe> for RegistryActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _: Subscribe, _: &mut Context<Self>) -> Self::Result {
        // One message, so no event can fall between the snapshot and the subscription.
        MessageResult(Subscription {
            snapshot: self.registry.systems().cloned().collect(),
            events: self.events.subscribe(),
        })
    }
}

/// The supervisor's view of a system's actor.
#[derive(Debug, Message)]
#[rtype(result = "Option<ChildState>")]
pub struct GetChild(pub String);

impl Handler<GetChild> for RegistryActor {
    type Result = Option<ChildState>;

    fn handle(&mut self, GetChild(system_id): GetChild, _: &mut Context<Self>) -> Self::Result {
        self.children.get(&system_id).map(|child| ChildState {
            addr: child.addr.clone(),
            generation: child.generation,
            restarts: child.tracker.restarts(),
        })
    }
}

impl Handler<ChildExited> for RegistryActor {
    type Result = ();

    fn handle(&mut self, exit: ChildExited, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get_mut(&exit.system_id) else {
            return; // unregistered: its actor was told to stop
        };
        if child.generation != exit.generation || child.addr.is_none() {
            return; // an older incarnation
        }
        let reason = match exit.reason {
            ExitReason::Requested => return,
            ExitReason::Fault(reason) => reason,
            ExitReason::Panicked => "system actor panicked".to_owned(),
        };
        child.addr = None;
        self.directory.remove(&exit.system_id);
        let verdict = child.tracker.on_failure(&self.policy, Instant::now());
        let restarts = child.tracker.restarts();
        let generation = child.generation;
        match verdict {
            Verdict::RestartAfter(delay) => {
                tracing::warn!(system_id = %exit.system_id, %reason, restarts, delay_ms = delay.as_millis() as u64, "system actor failed; restarting");
                // As the seed's handle_system_error: unhealthy until a health check
                // verifies the recovery.
                self.change_status(&exit.system_id, IntegrationStatus::Unhealthy, reason);
                let system_id = exit.system_id;
                ctx.run_later(delay, move |actor, ctx| {
                    actor.restart(system_id, generation + 1, ctx);
                });
            }
            Verdict::GiveUp => {
                tracing::error!(system_id = %exit.system_id, %reason, restarts, "system actor failed past the restart limit");
                self.change_status(
                    &exit.system_id,
                    IntegrationStatus::Failed,
                    format!("{reason}; gave up after {restarts} restarts"),
                );
            }
        }
    }
}

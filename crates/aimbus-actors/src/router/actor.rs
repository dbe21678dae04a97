//! The router actor: the one writer of the routing state callers read. It applies the
//! registry's events to the view, gives each system instance its breaker, copies
//! per-system metrics into the registry, and carries out breaker overrides.

use std::sync::Arc;

use actix::prelude::*;
use aimbus_core::{PerformanceMetrics, RegistryEvent};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::METRICS_FLUSH_INTERVAL;
use super::attempt::Instance;
use super::dispatch::Dispatch;
use super::view::RoutingView;
use crate::breaker::{BreakerEvent, BreakerHandle, BreakerPolicy, BreakerState, Override};
use crate::registry_actor::{SetPerformanceMetrics, Subscription};
use crate::stats::SystemMetrics;
use crate::{Error, RegistryHandle};

pub struct Router {
    pub(super) dispatch: Arc<Dispatch>,
    pub(super) registry: RegistryHandle,
    pub(super) breaker_policy: BreakerPolicy,
    pub(super) breaker_events: broadcast::Sender<BreakerEvent>,
    /// The registry's events from the snapshot the view was built from on.
    pub(super) pending: Option<broadcast::Receiver<RegistryEvent>>,
}

impl Router {
    pub(super) fn new_instance(&self, system_id: &str) -> Arc<Instance> {
        let config = &self.dispatch.config;
        let breaker = BreakerHandle::start(
            system_id,
            self.breaker_policy,
            self.breaker_events.clone(),
            config.supervision().mailbox_capacity,
        );
        Arc::new(Instance::new(
            system_id,
            breaker,
            config.core().max_concurrent_requests_per_system as usize,
        ))
    }

    /// Publishes a view built from a registry snapshot, with a fresh instance each.
    pub(super) fn publish(&self, snapshot: Vec<aimbus_core::SystemInfo>) {
        let view = RoutingView::from_snapshot(snapshot);
        let instances: crate::FastMap<Arc<Instance>> = view
            .systems()
            .map(|s| (s.system_id.clone(), self.new_instance(&s.system_id)))
            .collect();
        *self.dispatch.view.write().expect("view lock") = view;
        *self.dispatch.instances.write().expect("instances lock") = instances;
    }

    fn rebuild(&mut self, subscription: Subscription, ctx: &mut Context<Self>) {
        self.publish(subscription.snapshot);
        ctx.add_stream(BroadcastStream::new(subscription.events));
    }

    fn apply(&mut self, event: RegistryEvent) {
        let dispatch = &self.dispatch;
        dispatch.view.write().expect("view lock").apply(&event);
        match &event {
            RegistryEvent::SystemRegistered { system }
            | RegistryEvent::SystemUpdated { system, .. } => {
                let instance = self.new_instance(&system.system_id);
                dispatch
                    .instances
                    .write()
                    .expect("instances lock")
                    .insert(system.system_id.clone(), instance);
            }
            RegistryEvent::SystemUnregistered { system_id } => {
                dispatch
                    .instances
                    .write()
                    .expect("instances lock")
                    .remove(system_id);
                dispatch
                    .balancer
                    .lock()
                    .expect("balancer lock")
                    .forget(system_id);
            }
            RegistryEvent::StatusUpdate { .. } => {}
        }
    }

    fn flush_metrics(&self) {
        let metrics: Vec<(String, PerformanceMetrics)> = self
            .dispatch
            .instances
            .read()
            .expect("instances lock")
            .iter()
            .map(|(id, instance)| (id.clone(), instance.stats.performance()))
            .collect();
        // A full registry mailbox skips one flush; the next carries the same totals.
        let _ = self
            .registry
            .addr()
            .try_send(SetPerformanceMetrics(metrics));
    }

    fn instance(&self, system_id: &str) -> Option<Arc<Instance>> {
        let instances = self.dispatch.instances.read().expect("instances lock");
        instances.get(system_id).cloned()
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.dispatch.config.supervision().mailbox_capacity);
        if let Some(events) = self.pending.take() {
            ctx.add_stream(BroadcastStream::new(events));
        }
        ctx.run_interval(METRICS_FLUSH_INTERVAL, |router, _| router.flush_metrics());
    }
}

impl StreamHandler<Result<RegistryEvent, BroadcastStreamRecvError>> for Router {
    fn handle(
        &mut self,
        item: Result<RegistryEvent, BroadcastStreamRecvError>,
        ctx: &mut Context<Self>,
    ) {
        match item {
            Ok(event) => self.apply(event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "router fell behind registry events; re-reading the registry"
                );
                let registry = self.registry.clone();
                ctx.wait(
                    async move { registry.subscribe().await }
                        .into_actor(self)
                        .map(|subscription, router, ctx| match subscription {
                            Ok(subscription) => router.rebuild(subscription, ctx),
                            Err(error) => tracing::error!(%error, "cannot re-read the registry"),
                        }),
                );
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Each re-subscription adds a fresh stream; the lagged one just ends.
    }
}

/// Copies every system's metrics into the registry now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushMetrics;

impl Handler<FlushMetrics> for Router {
    type Result = ();

    fn handle(&mut self, _: FlushMetrics, _: &mut Context<Self>) {
        self.flush_metrics();
    }
}

/// One system's metrics with latency percentiles.
#[derive(Debug, Message)]
#[rtype(result = "Option<SystemMetrics>")]
pub struct GetSystemMetrics(pub String);

impl Handler<GetSystemMetrics> for Router {
    type Result = Option<SystemMetrics>;

    fn handle(
        &mut self,
        GetSystemMetrics(id): GetSystemMetrics,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.instance(&id).map(|i| i.stats.snapshot())
    }
}

/// Forces a system's breaker open, or resets it.
#[derive(Debug, Message)]
#[rtype(result = "Result<BreakerState, Error>")]
pub struct OverrideBreaker {
    pub system_id: String,
    pub order: Override,
}

impl Handler<OverrideBreaker> for Router {
    type Result = ResponseFuture<Result<BreakerState, Error>>;

    fn handle(&mut self, request: OverrideBreaker, _: &mut Context<Self>) -> Self::Result {
        let instance = self.instance(&request.system_id);
        Box::pin(async move {
            let instance = instance.ok_or(aimbus_core::Error::UnknownSystem(request.system_id))?;
            instance
                .breaker
                .override_state(request.order)
                .await
                .map_err(Error::stopped("breaker"))
        })
    }
}

/// Breaker transitions from now on.
#[derive(Debug, Message)]
#[rtype(result = "broadcast::Receiver<BreakerEvent>")]
pub struct SubscribeBreakers;

impl Handler<SubscribeBreakers> for Router {
    type Result = MessageResult<SubscribeBreakers>;

    fn handle(&mut self, _: SubscribeBreakers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.breaker_events.subscribe())
    }
}

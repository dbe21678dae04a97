//! Routing: the seed's `send_message`. A message is admitted (validate, rate limit,
//! cache, bulkhead), planned (resolve, availability, balance, breaker) and delivered
//! with its retries on the caller's task ([`dispatch`], [`delivery`]), reading state
//! the router actor publishes and alone changes ([`actor`]); each attempt goes through
//! the system's actor, which supervises the transport's work.

mod actor;
mod attempt;
mod balance;
mod bulkhead;
mod cache;
mod delivery;
mod dispatch;
mod fallback;
mod health;
mod outcome;
mod rate_limit;
mod retry;
mod shared_cache;
mod view;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use aimbus_core::{Config, IntegrationMessage};
use tokio::sync::broadcast;

pub use actor::{FlushMetrics, GetSystemMetrics, OverrideBreaker, Router, SubscribeBreakers};
pub use attempt::{Instance, Refusal};
pub use balance::{Balancer, Choice, weight_of};
pub use cache::{CachedReply, ResponseCache};
pub use fallback::{Fallback, FallbackActor, fallback_candidates};
pub use health::{CheckAll, CheckNow, HealthMonitor, HealthThresholds, SystemError, classify};
pub use outcome::route_trace;
pub use rate_limit::RateLimiter;
pub use retry::{JITTER, RetryBudget, RetryPolicy};
pub use shared_cache::SharedCache;
pub use view::RoutingView;

#[cfg(test)]
mod tests;

use crate::breaker::BreakerPolicy;
use crate::transport::{DeliveryMode, Reply};
use crate::{Error, RegistryHandle};
use attempt::Instances;
use dispatch::Dispatch;

/// A routed message's answer and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub reply: Reply,
    /// The system that answered (shared with its instance: no copy per message).
    pub served_by: Arc<str>,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Whether a stand-in answered because the chosen system's breaker was open.
    pub fallback: bool,
    /// Whether the answer came from the response cache.
    pub cached: bool,
}

/// How often per-system metrics are copied into the registry, where summaries read them.
const METRICS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the retry budget remembers requests and retries.
const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// The routing side of a bus: what callers route with, the router actor that keeps it
/// current, and the health monitor, all fed by one registry.
#[derive(Clone)]
pub struct RouterHandle {
    dispatch: Arc<Dispatch>,
    router: Addr<Router>,
    health: Addr<HealthMonitor>,
}

impl RouterHandle {
    /// Starts the router, fallback and health monitor actors on the current arbiter.
    pub async fn start(
        config: Arc<Config>,
        registry: RegistryHandle,
    ) -> Result<RouterHandle, Error> {
        let subscription = registry.subscribe().await?;
        let view = Arc::new(RwLock::new(RoutingView::default()));
        let instances: Instances = Arc::default();
        let directory = registry.directory().clone();
        let fallback = FallbackActor {
            view: Arc::clone(&view),
            instances: Arc::clone(&instances),
            directory: directory.clone(),
            attempts: config.fallback().fallback_retry_attempts,
            breakers: config.circuit_breaker().enable_circuit_breaker,
            mailbox_capacity: config.supervision().mailbox_capacity,
        }
        .start();
        let dispatch = Arc::new(Dispatch::new(
            Arc::clone(&config),
            Arc::clone(&view),
            instances,
            directory.clone(),
            fallback,
        )?);
        let router = Router {
            dispatch: Arc::clone(&dispatch),
            registry: registry.clone(),
            breaker_policy: BreakerPolicy::from(config.circuit_breaker()),
            breaker_events: broadcast::channel(config.supervision().event_buffer).0,
            pending: Some(subscription.events),
        };
        // Published before the first message can be routed, from the same snapshot
        // whose events the actor applies from here on.
        router.publish(subscription.snapshot);
        let router = router.start();
        let health = HealthMonitor::new(&config, view, directory, registry).start();
        Ok(RouterHandle {
            dispatch,
            router,
            health,
        })
    }

    /// Routes a message and brings back its reply.
    pub async fn route(&self, message: IntegrationMessage) -> Result<Routed, Error> {
        self.send(message, DeliveryMode::Request).await
    }

    /// Routes a message and returns once its system's transport durably has it.
    pub async fn forward(&self, message: IntegrationMessage) -> Result<Routed, Error> {
        self.send(message, DeliveryMode::Forward).await
    }

    /// Routes on the caller's task: no mailbox round trip, and the work spreads over
    /// the callers' threads instead of queueing behind one actor.
    async fn send(&self, message: IntegrationMessage, mode: DeliveryMode) -> Result<Routed, Error> {
        let trace = route_trace(&message, mode);
        let result = self.dispatch.route(message, mode, &trace).await;
        outcome::record_outcome(&trace, &result);
        result
    }

    pub fn router(&self) -> &Addr<Router> {
        &self.router
    }

    pub fn health(&self) -> &Addr<HealthMonitor> {
        &self.health
    }
}

//! The router actor: the seed's `send_message` as a pipeline of cheap checks in the
//! actor (validate, rate limit, cache, bulkhead, resolve, availability, balance, breaker)
//! and a future beside it that delivers, times out, retries and records.

mod attempt;
mod balance;
mod cache;
mod fallback;
mod health;
mod rate_limit;
mod retry;
mod shared_cache;
mod view;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use aimbus_core::{Config, IntegrationMessage, PerformanceMetrics, RegistryEvent};
use chrono::Utc;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Semaphore, broadcast};
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

pub use attempt::{Instance, Refusal};
pub use balance::{Balancer, Choice, weight_of};
pub use cache::{CachedReply, ResponseCache};
pub use fallback::{Fallback, FallbackActor, fallback_candidates};
pub use health::{CheckAll, CheckNow, HealthMonitor, HealthThresholds, SystemError, classify};
pub use rate_limit::RateLimiter;
pub use retry::{JITTER, RetryBudget, RetryPolicy};
pub use shared_cache::SharedCache;
pub use view::RoutingView;

#[cfg(test)]
mod tests;

use crate::breaker::{BreakerEvent, BreakerHandle, BreakerPolicy, BreakerState, Override};
use crate::registry_actor::{SetPerformanceMetrics, Subscription};
use crate::stats::SystemMetrics;
use crate::system_actor::SystemDirectory;
use crate::transport::{DeliveryMode, Reply};
use crate::{Error, RegistryHandle, metrics};
use attempt::{Attempt, Instances};

/// A routed message's answer and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub reply: Reply,
    /// The system that answered.
    pub served_by: String,
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

pub struct Router {
    config: Arc<Config>,
    view: Arc<RwLock<RoutingView>>,
    instances: Instances,
    directory: SystemDirectory,
    registry: RegistryHandle,
    fallback: Addr<FallbackActor>,
    balancer: Balancer,
    limiter: RateLimiter,
    budget: RetryBudget,
    cache: Option<ResponseCache>,
    bulkhead: Arc<Semaphore>,
    breaker_policy: BreakerPolicy,
    breaker_events: broadcast::Sender<BreakerEvent>,
    rng: StdRng,
    pending: Option<broadcast::Receiver<RegistryEvent>>,
    shared: Option<Arc<Shared>>,
}

/// What the next attempt will do.
enum Step {
    Deliver(Attempt),
    Fallback {
        failed: String,
        retry_after: Option<Duration>,
    },
}

impl Router {
    fn new_instance(&self, system_id: &str) -> Arc<Instance> {
        let breaker = BreakerHandle::start(
            system_id,
            self.breaker_policy,
            self.breaker_events.clone(),
            self.config.supervision().mailbox_capacity,
        );
        Arc::new(Instance::new(
            system_id,
            breaker,
            self.config.core().max_concurrent_requests_per_system as usize,
        ))
    }

    fn rebuild(&mut self, subscription: Subscription, ctx: &mut Context<Self>) {
        let view = RoutingView::from_snapshot(subscription.snapshot);
        let instances: crate::FastMap<Arc<Instance>> = view
            .systems()
            .map(|s| (s.system_id.clone(), self.new_instance(&s.system_id)))
            .collect();
        *self.view.write().expect("view lock") = view;
        *self.instances.write().expect("instances lock") = instances;
        ctx.add_stream(BroadcastStream::new(subscription.events));
    }

    fn apply(&mut self, event: RegistryEvent) {
        self.view.write().expect("view lock").apply(&event);
        match &event {
            RegistryEvent::SystemRegistered { system }
            | RegistryEvent::SystemUpdated { system, .. } => {
                let instance = self.new_instance(&system.system_id);
                self.instances
                    .write()
                    .expect("instances lock")
                    .insert(system.system_id.clone(), instance);
            }
            RegistryEvent::SystemUnregistered { system_id } => {
                self.instances
                    .write()
                    .expect("instances lock")
                    .remove(system_id);
                self.balancer.forget(system_id);
            }
            RegistryEvent::StatusUpdate { .. } => {}
        }
    }

    /// Chooses where the next attempt goes: resolve, keep those that take traffic,
    /// balance, then the first with bulkhead room; an open breaker there means fallback.
    fn plan(&mut self, message: &IntegrationMessage) -> Result<Step, Error> {
        let target = &message.target_system;
        let view = self.view.read().expect("view lock");
        let instances = self.instances.read().expect("instances lock");
        // With health-aware balancing off, health checks no longer take an instance out
        // of the rotation (its breaker still does); a failed one has no actor to go to.
        let health_aware = self.config.load_balancing().health_check_enabled;
        let available: Vec<Choice<&Arc<Instance>>> = view
            .resolve(target)
            .filter(|s| {
                s.status.takes_traffic()
                    || (!health_aware && s.status != aimbus_core::IntegrationStatus::Failed)
            })
            .filter_map(|s| {
                let instance = instances.get(&s.system_id)?;
                Some(Choice {
                    system: s,
                    in_flight: instance.in_flight(),
                    item: instance,
                })
            })
            .collect();
        if available.is_empty() {
            let statuses: Vec<String> = view
                .resolve(target)
                .map(|s| format!("{} is {}", s.system_id, s.status))
                .collect();
            if statuses.is_empty() {
                return Err(Error::UnknownTarget(target.clone()));
            }
            return Err(Error::Unavailable {
                target: target.clone(),
                reason: format!("no instance takes traffic ({})", statuses.join(", ")),
                retry_after: None,
            });
        }
        let ranked = if self.config.load_balancing().enable_load_balancing {
            self.balancer.rank(target, available, &mut self.rng)
        } else {
            available
        };
        let breakers = self.config.circuit_breaker().enable_circuit_breaker;
        for choice in ranked {
            match Attempt::acquire(choice.item, breakers) {
                Ok(attempt) => return Ok(Step::Deliver(attempt)),
                Err(Refusal::Busy) => continue,
                Err(Refusal::Open(retry_after)) if self.config.fallback().enable_fallback => {
                    return Ok(Step::Fallback {
                        failed: choice.system.system_id.clone(),
                        retry_after,
                    });
                }
                Err(Refusal::Open(retry_after)) => {
                    return Err(Error::Unavailable {
                        target: target.clone(),
                        reason: format!("circuit breaker of `{}` is open", choice.system.system_id),
                        retry_after,
                    });
                }
            }
        }
        Err(Error::Overloaded {
            scope: target.clone(),
        })
    }

    fn shared(&mut self, ctx: &Context<Self>) -> Arc<Shared> {
        let config = &self.config;
        let shared = self.shared.get_or_insert_with(|| {
            Arc::new(Shared {
                router: ctx.address().downgrade(),
                fallback: self.fallback.clone(),
                directory: self.directory.clone(),
                cache: self.cache.clone(),
                request_timeout: Duration::from_secs(config.core().request_timeout_seconds),
                fallback_timeout: Duration::from_secs(config.fallback().fallback_timeout_seconds),
            })
        });
        Arc::clone(shared)
    }

    fn flush_metrics(&self) {
        let metrics: Vec<(String, PerformanceMetrics)> = self
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
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.config.supervision().mailbox_capacity);
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

/// Route one message to a system: as a request (its reply comes back) or forwarded
/// (handed durably to the system's transport, nobody waits for an answer).
#[derive(Debug, Message)]
#[rtype(result = "Result<Routed, Error>")]
pub struct Route {
    pub message: IntegrationMessage,
    pub mode: DeliveryMode,
    /// Where routing is traced: made by the sender, so it is a child of the sender's span
    /// (the actor's own task has none).
    pub span: tracing::Span,
}

/// The span of routing one message; its outcome is recorded when routing ends.
pub fn route_span(message: &IntegrationMessage, mode: DeliveryMode) -> tracing::Span {
    tracing::debug_span!(
        "route",
        otel.name = %format_args!("route {}", message.message_type),
        otel.status_code = tracing::field::Empty,
        // As `&str`, not `%`: a Display field is formatted into a new string per span.
        aimbus.message_id = message.message_id.as_str(),
        aimbus.message_type = message.message_type.as_str(),
        aimbus.source_system = message.source_system.as_str(),
        aimbus.target_system = message.target_system.as_str(),
        aimbus.delivery_mode = mode.as_str(),
        // `delivered`, `fallback` (a stand-in answered), `cached`, or why it failed.
        aimbus.outcome = tracing::field::Empty,
        aimbus.served_by = tracing::field::Empty,
        aimbus.attempts = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

#[derive(Message)]
#[rtype(result = "Result<Step, Error>")]
struct Replan(Arc<IntegrationMessage>);

#[derive(Message)]
#[rtype(result = "bool")]
struct GrantRetry;

/// Counts a routed message by its outcome and writes the outcome on the route's span.
/// Each arm names its label literally, so the metric key is built once, not per message.
fn record_outcome(span: &tracing::Span, result: &Result<Routed, Error>) {
    use ::metrics::counter;
    use metrics::MESSAGES_ROUTED as ROUTED;
    let (counter, outcome) = match result {
        Ok(r) if r.cached => (counter!(ROUTED, "outcome" => "cached"), "cached"),
        Ok(r) if r.fallback => (counter!(ROUTED, "outcome" => "fallback"), "fallback"),
        Ok(_) => (counter!(ROUTED, "outcome" => "delivered"), "delivered"),
        Err(Error::RateLimited { .. }) => (
            counter!(ROUTED, "outcome" => "rate_limited"),
            "rate_limited",
        ),
        Err(Error::UnknownTarget(_)) => (
            counter!(ROUTED, "outcome" => "unknown_target"),
            "unknown_target",
        ),
        Err(Error::Unavailable { .. }) => {
            (counter!(ROUTED, "outcome" => "unavailable"), "unavailable")
        }
        Err(Error::Overloaded { .. }) => {
            (counter!(ROUTED, "outcome" => "overloaded"), "overloaded")
        }
        Err(Error::Timeout { .. }) => (counter!(ROUTED, "outcome" => "timeout"), "timeout"),
        Err(Error::Expired { .. }) => (counter!(ROUTED, "outcome" => "expired"), "expired"),
        Err(Error::Registry(_)) => (counter!(ROUTED, "outcome" => "invalid"), "invalid"),
        Err(_) => (counter!(ROUTED, "outcome" => "failed"), "failed"),
    };
    counter.increment(1);
    if span.is_disabled() {
        return;
    }
    span.record("aimbus.outcome", outcome);
    match result {
        Ok(routed) => {
            span.record("aimbus.served_by", routed.served_by.as_str());
            // As i64, as the attempt span's number is (see there).
            span.record("aimbus.attempts", i64::from(routed.attempts));
        }
        Err(_) => {
            span.record("otel.status_code", "error");
            span.record("error.type", outcome);
        }
    }
}

impl Handler<Route> for Router {
    type Result = ResponseFuture<Result<Routed, Error>>;

    fn handle(&mut self, route: Route, ctx: &mut Context<Self>) -> Self::Result {
        let Route {
            message,
            mode,
            span,
        } = route;
        let admitted = self.admit(&message, mode);
        let (slot, cache_key) = match admitted {
            Ok(Admitted::Go { slot, cache_key }) => (slot, cache_key),
            Ok(Admitted::Cached(routed)) => return answered(&span, Ok(routed)),
            Err(error) => return answered(&span, Err(error)),
        };
        let admitted = Deliver {
            message,
            mode,
            span,
            slot,
            cache_key,
        };
        let shared = cache_key.and_then(|key| {
            let local = self.cache.as_ref()?;
            Some((key, local.clone(), local.shared()?.clone()))
        });
        let Some((key, local, shared)) = shared else {
            return self.deliver(admitted, ctx);
        };
        // A miss here may be a hit on another node: ask the shared tier off the actor, and
        // come back to be delivered only on a miss there too.
        let router = ctx.address();
        Box::pin(async move {
            if let Some(hit) = shared.get(&key).await {
                let hit = Arc::new(hit);
                local.insert_local(key, Arc::clone(&hit));
                let routed = Routed {
                    reply: hit.reply.clone(),
                    served_by: hit.served_by.clone(),
                    attempts: 0,
                    fallback: false,
                    cached: true,
                };
                let result = Ok(routed);
                record_outcome(&admitted.span, &result);
                return result;
            }
            router
                .send(admitted)
                .await
                .map_err(Error::stopped("router"))?
        })
    }
}

/// A message admitted to delivery: it holds its bus slot.
#[derive(Message)]
#[rtype(result = "Result<Routed, Error>")]
struct Deliver {
    message: IntegrationMessage,
    mode: DeliveryMode,
    span: tracing::Span,
    slot: tokio::sync::OwnedSemaphorePermit,
    cache_key: Option<cache::CacheKey>,
}

impl Handler<Deliver> for Router {
    type Result = ResponseFuture<Result<Routed, Error>>;

    fn handle(&mut self, admitted: Deliver, ctx: &mut Context<Self>) -> Self::Result {
        self.deliver(admitted, ctx)
    }
}

impl Router {
    fn deliver(
        &mut self,
        admitted: Deliver,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Routed, Error>> {
        let Deliver {
            message,
            mode,
            span,
            slot,
            cache_key,
        } = admitted;
        let policy = RetryPolicy::for_message_type(&message.message_type, self.config.core());
        let attempts = policy.attempts_for(message.max_retries, message.retry_count);
        let first = self.plan(&message);
        let delivery = Delivery {
            message: Arc::new(message),
            shared: self.shared(ctx),
            policy,
            attempts,
            mode,
            cache_key,
            span,
            _slot: slot,
        };
        // The async fn's future is boxed as it is: no wrapper block holding a second copy.
        Box::pin(delivery.run(first))
    }
}

/// A message answered without delivery (from the cache, or refused), counted like any.
fn answered(
    span: &tracing::Span,
    result: Result<Routed, Error>,
) -> ResponseFuture<Result<Routed, Error>> {
    record_outcome(span, &result);
    Box::pin(std::future::ready(result))
}

enum Admitted {
    Cached(Routed),
    Go {
        slot: tokio::sync::OwnedSemaphorePermit,
        cache_key: Option<cache::CacheKey>,
    },
}

impl Router {
    /// The checks before any delivery: valid, not expired, within its source's rate,
    /// not already answered by the cache, and room on the bus.
    fn admit(
        &mut self,
        message: &IntegrationMessage,
        mode: DeliveryMode,
    ) -> Result<Admitted, Error> {
        message.validate()?;
        if message.ttl_ms.is_some() && message.is_expired_at(Utc::now()) {
            return Err(Error::Expired {
                message_id: message.message_id.clone(),
            });
        }
        let now = Instant::now();
        if self.config.rate_limiting().enable_rate_limiting {
            self.limiter
                .acquire(&message.source_system, now)
                .map_err(|retry_after| Error::RateLimited {
                    source_system: message.source_system.clone(),
                    retry_after,
                    pace: self.limiter.pace(),
                })?;
        }
        // Only requests have replies to cache.
        let cache_key = match mode {
            DeliveryMode::Request => self.cache.as_ref().and_then(|c| c.key(message)),
            DeliveryMode::Forward => None,
        };
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key) {
            if let Some(hit) = cache.get(key) {
                return Ok(Admitted::Cached(Routed {
                    reply: hit.reply.clone(),
                    served_by: hit.served_by.clone(),
                    attempts: 0,
                    fallback: false,
                    cached: true,
                }));
            }
        }
        let slot = Arc::clone(&self.bulkhead)
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                scope: "bus".into(),
            })?;
        self.budget.record_request(now);
        Ok(Admitted::Go { slot, cache_key })
    }
}

/// What every delivery future needs from the router, made once and shared.
struct Shared {
    /// Weak, so the router holding this does not keep itself alive.
    router: actix::WeakAddr<Router>,
    fallback: Addr<FallbackActor>,
    directory: SystemDirectory,
    cache: Option<ResponseCache>,
    request_timeout: Duration,
    fallback_timeout: Duration,
}

/// Runs attempts until one succeeds, the error is not worth retrying, the attempts or
/// the retry budget run out, or the message's deadline would pass during the wait.
/// One message's delivery: everything its attempts need, and the bus slot it holds
/// until it is done.
struct Delivery {
    message: Arc<IntegrationMessage>,
    shared: Arc<Shared>,
    policy: RetryPolicy,
    attempts: u32,
    mode: DeliveryMode,
    cache_key: Option<cache::CacheKey>,
    /// The route's span, the explicit parent of each attempt's: never entered, as
    /// entering it on every poll of this future would cost more than the spans.
    span: tracing::Span,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Delivery {
    async fn run(self, first: Result<Step, Error>) -> Result<Routed, Error> {
        let result = self.with_retries(first).await;
        if let (Ok(routed), Some(cache), Some(key)) = (&result, &self.shared.cache, self.cache_key)
        {
            cache.insert(
                key,
                CachedReply {
                    reply: routed.reply.clone(),
                    served_by: routed.served_by.clone(),
                },
            );
        }
        record_outcome(&self.span, &result);
        result
    }

    /// Runs attempts until one succeeds, the error is not worth retrying, the attempts
    /// or the retry budget run out, or the message's deadline would pass during the wait.
    async fn with_retries(&self, first: Result<Step, Error>) -> Result<Routed, Error> {
        let mut message = Arc::clone(&self.message);
        let deadline = message.deadline();
        let mut step = first;
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.map(|d| (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            if remaining == Some(Duration::ZERO) {
                return Err(Error::Expired {
                    message_id: message.message_id.clone(),
                });
            }
            // Boxed: an attempt's future (with its timer) is large, and keeping it out of
            // line keeps this one, which is copied into its box, small.
            let one = Box::pin(self.attempt(step, Arc::clone(&message), remaining, attempt + 1));
            let error = match one.await {
                Ok(routed) => {
                    return Ok(Routed {
                        attempts: attempt + 1,
                        ..routed
                    });
                }
                Err(error) if error.is_retryable() && attempt + 1 < self.attempts => error,
                Err(error) => return Err(error),
            };
            let wait = self.policy.jittered_delay(attempt, &mut rand::rng());
            if remaining.is_some_and(|r| wait >= r) {
                return Err(error);
            }
            let Some(router) = self.shared.router.upgrade() else {
                return Err(error);
            };
            if !error.is_interruption() {
                let granted = Box::pin(router.send(GrantRetry));
                if !granted.await.unwrap_or(false) {
                    ::metrics::counter!(metrics::RETRIES_REFUSED).increment(1);
                    return Err(error);
                }
            }
            ::metrics::counter!(metrics::RETRIES).increment(1);
            tracing::debug!(parent: &self.span, message_id = %message.message_id, attempt, %error, wait_ms = wait.as_millis() as u64, "retrying");
            let pause = Box::pin(tokio::time::sleep(wait));
            pause.await;
            attempt += 1;
            Arc::make_mut(&mut message).retry_count += 1;
            let replanned = Box::pin(router.send(Replan(Arc::clone(&message))));
            step = replanned
                .await
                .map_err(Error::stopped("router"))
                .and_then(|s| s);
        }
    }

    /// One attempt: at the planned system, or at a stand-in through the fallback actor.
    async fn attempt(
        &self,
        step: Result<Step, Error>,
        message: Arc<IntegrationMessage>,
        remaining: Option<Duration>,
        number: u32,
    ) -> Result<Routed, Error> {
        let within = |timeout: Duration| remaining.map_or(timeout, |r| r.min(timeout));
        match step? {
            Step::Deliver(next) => {
                let served_by = next.system_id().to_owned();
                let timeout = within(self.shared.request_timeout);
                let reply = next
                    .run(
                        &self.shared.directory,
                        message,
                        timeout,
                        self.mode,
                        (number, &self.span),
                    )
                    .await?;
                Ok(Routed {
                    reply,
                    served_by,
                    attempts: 0,
                    fallback: false,
                    cached: false,
                })
            }
            Step::Fallback {
                failed,
                retry_after,
            } => {
                let request = Fallback {
                    message,
                    failed,
                    retry_after,
                    timeout: within(self.shared.fallback_timeout),
                    mode: self.mode,
                    span: self.span.clone(),
                };
                self.shared
                    .fallback
                    .send(request)
                    .await
                    .map_err(Error::stopped("fallback"))?
            }
        }
    }
}

impl Handler<Replan> for Router {
    type Result = MessageResult<Replan>;

    fn handle(&mut self, Replan(message): Replan, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.plan(&message))
    }
}

impl Handler<GrantRetry> for Router {
    type Result = bool;

    fn handle(&mut self, _: GrantRetry, _: &mut Context<Self>) -> bool {
        self.budget.try_retry(Instant::now())
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
        let instances = self.instances.read().expect("instances lock");
        instances.get(&id).map(|i| i.stats.snapshot())
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
        let instance = self
            .instances
            .read()
            .expect("instances lock")
            .get(&request.system_id)
            .cloned();
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

/// The routing side of a bus: the router, its fallback actor and the health monitor,
/// all fed by one registry.
#[derive(Clone)]
pub struct RouterHandle {
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
        let caching = config.caching();
        let limits = config.rate_limiting();
        let core = config.core();
        let mut router = Router {
            view: Arc::clone(&view),
            instances: Arc::clone(&instances),
            directory: directory.clone(),
            registry: registry.clone(),
            fallback,
            balancer: Balancer::new(config.load_balancing().load_balancing_algorithm),
            limiter: RateLimiter::new(
                limits.rate_limit_requests_per_minute,
                limits.rate_limit_burst_size,
            ),
            budget: RetryBudget::new(
                core.retry_budget_ratio,
                core.retry_budget_min_retries_per_second,
                RETRY_BUDGET_WINDOW,
            ),
            cache: caching
                .enable_response_caching
                .then(|| ResponseCache::for_config(&config))
                .transpose()
                .map_err(Error::SharedCache)?,
            bulkhead: Arc::new(Semaphore::new(core.max_concurrent_requests as usize)),
            breaker_policy: BreakerPolicy::from(config.circuit_breaker()),
            breaker_events: broadcast::channel(config.supervision().event_buffer).0,
            rng: StdRng::from_os_rng(),
            pending: None,
            shared: None,
            config: Arc::clone(&config),
        };
        let snapshot = RoutingView::from_snapshot(subscription.snapshot);
        let seeded: crate::FastMap<Arc<Instance>> = snapshot
            .systems()
            .map(|s| (s.system_id.clone(), router.new_instance(&s.system_id)))
            .collect();
        *view.write().expect("view lock") = snapshot;
        *instances.write().expect("instances lock") = seeded;
        router.pending = Some(subscription.events);
        let router = router.start();
        let health = HealthMonitor::new(&config, view, directory, registry).start();
        Ok(RouterHandle { router, health })
    }

    /// Routes a message and brings back its reply.
    pub async fn route(&self, message: IntegrationMessage) -> Result<Routed, Error> {
        self.send(message, DeliveryMode::Request).await
    }

    /// Routes a message and returns once its system's transport durably has it.
    pub async fn forward(&self, message: IntegrationMessage) -> Result<Routed, Error> {
        self.send(message, DeliveryMode::Forward).await
    }

    async fn send(&self, message: IntegrationMessage, mode: DeliveryMode) -> Result<Routed, Error> {
        let span = route_span(&message, mode);
        self.router
            .send(Route {
                message,
                mode,
                span,
            })
            .await
            .map_err(Error::stopped("router"))?
    }

    pub fn router(&self) -> &Addr<Router> {
        &self.router
    }

    pub fn health(&self) -> &Addr<HealthMonitor> {
        &self.health
    }
}

//! Routing on the caller's task: admission (the cheap checks before any delivery) and
//! planning (where each attempt goes), read from the state the router actor publishes.
//! No mailbox round trip per message; the router actor still makes every change to
//! that state (see `actor.rs`).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::Addr;
use aimbus_core::{Config, IntegrationMessage, IntegrationStatus, SystemInfo};
use chrono::Utc;
use tokio::time::Instant;

use super::attempt::{Attempt, Instance, Instances, Refusal};
use super::balance::{Balancer, Choice};
use super::bulkhead::{Bulkhead, Slot};
use super::cache::{CacheKey, CachedReply, ResponseCache};
use super::delivery::{Delivery, Step};
use super::fallback::FallbackActor;
use super::rate_limit::RateLimiter;
use super::retry::{RetryBudget, RetryPolicy};
use super::view::RoutingView;
use super::{RETRY_BUDGET_WINDOW, Routed};
use crate::Error;
use crate::system_actor::SystemDirectory;
use crate::transport::DeliveryMode;

/// What every caller routes with. The view and the instances are written by the router
/// actor only; the limiter, the retry budget and the balancer's cursors are counters,
/// each behind a lock held for a few instructions and never across an await.
pub(super) struct Dispatch {
    pub(super) config: Arc<Config>,
    pub(super) view: Arc<RwLock<RoutingView>>,
    pub(super) instances: Instances,
    pub(super) directory: SystemDirectory,
    pub(super) fallback: Addr<FallbackActor>,
    pub(super) balancer: Mutex<Balancer>,
    limiter: Mutex<RateLimiter>,
    budget: Mutex<RetryBudget>,
    pub(super) cache: Option<ResponseCache>,
    bulkhead: Arc<Bulkhead>,
    pub(super) request_timeout: Duration,
    pub(super) fallback_timeout: Duration,
}

/// A message past admission: answered from the cache, or holding its bus slot.
enum Admitted {
    Cached(Routed),
    Go {
        slot: Slot,
        cache_key: Option<CacheKey>,
    },
}

impl Routed {
    fn from_cache(hit: &CachedReply) -> Routed {
        Routed {
            reply: hit.reply.clone(),
            served_by: hit.served_by.clone(),
            attempts: 0,
            fallback: false,
            cached: true,
        }
    }
}

impl Dispatch {
    pub(super) fn new(
        config: Arc<Config>,
        view: Arc<RwLock<RoutingView>>,
        instances: Instances,
        directory: SystemDirectory,
        fallback: Addr<FallbackActor>,
    ) -> Result<Dispatch, Error> {
        let limits = config.rate_limiting();
        let core = config.core();
        Ok(Dispatch {
            balancer: Mutex::new(Balancer::new(
                config.load_balancing().load_balancing_algorithm,
            )),
            limiter: Mutex::new(RateLimiter::new(
                limits.rate_limit_requests_per_minute,
                limits.rate_limit_burst_size,
            )),
            budget: Mutex::new(RetryBudget::new(
                core.retry_budget_ratio,
                core.retry_budget_min_retries_per_second,
                RETRY_BUDGET_WINDOW,
            )),
            cache: config
                .caching()
                .enable_response_caching
                .then(|| ResponseCache::for_config(&config))
                .transpose()
                .map_err(Error::SharedCache)?,
            bulkhead: Bulkhead::new(core.max_concurrent_requests as usize),
            request_timeout: Duration::from_secs(core.request_timeout_seconds),
            fallback_timeout: Duration::from_secs(config.fallback().fallback_timeout_seconds),
            view,
            instances,
            directory,
            fallback,
            config,
        })
    }

    /// Routes one message to its answer: admission, the shared cache tier on a local
    /// miss, then delivery with its retries.
    pub(super) async fn route(
        &self,
        message: IntegrationMessage,
        mode: DeliveryMode,
        trace: &aimbus_telemetry::Trace,
    ) -> Result<Routed, Error> {
        let (slot, cache_key) = match self.admit(&message, mode)? {
            Admitted::Cached(routed) => return Ok(routed),
            Admitted::Go { slot, cache_key } => (slot, cache_key),
        };
        // A miss here may be a hit on another node.
        let shared = self.cache.as_ref().and_then(|c| Some((c, c.shared()?)));
        if let (Some(key), Some((local, shared))) = (cache_key, shared) {
            if let Some(hit) = shared.get(&key).await {
                let hit = Arc::new(hit);
                local.insert_local(key, Arc::clone(&hit));
                return Ok(Routed::from_cache(&hit));
            }
        }
        let policy = RetryPolicy::for_message_type(&message.message_type, self.config.core());
        let attempts = policy.attempts_for(message.max_retries, message.retry_count);
        let first = self.plan(&message);
        let delivery = Delivery {
            message: Arc::new(message),
            dispatch: self,
            policy,
            attempts,
            mode,
            cache_key,
            trace,
            _slot: slot,
        };
        delivery.run(first).await
    }

    /// The checks before any delivery: valid, not expired, within its source's rate,
    /// not already answered by the cache, and room on the bus.
    fn admit(&self, message: &IntegrationMessage, mode: DeliveryMode) -> Result<Admitted, Error> {
        message.validate()?;
        if message.ttl_ms.is_some() && message.is_expired_at(Utc::now()) {
            return Err(Error::Expired {
                message_id: message.message_id.clone(),
            });
        }
        let now = Instant::now();
        if self.config.rate_limiting().enable_rate_limiting {
            let mut limiter = self.limiter.lock().expect("rate limiter lock");
            limiter
                .acquire(&message.source_system, now)
                .map_err(|retry_after| Error::RateLimited {
                    source_system: message.source_system.clone(),
                    retry_after,
                    pace: limiter.pace(),
                })?;
        }
        // Only requests have replies to cache.
        let cache_key = match mode {
            DeliveryMode::Request => self.cache.as_ref().and_then(|c| c.key(message)),
            DeliveryMode::Forward => None,
        };
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key) {
            if let Some(hit) = cache.get(key) {
                return Ok(Admitted::Cached(Routed::from_cache(&hit)));
            }
        }
        let slot = self.bulkhead.try_enter().ok_or_else(|| Error::Overloaded {
            scope: "bus".into(),
        })?;
        self.budget
            .lock()
            .expect("retry budget lock")
            .record_request(now);
        Ok(Admitted::Go { slot, cache_key })
    }

    /// Takes one retry from the bus's retry budget, if it has one.
    pub(super) fn grant_retry(&self) -> bool {
        self.budget
            .lock()
            .expect("retry budget lock")
            .try_retry(Instant::now())
    }

    /// Chooses where the next attempt goes: resolve, keep those that take traffic,
    /// balance, then the first with bulkhead room; an open breaker there means fallback.
    pub(super) fn plan(&self, message: &IntegrationMessage) -> Result<Step, Error> {
        let target = &message.target_system;
        let view = self.view.read().expect("view lock");
        let instances = self.instances.read().expect("instances lock");
        // With health-aware balancing off, health checks no longer take an instance out
        // of the rotation (its breaker still does); a failed one has no actor to go to.
        let health_aware = self.config.load_balancing().health_check_enabled;
        let mut available = view
            .resolve(target)
            .filter(|s| {
                s.status.takes_traffic() || (!health_aware && s.status != IntegrationStatus::Failed)
            })
            .filter_map(|s| {
                let instance = instances.get(&s.system_id)?;
                Some(Choice {
                    system: s.as_ref(),
                    in_flight: instance.in_flight(),
                    item: instance,
                })
            });
        // One instance (a target named by id, the usual case) needs no list and no
        // balancing.
        let Some(first) = available.next() else {
            return Err(no_instance(&view, target));
        };
        let Some(second) = available.next() else {
            return self.acquire(target, std::iter::once(first));
        };
        let mut choices = vec![first, second];
        choices.extend(available);
        if self.config.load_balancing().enable_load_balancing {
            choices = self.balancer.lock().expect("balancer lock").rank(
                target,
                choices,
                &mut rand::rng(),
            );
        }
        self.acquire(target, choices)
    }

    /// The first of `ranked` with room takes the attempt; an open breaker there means
    /// fallback (or, with fallback off, that the target is unavailable).
    fn acquire<'a>(
        &self,
        target: &str,
        ranked: impl IntoIterator<Item = Choice<'a, &'a Arc<Instance>>>,
    ) -> Result<Step, Error> {
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
                        target: target.to_owned(),
                        reason: format!("circuit breaker of `{}` is open", choice.system.system_id),
                        retry_after,
                    });
                }
            }
        }
        Err(Error::Overloaded {
            scope: target.to_owned(),
        })
    }
}

/// Why nothing the target names takes traffic: unknown, or each instance's status.
fn no_instance(view: &RoutingView, target: &str) -> Error {
    let statuses: Vec<String> = view
        .resolve(target)
        .map(|s: &Arc<SystemInfo>| format!("{} is {}", s.system_id, s.status))
        .collect();
    if statuses.is_empty() {
        return Error::UnknownTarget(target.to_owned());
    }
    Error::Unavailable {
        target: target.to_owned(),
        reason: format!("no instance takes traffic ({})", statuses.join(", ")),
        retry_after: None,
    }
}

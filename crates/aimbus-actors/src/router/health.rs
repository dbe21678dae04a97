//! The health monitor: every `health_check_interval_seconds` it sends each system a
//! `health_check` message through the system's own actor and transport, times the answer,
//! and records the status it finds in the registry, whose event reaches routing at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use aimbus_core::{Config, HealthCheckResult, IntegrationMessage, IntegrationStatus, SystemInfo};
use tokio::time::Instant;

use super::view::RoutingView;
use crate::system_actor::{Deliver, SystemDirectory};
use crate::transport::{DeliveryFailure, DeliveryMode};
use crate::{Error, RegistryHandle, metrics};

/// What makes a check's answer healthy, degraded or unhealthy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthThresholds {
    /// Answers slower than this are degraded.
    pub degraded_after: Duration,
    /// Consecutive failed checks that make a system unhealthy; fewer make it degraded.
    pub unhealthy_after: u32,
}

/// How one check went, before it is judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Answered,
    /// No actor, or no transport reaches the system.
    Unreachable(String),
    Failed(String),
}

/// The status a check gives, from its probe, its response time and the failures before
/// it; returns the new count of consecutive failures.
pub fn classify(
    probe: &Probe,
    response_time: Duration,
    failures_before: u32,
    thresholds: HealthThresholds,
) -> (IntegrationStatus, u32) {
    match probe {
        Probe::Answered if response_time > thresholds.degraded_after => {
            (IntegrationStatus::Degraded, 0)
        }
        Probe::Answered => (IntegrationStatus::Healthy, 0),
        Probe::Unreachable(_) => (IntegrationStatus::Disconnected, failures_before + 1),
        Probe::Failed(_) => {
            let failures = failures_before + 1;
            if failures >= thresholds.unhealthy_after {
                (IntegrationStatus::Unhealthy, failures)
            } else {
                (IntegrationStatus::Degraded, failures)
            }
        }
    }
}

pub struct HealthMonitor {
    view: Arc<RwLock<RoutingView>>,
    directory: SystemDirectory,
    registry: RegistryHandle,
    interval: Duration,
    timeout: Duration,
    thresholds: HealthThresholds,
    restart_wait: Duration,
    failures: HashMap<String, u32>,
    running: HashSet<String>,
    mailbox_capacity: usize,
}

impl HealthMonitor {
    pub fn new(
        config: &Config,
        view: Arc<RwLock<RoutingView>>,
        directory: SystemDirectory,
        registry: RegistryHandle,
    ) -> HealthMonitor {
        let monitoring = config.monitoring();
        let supervision = config.supervision();
        HealthMonitor {
            view,
            directory,
            registry,
            interval: Duration::from_secs(monitoring.health_check_interval_seconds),
            timeout: Duration::from_secs(config.core().request_timeout_seconds),
            thresholds: HealthThresholds {
                degraded_after: Duration::from_millis(
                    monitoring.health_check_degraded_threshold_ms,
                ),
                unhealthy_after: monitoring.health_check_failures_before_unhealthy,
            },
            // A restarted actor is back within the longest backoff.
            restart_wait: Duration::from_millis(supervision.restart_max_backoff_ms)
                + Duration::from_secs(1),
            failures: HashMap::new(),
            running: HashSet::new(),
            mailbox_capacity: supervision.mailbox_capacity,
        }
    }

    /// Sends one `health_check` to a system and times it.
    fn probe(&self, system: &SystemInfo) -> impl Future<Output = (Probe, Duration)> + 'static {
        let addr = self.directory.get(&system.system_id);
        let timeout = self.timeout;
        let mut payload = serde_json::Map::new();
        payload.insert("check".into(), "health".into());
        let mut message = IntegrationMessage::new(
            "aimbus",
            system.system_id.clone(),
            aimbus_core::HEALTH_CHECK,
            payload,
        );
        // A check nobody answered in time is worthless: queues may drop it then.
        message.ttl_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        // Each check is a trace of its own, so a failing system's checks can be read.
        let trace = aimbus_telemetry::Trace::root(|| {
            tracing::debug_span!(
                parent: None,
                "health_check",
                otel.name = %format_args!("health_check {}", system.system_id),
                aimbus.system_id = %system.system_id,
            )
        });
        async move {
            let started = Instant::now();
            let probe = match addr {
                None => Probe::Unreachable("the system's actor is not running".into()),
                Some(addr) => {
                    let deadline = started + timeout;
                    let delivered = addr.send(Deliver {
                        message: Arc::new(message),
                        mode: DeliveryMode::Request,
                        trace,
                        deadline,
                    });
                    match tokio::time::timeout_at(deadline, delivered).await {
                        Err(_) => Probe::Failed(format!("no answer within {timeout:?}")),
                        Ok(Err(_)) => Probe::Unreachable("the system's actor stopped".into()),
                        Ok(Ok(Err(
                            DeliveryFailure::Unreachable(reason)
                            | DeliveryFailure::Interrupted(reason),
                        ))) => Probe::Unreachable(reason),
                        Ok(Ok(Err(failure))) => Probe::Failed(failure.to_string()),
                        Ok(Ok(Ok(_))) => Probe::Answered,
                    }
                }
            };
            (probe, started.elapsed())
        }
    }

    /// Judges a probe and records it in the registry; returns the result.
    fn record(
        &mut self,
        system: &SystemInfo,
        probe: Probe,
        elapsed: Duration,
        ctx: &mut Context<Self>,
    ) -> HealthCheckResult {
        let before = self.failures.get(&system.system_id).copied().unwrap_or(0);
        let (status, failures) = classify(&probe, elapsed, before, self.thresholds);
        self.failures.insert(system.system_id.clone(), failures);
        let mut result = HealthCheckResult::new(
            system.system_id.clone(),
            system.system_type.clone(),
            status,
            elapsed.as_secs_f64() * 1e3,
        );
        if let Probe::Unreachable(reason) | Probe::Failed(reason) = probe {
            result.error_message = Some(reason);
        }
        ::metrics::counter!(metrics::HEALTH_CHECKS, "system_id" => system.system_id.clone(), "status" => status.as_str()).increment(1);
        let registry = self.registry.clone();
        let applied = result.clone();
        ctx.spawn(
            async move {
                if let Err(error) = registry.apply_health_check(applied).await {
                    tracing::debug!(%error, "health check result not applied");
                }
            }
            .into_actor(self),
        );
        result
    }

    fn check_all(&mut self, ctx: &mut Context<Self>) {
        let due: Vec<Arc<SystemInfo>> = self
            .view
            .read()
            .expect("view lock")
            .systems()
            // A failed system's actor was given up on; only re-registering revives it.
            .filter(|s| s.status != IntegrationStatus::Failed)
            .filter(|s| !self.running.contains(&s.system_id))
            .cloned()
            .collect();
        for system in due {
            self.running.insert(system.system_id.clone());
            ctx.spawn(self.probe(&system).into_actor(self).map(
                move |(probe, elapsed), monitor, ctx| {
                    monitor.running.remove(&system.system_id);
                    monitor.record(&system, probe, elapsed, ctx);
                },
            ));
        }
    }
}

impl Actor for HealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        self.check_all(ctx);
        ctx.run_interval(self.interval, |monitor, ctx| monitor.check_all(ctx));
    }
}

/// Checks every system now (after the broker came back, say) instead of at the next tick.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CheckAll;

impl Handler<CheckAll> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, _: CheckAll, ctx: &mut Context<Self>) {
        self.check_all(ctx);
    }
}

/// Checks one system now, as the seed's `get_system_health` does, and records the result.
#[derive(Debug, Message)]
#[rtype(result = "Result<HealthCheckResult, Error>")]
pub struct CheckNow(pub String);

impl Handler<CheckNow> for HealthMonitor {
    type Result = ResponseActFuture<Self, Result<HealthCheckResult, Error>>;

    fn handle(&mut self, CheckNow(system_id): CheckNow, _: &mut Context<Self>) -> Self::Result {
        let system = self
            .view
            .read()
            .expect("view lock")
            .get(&system_id)
            .cloned();
        let Some(system) = system else {
            return Box::pin(actix::fut::ready(Err(aimbus_core::Error::UnknownSystem(
                system_id,
            )
            .into())));
        };
        Box::pin(
            self.probe(&system)
                .into_actor(self)
                .map(move |(probe, elapsed), monitor, ctx| {
                    Ok(monitor.record(&system, probe, elapsed, ctx))
                }),
        )
    }
}

/// The seed's `handle_system_error`: the system's actor is restarted (its status is
/// unhealthy meanwhile), then a health check verifies the recovery and sets the status.
#[derive(Debug, Message)]
#[rtype(result = "Result<HealthCheckResult, Error>")]
pub struct SystemError {
    pub system_id: String,
    pub error: String,
}

impl Handler<SystemError> for HealthMonitor {
    type Result = ResponseActFuture<Self, Result<HealthCheckResult, Error>>;

    fn handle(&mut self, request: SystemError, ctx: &mut Context<Self>) -> Self::Result {
        let registry = self.registry.clone();
        let monitor = ctx.address();
        let wait = self.restart_wait;
        let system_id = request.system_id.clone();
        let recovery = async move {
            let before = registry.child(&system_id).await?.map(|c| c.generation);
            registry.report_fault(&system_id, request.error).await?;
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                let now = registry.child(&system_id).await?;
                if now
                    .as_ref()
                    .is_some_and(|c| c.addr.is_some() && Some(c.generation) != before)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            monitor
                .send(CheckNow(system_id))
                .await
                .map_err(Error::stopped("health monitor"))?
        };
        Box::pin(recovery.into_actor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: HealthThresholds = HealthThresholds {
        degraded_after: Duration::from_millis(100),
        unhealthy_after: 3,
    };

    #[test]
    fn classification_table() {
        let fast = Duration::from_millis(5);
        let slow = Duration::from_millis(500);
        let failed = Probe::Failed("boom".into());
        let rows = [
            (Probe::Answered, fast, 2, IntegrationStatus::Healthy, 0),
            (Probe::Answered, slow, 0, IntegrationStatus::Degraded, 0),
            (failed.clone(), fast, 0, IntegrationStatus::Degraded, 1),
            (failed.clone(), fast, 1, IntegrationStatus::Degraded, 2),
            (failed, fast, 2, IntegrationStatus::Unhealthy, 3),
            (
                Probe::Unreachable("gone".into()),
                fast,
                0,
                IntegrationStatus::Disconnected,
                1,
            ),
        ];
        for (probe, elapsed, before, status, after) in rows {
            assert_eq!(
                classify(&probe, elapsed, before, THRESHOLDS),
                (status, after),
                "{probe:?} {elapsed:?} {before}"
            );
        }
    }
}

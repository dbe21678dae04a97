//! The routing pipeline end to end, on real actors with in-process systems.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aimbus_core::{Config, IntegrationMessage, IntegrationStatus, SystemInfo};
use serde_json::json;

use super::*;
use crate::RegistryHandle;
use crate::breaker::Override;
use crate::transport::{DeliveryFailure, DeliveryFuture, InProcessTransport, Reply, TransportSet};

struct Bus {
    registry: RegistryHandle,
    router: RouterHandle,
    systems: Arc<InProcessTransport>,
}

impl Bus {
    /// Routes a fresh message of `message_type` to `target`.
    async fn send(&self, target: &str, message_type: &str) -> Result<Routed, Error> {
        self.router.route(message(target, message_type)).await
    }

    /// Which system answered each of `count` messages to `target`, in order.
    async fn served_by(&self, target: &str, count: usize) -> Vec<String> {
        let mut served = Vec::new();
        for _ in 0..count {
            let routed = self.send(target, "status_update").await.unwrap();
            served.push(routed.served_by.to_string());
        }
        served
    }

    /// A system's metrics as the registry holds them.
    async fn registry_metrics(&self, system_id: &str) -> aimbus_core::PerformanceMetrics {
        let id = system_id.to_owned();
        self.registry
            .query(move |r| r.get(&id).unwrap().performance_metrics.clone())
            .await
            .unwrap()
    }
}

fn config(toml: &str) -> Arc<Config> {
    Arc::new(Config::from_toml_str("test.toml", toml, Vec::new(), ".".into()).unwrap())
}

fn system(id: &str, system_type: &str, caps: &[&str], deps: &[&str]) -> SystemInfo {
    serde_json::from_value(json!({
        "system_id": id, "system_type": system_type, "name": id, "version": "1.0.0",
        "capabilities": caps, "dependencies": deps,
        "interfaces": {"rest_api": "http://localhost:8000"},
    }))
    .unwrap()
}

/// Starts a registry and a router over `systems`, each served in process by `echo`
/// unless the test replaces its handler.
async fn bus(toml: &str, systems: Vec<SystemInfo>) -> Bus {
    let config = config(toml);
    let in_process = Arc::new(InProcessTransport::new());
    for s in &systems {
        in_process.register(&s.system_id, echo);
    }
    let registry = RegistryHandle::in_memory(&config, TransportSet::new(Arc::clone(&in_process)))
        .await
        .unwrap();
    for s in systems {
        registry.register(s).await.unwrap();
    }
    let router = RouterHandle::start(config, registry.clone()).await.unwrap();
    Bus {
        registry,
        router,
        systems: in_process,
    }
}

async fn echo(message: Arc<IntegrationMessage>) -> Result<Reply, DeliveryFailure> {
    let mut payload = message.payload.clone();
    payload.insert("served_type".into(), json!(message.message_type));
    Ok(Reply::new(payload))
}

fn message(target: &str, message_type: &str) -> IntegrationMessage {
    let payload = json!({"request": "test_data"}).as_object().unwrap().clone();
    IntegrationMessage::new("cmc_001", target, message_type, payload)
}

/// A handler that fails its first `failures` calls, counting every call.
fn flaky(
    failures: u32,
    calls: Arc<AtomicU32>,
) -> impl Fn(Arc<IntegrationMessage>) -> DeliveryFuture + Send + Sync + 'static {
    move |message| {
        // Health checks pass and are not counted: the tests count routed calls.
        let routed = message.message_type != "health_check";
        let n = if routed {
            calls.fetch_add(1, Ordering::SeqCst)
        } else {
            u32::MAX
        };
        Box::pin(async move {
            if routed && n < failures {
                Err(DeliveryFailure::Failed(format!("call {n} failed")))
            } else {
                echo(message).await
            }
        })
    }
}

async fn status(bus: &Bus, id: &str) -> IntegrationStatus {
    let id = id.to_owned();
    bus.registry
        .query(move |r| r.get(&id).unwrap().status)
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_message_to_an_id_reaches_that_system_and_its_reply_comes_back() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    let routed = bus.send("hhni_001", "status_update").await.unwrap();
    assert_eq!(&*routed.served_by, "hhni_001");
    assert_eq!(routed.reply.payload["request"], "test_data");
    assert_eq!(routed.reply.payload["served_type"], "status_update");
    assert_eq!(
        (routed.attempts, routed.fallback, routed.cached),
        (1, false, false)
    );
}

#[actix_rt::test]
async fn a_message_to_a_type_is_balanced_across_its_instances() {
    let bus = bus(
        "",
        vec![
            system("hhni_001", "hhni", &[], &[]),
            system("hhni_002", "hhni", &[], &[]),
        ],
    )
    .await;
    let served = bus.served_by("hhni", 4).await;
    assert_eq!(served, ["hhni_001", "hhni_002", "hhni_001", "hhni_002"]);
}

#[actix_rt::test]
async fn unknown_targets_and_invalid_messages_are_typed_errors() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    let err = bus.send("nothing_001", "status_update").await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownTarget(ref t) if t == "nothing_001"),
        "{err:?}"
    );
    let mut invalid = message("hhni_001", "status_update");
    invalid.payload.clear();
    let err = bus.router.route(invalid).await.unwrap_err();
    assert!(
        matches!(err.as_registry_error(), Some(aimbus_core::Error::Invalid { field, .. }) if field == "payload")
    );
    assert!(!err.is_retryable());
}

#[actix_rt::test]
async fn only_healthy_or_degraded_systems_take_traffic() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    bus.registry
        .set_status("hhni_001", IntegrationStatus::Degraded, "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    bus.send("hhni_001", "status_update").await.unwrap();
    bus.registry
        .set_status("hhni_001", IntegrationStatus::Unhealthy, "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = bus
        .send("hhni_001", "error_notification")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { reason, .. } if reason.contains("hhni_001 is unhealthy")),
        "{err:?}"
    );
}

/// `load_balancing.health_check_enabled` decides whether a failed health check takes an
/// instance out of the rotation.
#[actix_rt::test]
async fn health_aware_balancing_leaves_unhealthy_instances_out_unless_turned_off() {
    for (health_aware, expected) in [
        (true, ["hhni_002", "hhni_002", "hhni_002", "hhni_002"]),
        (false, ["hhni_001", "hhni_002", "hhni_001", "hhni_002"]),
    ] {
        let toml = format!("[load_balancing]\nhealth_check_enabled = {health_aware}\n");
        let systems = vec![
            system("hhni_001", "hhni", &[], &[]),
            system("hhni_002", "hhni", &[], &[]),
        ];
        let bus = bus(&toml, systems).await;
        // After the health monitor's first round, which would mark it healthy again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        bus.registry
            .set_status("hhni_001", IntegrationStatus::Unhealthy, "test")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let served = bus.served_by("hhni", 4).await;
        assert_eq!(served, expected, "health_check_enabled = {health_aware}");
    }
}

#[actix_rt::test]
async fn failures_are_retried_by_the_message_types_policy() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    // After the store's work: paused time would run its timeouts out at once.
    tokio::time::pause();
    let calls = Arc::new(AtomicU32::new(0));
    bus.systems
        .register("hhni_001", flaky(2, Arc::clone(&calls)));
    let started = tokio::time::Instant::now();
    // status_update: 2 attempts, so two failures exhaust it.
    let err = bus.send("hhni_001", "status_update").await.unwrap_err();
    assert!(matches!(err, Error::Delivery { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    calls.store(0, Ordering::SeqCst);
    // data_request: 5 attempts, waits 2 s then 3 s (±20%) before the third succeeds.
    let routed = bus.send("hhni_001", "data_request").await.unwrap();
    assert_eq!((routed.attempts, calls.load(Ordering::SeqCst)), (3, 3));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs_f64(0.8 * 1.0 + 0.8 * 5.0),
        "{waited:?}"
    );
}

#[actix_rt::test]
async fn a_rejected_message_is_not_retried() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    bus.systems
        .register("hhni_001", move |message: Arc<IntegrationMessage>| {
            let routed = message.message_type != "health_check";
            if routed {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if routed {
                    Err(DeliveryFailure::Rejected("bad payload".into()))
                } else {
                    echo(message).await
                }
            }
        });
    let err = bus.send("hhni_001", "data_request").await.unwrap_err();
    assert!(matches!(
        err,
        Error::Delivery {
            failure: DeliveryFailure::Rejected(_),
            ..
        }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn each_attempt_times_out_and_the_ttl_bounds_them_all() {
    let bus = bus(
        "[core]\nrequest_timeout_seconds = 1\n",
        vec![system("hhni_001", "hhni", &[], &[])],
    )
    .await;
    bus.systems
        .register("hhni_001", |message: Arc<IntegrationMessage>| async move {
            if message.message_type != "health_check" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            echo(message).await
        });
    let mut short = message("hhni_001", "data_request");
    short.ttl_ms = Some(300);
    let started = std::time::Instant::now();
    let err = bus.router.route(short).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after <= Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no retry outlives the ttl"
    );
}

#[actix_rt::test]
async fn sources_are_rate_limited_with_a_retry_after() {
    let toml = "[rate_limiting]\nrate_limit_requests_per_minute = 60\nrate_limit_burst_size = 2\n";
    let bus = bus(toml, vec![system("hhni_001", "hhni", &[], &[])]).await;
    for _ in 0..2 {
        bus.send("hhni_001", "status_update").await.unwrap();
    }
    let err = bus.send("hhni_001", "status_update").await.unwrap_err();
    match err {
        Error::RateLimited {
            source_system,
            retry_after,
            pace,
        } => {
            assert_eq!(source_system, "cmc_001");
            assert!(pace > Duration::ZERO);
            assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::ZERO);
        }
        other => panic!("expected rate limiting, got {other:?}"),
    }
}

#[actix_rt::test]
async fn replies_to_cacheable_types_are_served_from_the_cache() {
    let bus = bus("", vec![system("hhni_001", "hhni", &[], &[])]).await;
    let calls = Arc::new(AtomicU32::new(0));
    bus.systems
        .register("hhni_001", flaky(0, Arc::clone(&calls)));
    let first = bus.send("hhni_001", "data_request").await.unwrap();
    let second = bus.send("hhni_001", "data_request").await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(second.reply, first.reply);
    bus.send("hhni_001", "status_update").await.unwrap();
    bus.send("hhni_001", "status_update").await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "status updates are not cached"
    );
}

#[actix_rt::test]
async fn overload_is_refused_at_once_and_memory_stays_bounded() {
    let toml = "[core]\nmax_concurrent_requests = 8\nmax_concurrent_requests_per_system = 4\n[rate_limiting]\nenable_rate_limiting = false\n";
    let bus = bus(toml, vec![system("hhni_001", "hhni", &[], &[])]).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&release);
    bus.systems
        .register("hhni_001", move |message: Arc<IntegrationMessage>| {
            let gate = Arc::clone(&gate);
            async move {
                if message.message_type != "health_check" {
                    gate.notified().await;
                }
                echo(message).await
            }
        });
    let pending: Vec<_> = (0..200)
        .map(|_| {
            let router = bus.router.clone();
            actix_rt::spawn(async move {
                router
                    .route(message("hhni_001", "error_notification"))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused_at = std::time::Instant::now();
    let err = bus
        .send("hhni_001", "error_notification")
        .await
        .unwrap_err();
    assert!(
        refused_at.elapsed() < Duration::from_millis(50),
        "refused at once"
    );
    assert!(matches!(err, Error::Overloaded { .. }), "{err:?}");
    let in_flight = bus
        .router
        .router()
        .send(GetSystemMetrics("hhni_001".into()))
        .await
        .unwrap();
    assert_eq!(in_flight.unwrap().performance.request_count, 0);
    release.notify_waiters();
    let mut delivered = 0;
    let mut overloaded = 0;
    for task in pending {
        match task.await.unwrap() {
            Ok(_) => delivered += 1,
            Err(Error::Overloaded { .. }) => overloaded += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // At most the per-system bulkhead was ever held; everything else was turned away.
    assert_eq!(delivered, 4);
    assert_eq!(overloaded, 196);
}

#[actix_rt::test]
async fn the_retry_budget_stops_retries_multiplying_an_outage() {
    let toml = "[core]\nretry_budget_ratio = 0.0\nretry_budget_min_retries_per_second = 1\n[rate_limiting]\nenable_rate_limiting = false\n[circuit_breaker]\nenable_circuit_breaker = false\n";
    let bus = bus(toml, vec![system("hhni_001", "hhni", &[], &[])]).await;
    // After the store's work: paused time would run its timeouts out at once.
    tokio::time::pause();
    let calls = Arc::new(AtomicU32::new(0));
    bus.systems
        .register("hhni_001", flaky(u32::MAX, Arc::clone(&calls)));
    // Twenty status updates fail at once and each wants its one retry a second later;
    // the budget (1/s over a 10 s window, no share of requests) grants ten.
    let routes: Vec<_> = (0..20)
        .map(|_| {
            let router = bus.router.clone();
            actix_rt::spawn(async move { router.route(message("hhni_001", "status_update")).await })
        })
        .collect();
    for route in routes {
        assert!(route.await.unwrap().is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20 + 10);
}

/// A retry of what reached no system (the plan found every instance disconnected, as
/// while the bus's link to a broker is down) adds no load, so it draws nothing from the
/// budget: requests wait out a short outage even with no budget at all.
#[actix_rt::test]
async fn retries_that_reached_no_system_draw_nothing_from_the_retry_budget() {
    let toml = "[core]\nretry_budget_ratio = 0.0\nretry_budget_min_retries_per_second = 0\n[rate_limiting]\nenable_rate_limiting = false\n";
    let bus = bus(toml, vec![system("hhni_001", "hhni", &[], &[])]).await;
    bus.send("hhni_001", "status_update").await.unwrap();
    bus.registry
        .set_status("hhni_001", IntegrationStatus::Disconnected, "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    tokio::time::pause();
    // data_request: five attempts, 2 s apart and growing.
    let routes: Vec<_> = (0..20)
        .map(|_| {
            let router = bus.router.clone();
            actix_rt::spawn(async move { router.route(message("hhni_001", "data_request")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::time::resume();
    bus.registry
        .set_status("hhni_001", IntegrationStatus::Healthy, "test")
        .await
        .unwrap();
    tokio::time::pause();
    for route in routes {
        let routed = route.await.unwrap().unwrap();
        assert!(routed.attempts > 1, "answered at once: {routed:?}");
    }
}

/// Counterparts of the seed's `TestAdvancedSystemIntegrationManager` routing tests.
mod seed_test_advanced_system_integration_manager {
    use super::*;

    fn seed_systems() -> Vec<SystemInfo> {
        vec![
            system("test_system_001", "cmc", &["test_capability"], &[]),
            system("hhni_001", "hhni", &["test_capability"], &[]),
        ]
    }

    #[actix_rt::test]
    async fn test_send_message() {
        let bus = bus("", seed_systems()).await;
        let response = bus.send("hhni", "data_request").await.unwrap();
        assert_eq!(response.reply.payload["request"], "test_data");
        assert_eq!(&*response.served_by, "hhni_001");
    }

    #[actix_rt::test]
    async fn test_send_message_with_circuit_breaker() {
        let bus = bus("", seed_systems()).await;
        bus.router
            .router()
            .send(OverrideBreaker {
                system_id: "hhni_001".into(),
                order: Override::ForceOpen,
            })
            .await
            .unwrap()
            .unwrap();
        let response = bus.send("hhni", "data_request").await.unwrap();
        assert!(response.fallback);
        assert_eq!(
            &*response.served_by, "test_system_001",
            "the compatible system stood in"
        );
        assert_eq!(response.reply.payload["request"], "test_data");
    }

    /// The seed raises `SystemUnavailableError` inside a block that turns every error into
    /// `MessageSendError`; here the error keeps its type, and says when to come back.
    #[actix_rt::test]
    async fn test_send_message_circuit_breaker_no_fallback() {
        let bus = bus(
            "",
            vec![system("hhni_001", "hhni", &["test_capability"], &[])],
        )
        .await;
        // After the store's work: paused time would run its timeouts out at once.
        tokio::time::pause();
        bus.systems
            .register("hhni_001", flaky(u32::MAX, Arc::new(AtomicU32::new(0))));
        for _ in 0..5 {
            let _ = bus.send("hhni", "error_notification").await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let err = bus.send("hhni", "error_notification").await.unwrap_err();
        match err {
            Error::Unavailable {
                target,
                retry_after,
                reason,
            } => {
                assert_eq!(target, "hhni_001");
                assert!(reason.contains("no fallback"), "{reason}");
                let after = retry_after.unwrap();
                assert!(
                    after > Duration::from_secs(55) && after <= Duration::from_secs(60),
                    "{after:?}"
                );
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn test_get_system_health() {
        let bus = bus("", seed_systems()).await;
        let health = bus
            .router
            .health()
            .send(CheckNow("test_system_001".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(health.system_id, "test_system_001");
        assert_eq!(health.status, IntegrationStatus::Healthy);
        assert!(health.response_time_ms >= 0.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let checked = bus
            .registry
            .query(|r| r.get("test_system_001").unwrap().last_health_check)
            .await
            .unwrap();
        assert!(
            checked.is_some(),
            "the check is recorded as the system's last"
        );
    }

    #[actix_rt::test]
    async fn test_get_all_systems_health() {
        let bus = bus("", seed_systems()).await;
        bus.systems.unregister("hhni_001");
        for id in ["test_system_001", "hhni_001"] {
            bus.router
                .health()
                .send(CheckNow(id.into()))
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            status(&bus, "test_system_001").await,
            IntegrationStatus::Healthy
        );
        assert_eq!(
            status(&bus, "hhni_001").await,
            IntegrationStatus::Disconnected
        );
        let err = bus.send("hhni_001", "status_update").await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { .. }),
            "routing saw the status: {err:?}"
        );
    }

    /// Fault → unhealthy → actor restarted → health check verifies → healthy: one status,
    /// where the seed's two diverge.
    #[actix_rt::test]
    async fn test_handle_system_error() {
        let bus = bus(
            "[supervision]\nrestart_initial_backoff_ms = 20\n",
            seed_systems(),
        )
        .await;
        let mut events = bus.registry.subscribe().await.unwrap().events;
        let health = bus
            .router
            .health()
            .send(SystemError {
                system_id: "test_system_001".into(),
                error: "Test error".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(health.status, IntegrationStatus::Healthy);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            status(&bus, "test_system_001").await,
            IntegrationStatus::Healthy
        );
        let statuses: Vec<IntegrationStatus> = std::iter::from_fn(|| events.try_recv().ok())
            .filter_map(|e| match e {
                aimbus_core::RegistryEvent::StatusUpdate { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            [IntegrationStatus::Unhealthy, IntegrationStatus::Healthy]
        );
    }

    #[actix_rt::test]
    async fn test_performance_metrics_update() {
        let bus = bus("", seed_systems()).await;
        bus.send("test_system_001", "status_update").await.unwrap();
        bus.router.router().send(FlushMetrics).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let metrics = bus.registry_metrics("test_system_001").await;
        assert_eq!(
            (
                metrics.request_count,
                metrics.success_rate,
                metrics.error_rate
            ),
            (1, 1.0, 0.0)
        );
        assert!(metrics.last_request_time.is_some());
        let detailed = bus
            .router
            .router()
            .send(GetSystemMetrics("test_system_001".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(detailed.latency.count, 1);
        let summary = bus
            .registry
            .query(|r| r.integration_summary())
            .await
            .unwrap();
        assert_eq!(summary.performance_metrics.total_requests, 1);
    }
}

#[actix_rt::test]
async fn a_status_change_reaches_routing_within_one_health_check_interval() {
    let bus = bus(
        "[monitoring]\nhealth_check_interval_seconds = 5\n",
        vec![system("hhni_001", "hhni", &[], &[])],
    )
    .await;
    // After the store's work: paused time would run its timeouts out at once.
    tokio::time::pause();
    bus.send("hhni_001", "status_update").await.unwrap();
    // The system goes away without anyone telling the bus.
    bus.systems.unregister("hhni_001");
    tokio::time::sleep(Duration::from_secs(5) + Duration::from_millis(50)).await;
    let err = bus.send("hhni_001", "status_update").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { reason, .. } if reason.contains("disconnected")),
        "{err:?}"
    );
    // And back: the next check finds it answering again.
    bus.systems.register("hhni_001", echo);
    tokio::time::sleep(Duration::from_secs(5)).await;
    bus.send("hhni_001", "status_update").await.unwrap();
}

#[actix_rt::test]
async fn fallback_tries_at_most_its_configured_stand_ins() {
    let toml = "[fallback]\nfallback_retry_attempts = 1\n";
    let systems = vec![
        system("hhni_001", "hhni", &["search"], &[]),
        system("hhni_002", "hhni", &["search"], &[]),
        system("hhni_003", "hhni", &["search"], &[]),
    ];
    let bus = bus(toml, systems).await;
    let calls = Arc::new(AtomicU32::new(0));
    for id in ["hhni_002", "hhni_003"] {
        bus.systems
            .register(id, flaky(u32::MAX, Arc::clone(&calls)));
    }
    let order = OverrideBreaker {
        system_id: "hhni_001".into(),
        order: Override::ForceOpen,
    };
    bus.router.router().send(order).await.unwrap().unwrap();
    // error_notification has one attempt, so only the fallback actor tries stand-ins.
    let err = bus
        .router
        .route(message("hhni_001", "error_notification"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { reason, .. } if reason.contains("every fallback failed")),
        "{err:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one stand-in, as configured"
    );
}

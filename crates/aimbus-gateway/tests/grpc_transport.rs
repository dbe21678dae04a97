//! The gRPC transport against real `tonic` servers on 127.0.0.1: the contract's message
//! both ways, retries of transient statuses and none of refusals, the attempt's timeout as
//! the call's deadline, health through the standard `grpc.health.v1`, and the breaker
//! opening while the server is down and closing once it is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimbus_actors::breaker::BreakerState;
use aimbus_actors::router::{CheckNow, SubscribeBreakers};
use aimbus_actors::{
    DeliveryFailure, Error, InProcessTransport, RegistryHandle, RouterHandle, TransportSet,
};
use aimbus_core::{Config, IntegrationMessage, IntegrationStatus, SystemInfo};
use aimbus_gateway::GrpcTransport;
use aimbus_grpc::pb;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How the system answers `Deliver`: its first `fail_first` calls with `code`, then
/// each after `delay` with the payload echoed.
#[derive(Default)]
struct Behaviour {
    calls: AtomicU32,
    fail_first: u32,
    code: Option<Code>,
    delay: Duration,
    /// The last call: its message, `grpc-timeout` and `traceparent`.
    seen: Mutex<Option<(IntegrationMessage, Option<String>)>>,
    /// Calls whose handler ran to its end (a call past its deadline does not).
    finished: AtomicU32,
}

struct EchoSystem(Arc<Behaviour>);

#[tonic::async_trait]
impl pb::system_server::System for EchoSystem {
    async fn deliver(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Response<pb::IntegrationMessage>, Status> {
        let behaviour = &self.0;
        let n = behaviour.calls.fetch_add(1, Ordering::SeqCst);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned());
        let message = aimbus_grpc::from_proto(request.into_inner(), 32)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        *behaviour.seen.lock().unwrap() = Some((message.clone(), timeout));
        if n < behaviour.fail_first {
            return Err(Status::new(behaviour.code.unwrap(), "not now"));
        }
        tokio::time::sleep(behaviour.delay).await;
        behaviour.finished.fetch_add(1, Ordering::SeqCst);
        let mut reply = IntegrationMessage::new(
            message.target_system.clone(),
            message.source_system.clone(),
            "data_response",
            json!({"status": "success", "echo": message.payload})
                .as_object()
                .unwrap()
                .clone(),
        );
        reply.correlation_id = Some(message.message_id);
        Ok(Response::new(aimbus_grpc::to_proto(&reply)))
    }
}

/// A gRPC system serving `System` and the standard health service on `listener`, until
/// the returned sender is dropped or fired.
struct Server {
    address: SocketAddr,
    health: HealthReporter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(behaviour: Arc<Behaviour>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::on(listener, behaviour).await
    }

    async fn on(listener: TcpListener, behaviour: Arc<Behaviour>) -> Server {
        let address = listener.local_addr().unwrap();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(pb::system_server::SystemServer::new(EchoSystem(behaviour)))
                .serve_with_incoming_shutdown(aimbus_grpc::incoming(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            address,
            health,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and closes its connections.
    async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            // Graceful shutdown waits for open connections; the bus's stay open.
            task.abort();
            let _ = task.await;
        }
    }
}

async fn bus(address: SocketAddr, config: &str) -> (RegistryHandle, RouterHandle) {
    let config = Config::from_toml_str(
        "test",
        &format!("[monitoring]\nhealth_check_interval_seconds = 3600\n{config}"),
        Vec::new(),
        ".".into(),
    )
    .unwrap();
    let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
        .with_interface("grpc", Arc::new(GrpcTransport::new(&config)));
    let registry = RegistryHandle::in_memory(&config, transports)
        .await
        .unwrap();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "hhni_001", "system_type": "hhni", "name": "HHNI", "version": "1",
        "interfaces": {"grpc": address.to_string()},
    }))
    .unwrap();
    registry.register(system).await.unwrap();
    let router = RouterHandle::start(Arc::new(config), registry.clone())
        .await
        .unwrap();
    (registry, router)
}

/// Retries wait 10 ms, so the tests do not wait out the seed's second.
const FAST_RETRIES: &str = "[core]\nretry_delay_seconds = 0.01\n";

/// A message type with no policy of its own (so `[core]`'s retry settings apply) and no
/// reply cache (so every request reaches the system).
const LOOKUP: &str = "lookup";

fn request() -> IntegrationMessage {
    let payload = json!({"q": "quality", "n": 3, "nested": {"list": [1.5, "x", null]}});
    let mut message = IntegrationMessage::new(
        "cmc_001",
        "hhni_001",
        LOOKUP,
        payload.as_object().unwrap().clone(),
    );
    message.priority = 7;
    message
}

#[actix_rt::test]
async fn a_grpc_system_gets_the_contract_s_message_and_its_reply_comes_back() {
    let behaviour = Arc::new(Behaviour::default());
    let _server = Server::start(Arc::clone(&behaviour)).await;
    let (_registry, router) = bus(_server.address, FAST_RETRIES).await;
    let message = request();
    let routed = router.route(message.clone()).await.unwrap();
    assert_eq!(routed.reply.payload["status"], "success");
    assert_eq!(routed.reply.payload["echo"], json!(message.payload));
    let (seen, timeout) = behaviour.seen.lock().unwrap().clone().unwrap();
    assert_eq!(seen.message_id, message.message_id);
    assert_eq!(
        (
            &*seen.source_system,
            &*seen.target_system,
            &*seen.message_type
        ),
        ("cmc_001", "hhni_001", LOOKUP)
    );
    assert_eq!((seen.priority, seen.timestamp), (7, message.timestamp));
    assert_eq!(seen.payload, message.payload, "3 stays an integer");
    assert!(timeout.is_some(), "every call has a deadline");
}

#[actix_rt::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let flaky = Arc::new(Behaviour {
        fail_first: 1,
        code: Some(Code::Unavailable),
        ..Behaviour::default()
    });
    let server = Server::start(Arc::clone(&flaky)).await;
    let (_registry, router) = bus(server.address, FAST_RETRIES).await;
    let routed = router.route(request()).await.unwrap();
    assert_eq!(routed.reply.payload["status"], "success");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2, "one retry");

    let refusing = Arc::new(Behaviour {
        fail_first: u32::MAX,
        code: Some(Code::InvalidArgument),
        ..Behaviour::default()
    });
    let server = Server::start(Arc::clone(&refusing)).await;
    let (_registry, router) = bus(server.address, FAST_RETRIES).await;
    let error = router.route(request()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Delivery {
                failure: DeliveryFailure::Rejected(reason),
                ..
            } if reason.contains("INVALID_ARGUMENT") && reason.contains("not now")
        ),
        "{error:?}"
    );
    assert_eq!(refusing.calls.load(Ordering::SeqCst), 1, "no retry");
}

#[actix_rt::test]
async fn the_attempt_s_timeout_is_the_call_s_deadline() {
    let slow = Arc::new(Behaviour {
        delay: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let server = Server::start(Arc::clone(&slow)).await;
    let config = "[core]\nrequest_timeout_seconds = 1\nretry_attempts = 1\n";
    let (_registry, router) = bus(server.address, config).await;
    let error = router.route(request()).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let (_, timeout) = slow.seen.lock().unwrap().clone().unwrap();
    // gRPC writes it as digits and a unit; the bus sends what is left of its second.
    let timeout = timeout.unwrap();
    let (digits, unit) = timeout.split_at(timeout.len() - 1);
    let value: u64 = digits.parse().unwrap();
    let millis = match unit {
        "S" => value * 1000,
        "m" => value,
        "u" => value / 1000,
        "n" => value / 1_000_000,
        other => panic!("unit {other}"),
    };
    assert!((500..=1000).contains(&millis), "grpc-timeout {timeout}");
    // The server ends the handler at the deadline instead of working on for nobody.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(slow.finished.load(Ordering::SeqCst), 0);
}

#[actix_rt::test]
async fn health_is_the_standard_grpc_health_check() {
    let behaviour = Arc::new(Behaviour::default());
    let server = Server::start(Arc::clone(&behaviour)).await;
    let (registry, router) = bus(server.address, FAST_RETRIES).await;
    let check = || async {
        router
            .health()
            .send(CheckNow("hhni_001".into()))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(check().await.status, IntegrationStatus::Healthy);
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        0,
        "health is not a Deliver"
    );
    server
        .health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let result = check().await;
    assert_ne!(result.status, IntegrationStatus::Healthy);
    assert!(
        result
            .error_message
            .as_deref()
            .is_some_and(|e| e.contains("NOT_SERVING")),
        "{result:?}"
    );
    // The monitor records the result in the registry after answering.
    for _ in 0..200 {
        let status = registry
            .query(|r| r.get("hhni_001").map(|s| s.status))
            .await
            .unwrap();
        if status == Some(result.status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the registry never took the status {:?}", result.status);
}

#[actix_rt::test]
async fn the_breaker_opens_while_the_server_is_down_and_closes_when_it_is_back() {
    let behaviour = Arc::new(Behaviour::default());
    let mut server = Server::start(Arc::clone(&behaviour)).await;
    let address = server.address;
    let config = format!(
        "{FAST_RETRIES}[circuit_breaker]\ncircuit_breaker_failure_threshold = 2\n\
         circuit_breaker_recovery_timeout_seconds = 1\n"
    );
    let (_registry, router) = bus(address, &config).await;
    let mut transitions = router.router().send(SubscribeBreakers).await.unwrap();
    router.route(request()).await.unwrap();

    server.stop().await;
    let error = router.route(request()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Delivery {
                failure: DeliveryFailure::Unreachable(_),
                ..
            } | Error::Unavailable { .. }
        ),
        "{error:?}"
    );
    let opened = transitions.recv().await.unwrap();
    assert_eq!(opened.to, BreakerState::Open);
    let error = router.route(request()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");

    // Back on the same port; once the recovery timeout passes a trial call closes it.
    let listener = TcpListener::bind(address).await.unwrap();
    let _server = Server::on(listener, Arc::clone(&behaviour)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Trial calls succeed until the breaker has seen enough of them to close.
    let closed = async {
        loop {
            let routed = router.route(request()).await.unwrap();
            assert_eq!(routed.reply.payload["status"], "success");
            while let Ok(event) = transitions.try_recv() {
                if event.to == BreakerState::Closed {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the breaker closes once the server is back");
}

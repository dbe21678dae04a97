//! The REST transport against a real HTTP system on 127.0.0.1:0: the seed's L3 wire
//! format, retries of transient statuses, no retry of refusals, and health checks.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimbus_actors::router::CheckNow;
use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_core::{Config, IntegrationMessage, IntegrationStatus, SystemInfo};
use aimbus_gateway::RestTransport;
use serde_json::{Value, json};

/// A request as the system saw it: its `x-` headers and its JSON body.
type Seen = (Vec<(String, String)>, Value);

/// How the HTTP system answers `POST /api/v1/messages`: `fail_first` calls get 503,
/// then each gets 200 (or 400 when `refuse`).
struct Behaviour {
    calls: AtomicU32,
    fail_first: u32,
    refuse: bool,
    /// The last request.
    seen: std::sync::Mutex<Option<Seen>>,
}

async fn messages(
    request: HttpRequest,
    body: web::Json<Value>,
    behaviour: web::Data<Behaviour>,
) -> HttpResponse {
    let n = behaviour.calls.fetch_add(1, Ordering::SeqCst);
    let headers = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    *behaviour.seen.lock().unwrap() = Some((headers, body.0.clone()));
    if n < behaviour.fail_first {
        return HttpResponse::ServiceUnavailable().body("warming up");
    }
    if behaviour.refuse {
        return HttpResponse::BadRequest().json(json!({"error": "unknown query"}));
    }
    HttpResponse::Ok().json(json!({
        "message_id": "reply-1",
        "payload": {"status": "success", "echo": body.0["payload"]},
    }))
}

/// Starts the HTTP system; returns its base URL and what it saw.
fn http_system(
    fail_first: u32,
    refuse: bool,
) -> (String, Arc<Behaviour>, actix_web::dev::ServerHandle) {
    let behaviour = Arc::new(Behaviour {
        calls: AtomicU32::new(0),
        fail_first,
        refuse,
        seen: std::sync::Mutex::new(None),
    });
    let data = web::Data::from(Arc::clone(&behaviour));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/v1/messages", web::post().to(messages))
            .route(
                "/health",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "healthy"})) }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (base, behaviour, handle)
}

async fn bus(base: &str) -> (RegistryHandle, RouterHandle) {
    let config = Config::from_toml_str(
        "test",
        "[monitoring]\nhealth_check_interval_seconds = 3600\n",
        Vec::new(),
        ".".into(),
    )
    .unwrap();
    let transports = TransportSet::new(Arc::new(InProcessTransport::new())).with_interface(
        "rest_api",
        Arc::new(RestTransport::new(config.performance()).unwrap()),
    );
    let registry = RegistryHandle::in_memory(&config, transports)
        .await
        .unwrap();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "sdf_001", "system_type": "sdf_cvf", "name": "SDF", "version": "1",
        "interfaces": {"rest_api": base},
    }))
    .unwrap();
    registry.register(system).await.unwrap();
    let router = RouterHandle::start(Arc::new(config), registry.clone())
        .await
        .unwrap();
    (registry, router)
}

fn request(message_type: &str) -> IntegrationMessage {
    let payload = json!({"q": "quality"}).as_object().unwrap().clone();
    IntegrationMessage::new("cmc_001", "sdf_001", message_type, payload)
}

#[actix_rt::test]
async fn a_rest_system_gets_the_l3_wire_format_and_its_reply_comes_back() {
    let (base, behaviour, server) = http_system(0, false);
    let (_registry, router) = bus(&base).await;
    let message = request("data_request");
    let routed = router.route(message.clone()).await.unwrap();
    assert_eq!(routed.reply.payload["status"], "success");
    assert_eq!(routed.reply.payload["echo"], json!({"q": "quality"}));
    let (headers, body) = behaviour.seen.lock().unwrap().clone().unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-message-id").as_deref(),
        Some(message.message_id.as_str())
    );
    assert_eq!(header("x-source-system").as_deref(), Some("cmc_001"));
    assert_eq!(header("x-target-system").as_deref(), Some("sdf_001"));
    assert_eq!(header("x-message-type").as_deref(), Some("data_request"));
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "message_id",
            "message_type",
            "payload",
            "priority",
            "source_system",
            "target_system",
            "timestamp"
        ]
    );
    server.stop(false).await;
}

#[actix_rt::test]
async fn transient_statuses_are_retried_and_refusals_are_not() {
    let (base, behaviour, server) = http_system(1, false);
    let (_registry, router) = bus(&base).await;
    // status_update: two attempts, one second apart.
    let routed = router.route(request("status_update")).await.unwrap();
    assert_eq!(routed.attempts, 2);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 2);
    server.stop(false).await;

    let (base, behaviour, server) = http_system(0, true);
    let (_registry, router) = bus(&base).await;
    let error = router.route(request("status_update")).await.unwrap_err();
    assert!(error.to_string().contains("400"), "{error}");
    assert!(error.to_string().contains("unknown query"), "{error}");
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        1,
        "a refusal is not retried"
    );
    server.stop(false).await;
}

#[actix_rt::test]
async fn health_checks_call_get_health_and_notice_a_system_gone() {
    let (base, _behaviour, server) = http_system(0, false);
    let (registry, router) = bus(&base).await;
    let check = router
        .health()
        .send(CheckNow("sdf_001".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(check.status, IntegrationStatus::Healthy);
    server.stop(false).await;
    // The server's workers wind down in the background; a check soon sees it gone.
    let mut check = None;
    for _ in 0..50 {
        let result = router
            .health()
            .send(CheckNow("sdf_001".into()))
            .await
            .unwrap()
            .unwrap();
        if result.status != IntegrationStatus::Healthy {
            check = Some(result);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let check = check.expect("the health check noticed the system gone");
    assert!(check.error_message.unwrap().contains(&base));
    let status = registry
        .query(|r| r.get("sdf_001").unwrap().status)
        .await
        .unwrap();
    assert_ne!(status, IntegrationStatus::Healthy);
}

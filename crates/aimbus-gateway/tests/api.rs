//! Every endpoint and error status of the gateway, over real HTTP.

mod common;

use aimbus_core::{Codec, Format, IntegrationMessage};
use aimbus_gateway::Role;
use common::{assert_problem, message, start};
use serde_json::{Value, json};

#[actix_rt::test]
async fn a_posted_message_is_routed_and_answered_in_json_or_msgpack() {
    let gw = start("").await;
    let sent = message("cmc_001", "hhni_001", "data_request");
    let response = gw.post_message("cmc_001", &sent).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-served-by"], "hhni_001");
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["message_type"], "data_response");
    assert_eq!(reply["correlation_id"], sent["message_id"]);
    assert_eq!(reply["payload"]["served_type"], "data_request");
    assert_eq!(reply["target_system"], "cmc_001");

    // MessagePack in and out, with the seed's headers agreeing with the body.
    let codec = Codec::new(aimbus_core::Config::default().decode_limits());
    let mut as_message: IntegrationMessage =
        serde_json::from_value(message("cmc_001", "hhni", "status_update")).unwrap();
    as_message.priority = 3;
    let body = codec.encode(Format::MessagePack, &as_message).unwrap();
    let response = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(gw.token("cmc_001", &[Role::Publisher]))
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .header("X-Message-ID", as_message.message_id.as_str())
        .header("X-Source-System", "cmc_001")
        .header("X-Target-System", "hhni")
        .header("X-Message-Type", "status_update")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/msgpack");
    let reply: IntegrationMessage = codec
        .decode(Format::MessagePack, &response.bytes().await.unwrap())
        .unwrap();
    assert_eq!(
        reply.correlation_id.as_deref(),
        Some(as_message.message_id.as_str())
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn bad_messages_get_the_precise_problem() {
    let gw = start("[limits]\nmax_message_bytes = 4096\nmax_nesting_depth = 8\n").await;
    let token = gw.token("cmc_001", &[Role::Publisher]);
    let post = |content_type: &'static str, body: Vec<u8>| {
        gw.http
            .post(gw.url("/api/v1/messages"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = post("application/json", b"{not json".to_vec())
        .await
        .unwrap();
    assert_problem(r, 400, "malformed").await;
    let r = post("text/plain", b"hello".to_vec()).await.unwrap();
    assert_problem(r, 415, "unsupported-media-type").await;
    let r = post("application/json", vec![b' '; 5000]).await.unwrap();
    assert_problem(r, 413, "too-large").await;
    let deep = format!("{}{}", "[".repeat(50), "]".repeat(50));
    let mut nested = message("cmc_001", "hhni_001", "data_request");
    nested["payload"] = json!({ "deep": serde_json::from_str::<Value>(&deep).unwrap() });
    let r = post("application/json", serde_json::to_vec(&nested).unwrap())
        .await
        .unwrap();
    let detail = assert_problem(r, 400, "malformed").await;
    assert!(detail.contains("deeper"), "{detail}");
    let mut invalid = message("cmc_001", "hhni_001", "data_request");
    invalid["priority"] = json!(12);
    let r = post("application/json", serde_json::to_vec(&invalid).unwrap())
        .await
        .unwrap();
    assert_problem(r, 422, "invalid").await;
    let r = gw
        .post_message("cmc_001", &message("cmc_001", "nobody_001", "data_request"))
        .await;
    assert_problem(r, 404, "unknown-system").await;
    // A header contradicting the body.
    let r = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(&token)
        .header("X-Target-System", "cmc_001")
        .json(&message("cmc_001", "hhni_001", "data_request"))
        .send()
        .await
        .unwrap();
    let detail = assert_problem(r, 400, "malformed").await;
    assert!(detail.contains("x-target-system"), "{detail}");
    // Unknown routes and methods are problems too.
    let r = gw.http.get(gw.url("/api/v1/nothing")).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = gw
        .http
        .put(gw.url("/api/v1/messages"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method-not-allowed").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn failures_of_the_system_map_to_gateway_statuses() {
    use aimbus_actors::DeliveryFailure;
    let gw = start(
        "[core]\nrequest_timeout_seconds = 1\n\
         [circuit_breaker]\ncircuit_breaker_failure_threshold = 1\ncircuit_breaker_recovery_timeout_seconds = 30\n\
         [fallback]\nenable_fallback = false\n",
    )
    .await;
    gw.systems.register("hhni_001", |_| async {
        Err(DeliveryFailure::Rejected("no such index".into()))
    });
    let r = gw
        .post_message("cmc_001", &message("cmc_001", "hhni_001", "data_request"))
        .await;
    assert_problem(r, 422, "rejected").await;
    gw.systems.register("hhni_001", |_| async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        Err(DeliveryFailure::Failed("late".into()))
    });
    let r = gw
        .post_message(
            "cmc_001",
            &message("cmc_001", "hhni_001", "error_notification"),
        )
        .await;
    assert_problem(r, 504, "timeout").await;
    // The breaker is open now: 503 with the time to half-open.
    let r = gw
        .post_message(
            "cmc_001",
            &message("cmc_001", "hhni_001", "error_notification"),
        )
        .await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_problem(r, 503, "unavailable").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn the_registry_is_served_with_filters_and_writes_need_admin() {
    let gw = start("").await;
    let reader = gw.token("cmc_001", &[Role::Readonly]);
    let admin = gw.token("ops_001", &[Role::Admin]);
    let get = |path: String| gw.http.get(gw.url(&path)).bearer_auth(&reader).send();
    let get_json = |path: String| {
        let response = get(path);
        async move { response.await.unwrap().json::<Value>().await.unwrap() }
    };

    let all: Value = get_json("/api/v1/systems".into()).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let hhni: Value = get_json(
        "/api/v1/systems?type=hhni&capability=search&interface=rest_api&status=healthy".into(),
    )
    .await;
    assert_eq!(hhni.as_array().unwrap().len(), 1);
    assert_eq!(hhni[0]["system_id"], "hhni_001");
    let none: Value = get_json("/api/v1/systems?capability=flying".into()).await;
    assert_eq!(none, json!([]));
    let r = get("/api/v1/systems?status=sleepy".into()).await.unwrap();
    assert_problem(r, 400, "malformed").await;

    let mut new_system = serde_json::to_value(common::system("seg_001", "seg")).unwrap();
    new_system["dependencies"] = json!(["hhni_001"]);
    let register = |token: &str, system: &Value| {
        gw.http
            .post(gw.url("/api/v1/systems"))
            .bearer_auth(token)
            .json(system)
            .send()
    };
    let r = register(&reader, &new_system).await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = register(&admin, &new_system).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/api/v1/systems/seg_001");
    let r = register(&admin, &new_system).await.unwrap();
    assert_problem(r, 409, "duplicate").await;
    let mut broken = new_system.clone();
    broken["system_id"] = json!("seg_002");
    broken["dependencies"] = json!(["ghost_001"]);
    let r = register(&admin, &broken).await.unwrap();
    assert_problem(r, 422, "invalid").await;

    let one: Value = get_json("/api/v1/systems/seg_001".into()).await;
    assert_eq!(one["system_type"], "seg");
    let health: Value = get_json("/api/v1/systems/seg_001/health".into()).await;
    assert_eq!(health["system_id"], "seg_001");
    assert!(health["status"].is_string());
    let chain: Value = get_json("/api/v1/systems/seg_001/dependencies".into()).await;
    assert_eq!(chain, json!(["hhni_001", "seg_001"]));
    let compatibility: Value = get_json("/api/v1/systems/seg_001/compatibility".into()).await;
    assert!(compatibility.is_object());
    let summary: Value = get_json("/api/v1/registry/summary".into()).await;
    assert_eq!(summary["total_systems"], 3);
    let integration: Value = get_json("/api/v1/integration/summary".into()).await;
    assert!(integration.is_object());
    assert_problem(
        get("/api/v1/systems/ghost_001".into()).await.unwrap(),
        404,
        "unknown-system",
    )
    .await;
    assert_problem(
        get("/api/v1/systems/ghost_001/dependencies".into())
            .await
            .unwrap(),
        404,
        "unknown-system",
    )
    .await;

    let r = gw
        .http
        .delete(gw.url("/api/v1/systems/seg_001"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_problem(
        get("/api/v1/systems/seg_001".into()).await.unwrap(),
        404,
        "unknown-system",
    )
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn probes_metrics_and_the_openapi_document_are_served() {
    let gw = start("").await;
    let r = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: Value = gw
        .http
        .get(gw.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["broker"], "not used");
    assert_eq!(ready["registry"]["systems"], 2);
    gw.post_message("cmc_001", &message("cmc_001", "hhni_001", "data_request"))
        .await;
    let metrics = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "aimbus_http_requests_total",
        "aimbus_http_request_duration_seconds_bucket",
        "aimbus_messages_routed_total",
        "aimbus_system_requests_total{system_id=\"hhni_001\"}",
        "aimbus_system_request_duration_seconds_bucket{system_id=\"hhni_001\"",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // The gateway runs in this process: its figures are this process's, in bytes and
    // seconds whatever the page size and clock tick.
    let rss = sample(&metrics, "process_resident_memory_bytes");
    let kernel_rss = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        * 1024.0;
    assert!(
        (rss / kernel_rss - 1.0).abs() < 0.5,
        "rss {rss} B, the kernel says {kernel_rss} B"
    );
    let cpu = sample(&metrics, "process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu < 3600.0, "cpu {cpu} s");
    assert!(metrics.contains("route=\"/api/v1/messages\""), "{metrics}");

    let doc: Value = gw
        .http
        .get(gw.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented operation is served: without a token, a protected one answers
    // 401, never 404 or 405.
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path.replace("{system_id}", "hhni_001");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = gw
                .http
                .request(method.clone(), gw.url(&concrete))
                .send()
                .await
                .unwrap();
            assert!(
                ![404, 405].contains(&r.status().as_u16()),
                "{method} {path} is documented but not served: {}",
                r.status()
            );
        }
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn a_subject_over_its_rate_gets_429_with_retry_after() {
    let gw =
        start("[rate_limiting]\nrate_limit_requests_per_minute = 60\nrate_limit_burst_size = 3\n")
            .await;
    let token = gw.token("cmc_001", &[Role::Readonly]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = gw
            .http
            .get(gw.url("/api/v1/systems"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_problem(r, 429, "rate-limited").await;
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Another subject has a bucket of its own.
    let other = gw.token("hhni_001", &[Role::Readonly]);
    let r = gw
        .http
        .get(gw.url("/api/v1/systems"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[actix_rt::test]
async fn respond_async_without_the_broker_is_refused_not_dropped() {
    let gw = start("").await;
    let r = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(gw.token("cmc_001", &[Role::Publisher]))
        .header("Prefer", "respond-async")
        .json(&message("cmc_001", "hhni_001", "data_request"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 503, "async-unavailable").await;
    // An invalid message is refused at once, not enqueued to be dead-lettered later.
    let mut invalid = message("cmc_001", "hhni_001", "data_request");
    invalid["priority"] = json!(12);
    let r = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(gw.token("cmc_001", &[Role::Publisher]))
        .header("Prefer", "respond-async")
        .json(&invalid)
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn responses_are_compressed_for_clients_that_accept_it() {
    let gw = start("").await;
    let token = gw.token("cmc_001", &[Role::Readonly]);
    let get = |encoding: &'static str| {
        gw.http
            .get(gw.url("/api/v1/systems"))
            .bearer_auth(&token)
            .header("accept-encoding", encoding)
            .send()
    };
    let r = get("gzip").await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = get("identity").await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let plain: Vec<Value> = r.json().await.unwrap();
    assert_eq!(plain.len(), 2);
    gw.stop().await;

    let gw = start("[performance]\nenable_compression = false\n").await;
    let r = gw
        .http
        .get(gw.url("/api/v1/systems"))
        .bearer_auth(gw.token("cmc_001", &[Role::Readonly]))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    gw.stop().await;
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
}

//! The whole bus as a user runs it: `aimbus serve` and `aimbus systems simulate --all`
//! as processes on the real broker, and a client that publishes to the ingress.

use std::process::Command;

use common::Reaped;
use std::time::Duration;

use aimbus_amqp::{Names, topology};
use aimbus_client::BusClient;
use aimbus_core::{Codec, Config, Format, IntegrationMessage, SystemsFile};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

mod common;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/aimbus.toml");
const SHIPPED_SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/systems.toml");

/// The shipped configuration and systems file, as they are: the namespace a test runs in
/// (`AIMBUS_AMQP__NAMESPACE`) keeps its system queues apart from every other test's.
fn shipped_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(SHIPPED, dir.path().join("aimbus.toml")).unwrap();
    std::fs::copy(SHIPPED_SYSTEMS, dir.path().join("systems.toml")).unwrap();
    let path = dir.path().join("aimbus.toml");
    (dir, path)
}

/// Starts `aimbus <args>` in `namespace` and waits for `ready` in its log.
fn start(config: &std::path::Path, namespace: &str, args: &[&str], ready: &str) -> Reaped {
    start_with(config, namespace, args, ready, &[])
}

fn start_with(
    config: &std::path::Path,
    namespace: &str,
    args: &[&str],
    ready: &str,
    env: &[(&str, &str)],
) -> Reaped {
    start_logging(config, namespace, args, ready, env).0
}

/// Like `start_with`, also returning the gateway's address if the process logged one.
fn start_logging(
    config: &std::path::Path,
    namespace: &str,
    args: &[&str],
    ready: &str,
    env: &[(&str, &str)],
) -> (Reaped, Option<String>) {
    let mut command = common::aimbus_command();
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env("AIMBUS_AMQP__NAMESPACE", namespace);
    let mut gateway = None;
    let (child, lines) =
        common::spawn_until(&mut command, ready, Duration::from_secs(60), |line| {
            gateway = gateway.take().or_else(|| common::gateway_address(line));
        });
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, gateway)
}

/// `aimbus serve` and `aimbus systems simulate <simulated…>` as processes, in a namespace
/// of their own on the real broker; `stop` ends both and removes the namespace.
struct Stack {
    namespace: String,
    path: std::path::PathBuf,
    config: Config,
    /// The gateway's base URL.
    gateway: String,
    serve: Reaped,
    simulate: Reaped,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(name: &str, simulated: &[&str], env: &[(&str, &str)]) -> Stack {
        Stack::start_with_systems(name, simulated, env, str::to_owned)
    }

    /// Like `start`, with the shipped systems file as `edit` makes it.
    fn start_with_systems(
        name: &str,
        simulated: &[&str],
        env: &[(&str, &str)],
        edit: impl FnOnce(&str) -> String,
    ) -> Stack {
        let namespace = format!("aimbus-{name}-{}", uuid::Uuid::new_v4().simple());
        let (dir, path) = shipped_config();
        let systems = dir.path().join("systems.toml");
        let edited = edit(&std::fs::read_to_string(&systems).unwrap());
        std::fs::write(&systems, edited).unwrap();
        let (serve, gateway) =
            start_logging(&path, &namespace, &["serve"], "aimbus is serving", env);
        let gateway = gateway.expect("serve logs its gateway address");
        let simulate_args = [&["systems", "simulate"], simulated].concat();
        let simulate = start_with(
            &path,
            &namespace,
            &simulate_args,
            "simulated systems serving",
            env,
        );
        Stack {
            config: Config::load(&path, Vec::new()).unwrap(),
            gateway: format!("http://{gateway}"),
            namespace,
            path,
            serve,
            simulate,
            _dir: dir,
        }
    }

    /// A queue of the test's own for `reply_to`, and a channel to read it; `stop` removes
    /// it with the namespace.
    async fn replies_queue(&self) -> (Connection, lapin::Channel, String) {
        let connection =
            Connection::connect(&self.config.amqp().url, ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let replies = replies_queue_name(&self.namespace);
        declare_queue(&channel, &replies).await;
        (connection, channel, replies)
    }

    async fn stop(self) {
        common::terminate(self.simulate);
        common::terminate(self.serve);
        remove_namespace(&self.config, &self.namespace).await;
    }
}

/// The gateway's `/metrics`, as Prometheus reads it.
async fn scrape(http: &reqwest::Client, gateway: &str) -> String {
    let response = http.get(format!("{gateway}/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

/// `aimbus token mint` with `config`, as a user runs it.
fn mint(config: &std::path::Path, sub: &str, role: &str) -> String {
    let output = common::aimbus_command()
        .arg("--config")
        .arg(config)
        .args([
            "token", "mint", "--sub", sub, "--role", role, "--ttl", "10m",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A message posted to the gateway over HTTP is routed over RabbitMQ to a simulated
/// system and answered; with `Prefer: respond-async` it is answered 202 once enqueued,
/// and its reply arrives on its `reply_to` queue.
#[tokio::test(flavor = "multi_thread")]
async fn http_messages_reach_simulated_systems_over_rabbitmq() {
    let stack = Stack::start("http", &["--all"], &[]);
    let gateway = &stack.gateway;
    let token = mint(&stack.path, "cmc_001", "publisher");
    let http = reqwest::Client::new();

    let ready: serde_json::Value = http
        .get(format!("{gateway}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["broker"], "connected", "{ready}");
    let message = json!({
        "message_id": uuid::Uuid::new_v4().to_string(),
        "source_system": "cmc_001", "target_system": "hhni_001",
        "message_type": "data_request", "payload": {"query": "over http"},
    });
    let response = http
        .post(format!("{gateway}/api/v1/messages"))
        .bearer_auth(&token)
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["correlation_id"], message["message_id"]);
    assert_eq!(reply["payload"]["status"], "success", "{reply}");

    let (_connection, channel, replies) = stack.replies_queue().await;
    let mut later = message.clone();
    later["message_id"] = json!(uuid::Uuid::new_v4().to_string());
    later["reply_to"] = json!(replies);
    let response = http
        .post(format!("{gateway}/api/v1/messages"))
        .bearer_auth(&token)
        .header("Prefer", "respond-async")
        .json(&later)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let answer = next_message(&channel, &replies).await;
    let correlation = answer.delivery.properties.correlation_id().clone().unwrap();
    assert_eq!(correlation.as_str(), later["message_id"].as_str().unwrap());
    let metrics = scrape(&http, gateway).await;
    // Every series names the node first (the shipped config leaves the id generated).
    for (name, label) in [
        (
            "aimbus_amqp_publishes_total{node=\"",
            "outcome=\"confirmed\"}",
        ),
        (
            "aimbus_system_requests_total{node=\"",
            "system_id=\"hhni_001\"}",
        ),
        ("aimbus_http_requests_total{node=\"", ""),
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name) && l.contains(label)),
            "{name}…{label} missing from:\n{metrics}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_simulated_systems_answer_a_client_over_rabbitmq() {
    let stack = Stack::start("e2e", &["--all"], &[]);
    let (config, namespace) = (&stack.config, &stack.namespace);
    let codec = Codec::new(config.decode_limits());
    let client = BusClient::connect(&config.amqp().url, namespace, codec)
        .await
        .unwrap();
    for (target, message_type) in [("hhni_001", "data_request"), ("vif", "status_update")] {
        let payload = json!({"query": "what is known"})
            .as_object()
            .unwrap()
            .clone();
        let request = IntegrationMessage::new("cmc_001", target, message_type, payload);
        let reply = client
            .request(
                request.clone(),
                Format::MessagePack,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(reply.outcome, "ok");
        assert_eq!(
            reply.message.correlation_id.as_deref(),
            Some(request.message_id.as_str())
        );
        assert_eq!(reply.message.payload["status"], "success");
        assert!(
            reply.message.source_system.starts_with(target),
            "{target}: {:?}",
            reply.message
        );
    }
    stack.stop().await;
}

/// A queue of the test's own, as a client declares one for `reply_to`.
async fn declare_queue(channel: &lapin::Channel, queue: &str) {
    channel
        .queue_declare(queue.into(), Default::default(), Default::default())
        .await
        .unwrap();
}

/// The next message in `queue`, waiting up to 30 s for one to arrive.
async fn next_message(channel: &lapin::Channel, queue: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..600 {
        let get = lapin::options::BasicGetOptions { no_ack: true };
        if let Some(message) = channel.basic_get(queue.into(), get).await.unwrap() {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing arrived in {queue} within 30 s");
}

/// Deletes the queues and exchanges of a test's namespace.
fn replies_queue_name(namespace: &str) -> String {
    format!("{namespace}.replies")
}

async fn remove_namespace(config: &Config, namespace: &str) {
    let names = Names::new(namespace);
    let connection = Connection::connect(&config.amqp().url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let systems = SystemsFile::load(&config.systems_file()).unwrap();
    let queues = systems
        .systems()
        .iter()
        .map(|s| names.system_queue(&s.system_id))
        .chain([replies_queue_name(namespace)]);
    topology::delete_namespace(&channel, &names, queues)
        .await
        .unwrap();
}

/// Fault test: the process serving a system is killed (SIGKILL) in the middle of the
/// stream and started again; every request still gets its reply. Prints the summary.
#[tokio::test(flavor = "multi_thread")]
async fn a_system_worker_killed_mid_stream_loses_nothing() {
    const MESSAGES: usize = 3_000;
    let namespace = format!("aimbus-kill-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = shipped_config();
    // Attempts at the killed worker time out fast and are retried.
    let fast = [
        ("AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS", "3"),
        ("AIMBUS_RATE_LIMITING__ENABLE_RATE_LIMITING", "false"),
    ];
    let serve = start_with(&path, &namespace, &["serve"], "aimbus is serving", &fast);
    let worker = [
        "systems",
        "simulate",
        "--system",
        "hhni_001",
        "--latency-ms",
        "2",
    ];
    let first = start(&path, &namespace, &worker, "simulated systems serving");

    let config = Config::load(&path, Vec::new()).unwrap();
    let codec = Codec::new(config.decode_limits());
    let client = std::sync::Arc::new(
        BusClient::connect(&config.amqp().url, &namespace, codec)
            .await
            .unwrap(),
    );
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests: Vec<_> = (0..MESSAGES)
        .map(|n| {
            let (client, answered) = (client.clone(), answered.clone());
            tokio::spawn(async move {
                let payload = json!({"n": n}).as_object().unwrap().clone();
                let request =
                    IntegrationMessage::new("cmc_001", "hhni_001", "data_request", payload);
                let reply = client
                    .request(request, Format::Json, Duration::from_secs(120))
                    .await;
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                reply.map(|r| r.outcome)
            })
        })
        .collect();
    while answered.load(std::sync::atomic::Ordering::Relaxed) < MESSAGES / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = answered.load(std::sync::atomic::Ordering::Relaxed);
    let second = start(&path, &namespace, &worker, "simulated systems serving");
    let mut delivered = 0;
    let mut failed = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(outcome) if outcome == "ok" => delivered += 1,
            _ => failed += 1,
        }
    }
    let dead_lettered = {
        let connection = Connection::connect(&config.amqp().url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = Names::new(&namespace).dead_letter_queue();
        let declared = channel
            .queue_declare(queue.into(), passive, Default::default())
            .await;
        declared.unwrap().message_count()
    };
    // Each worker process filters duplicates in its own memory; the restarted one starts
    // empty, so redeliveries of what the killed one had not acknowledged are handled again.
    println!(
        "fault consumer-killed: sent {MESSAGES}, confirmed {MESSAGES}, delivered {delivered}, duplicates filtered 0, dead-lettered {dead_lettered}, lost {failed} (killed after {killed_at} replies)"
    );
    common::terminate(second);
    common::terminate(serve);
    remove_namespace(&config, &namespace).await;
    assert!(killed_at < MESSAGES, "the worker was killed mid-stream");
    assert_eq!((delivered, failed, dead_lettered), (MESSAGES, 0, 0));
}

/// `aimbus dlq list --json` shows a dead letter with its reason; `aimbus dlq replay --all`
/// sends it back to the ingress (where, its target still unknown, it dies again).
#[tokio::test(flavor = "multi_thread")]
async fn dlq_commands_list_and_replay_dead_letters() {
    let namespace = format!("aimbus-dlq-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = shipped_config();
    let serve = start(&path, &namespace, &["serve"], "aimbus is serving");
    let config = Config::load(&path, Vec::new()).unwrap();
    let codec = Codec::new(config.decode_limits());
    let client = BusClient::connect(&config.amqp().url, &namespace, codec)
        .await
        .unwrap();
    let payload = json!({"q": 1}).as_object().unwrap().clone();
    let lost = IntegrationMessage::new("cmc_001", "nobody_001", "status_update", payload);
    client.send(&lost, Format::Json).await.unwrap();

    let dlq = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_aimbus"))
            .arg("--config")
            .arg(&path)
            .arg("dlq")
            .args(args)
            .env("AIMBUS_AMQP__NAMESPACE", &namespace)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let mut listed = Vec::new();
    for _ in 0..100 {
        let output = dlq(&["list", "--json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["message_id"], lost.message_id.as_str());
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unknown_target: ")
    );
    let table = String::from_utf8_lossy(&dlq(&["list"]).stdout).into_owned();
    assert!(
        table.contains(&lost.message_id) && table.contains("1 dead letters"),
        "{table}"
    );

    let replayed = dlq(&["replay", "--id", &lost.message_id]);
    assert!(replayed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&replayed.stdout).trim(),
        "replayed 1 dead letters to the ingress"
    );
    common::terminate(serve);
    remove_namespace(&config, &namespace).await;
}

/// One message posted over HTTP and delivered over RabbitMQ to a simulated system is one
/// trace, as a real OTLP receiver gets it from both processes: the caller's
/// `traceparent` continued by the gateway, then route → attempt → publish, then the
/// system's process span (a child of the publish, across the broker) → its reply's
/// publish. A message sent with `Prefer: respond-async` crosses the ingress queue the
/// same way, and reaches its system's queue with `traceparent`, `tracestate` and
/// `baggage` in its headers.
#[tokio::test(flavor = "multi_thread")]
async fn one_message_is_one_trace_across_http_and_rabbitmq() {
    use aimbus_telemetry::receiver::{ReceivedSpan, Receiver};

    let receiver = Receiver::start().unwrap();
    let endpoint = receiver.endpoint();
    // Pointed at the receiver (on a port of its own) by OpenTelemetry's own variables, as
    // a user of any OpenTelemetry SDK would.
    let exporting = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=e2e,team=aim%20os",
        ),
        ("AIMBUS_TELEMETRY__EXPORT_INTERVAL_MS", "100"),
    ];
    let stack = Stack::start("trace", &["--system", "hhni_001"], &exporting);
    let (gateway, namespace) = (&stack.gateway, &stack.namespace);
    let token = mint(&stack.path, "cmc_001", "publisher");
    let http = reqwest::Client::new();
    let post = |message: &serde_json::Value, trace_id: &str, respond_async: bool| {
        let mut request = http
            .post(format!("{gateway}/api/v1/messages"))
            .bearer_auth(&token)
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .header("tracestate", "vendor=opaque")
            .header("baggage", "tenant=aimos-test")
            .json(message);
        if respond_async {
            request = request.header("Prefer", "respond-async");
        }
        request.send()
    };

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let message_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "message_id": message_id,
        "source_system": "cmc_001", "target_system": "hhni_001",
        "message_type": "data_request", "payload": {"query": "traced"},
    });
    let response = post(&message, &trace_id, false).await.unwrap();
    assert_eq!(response.status(), 200);

    let in_trace = |spans: &[ReceivedSpan], id: &str| -> Vec<ReceivedSpan> {
        spans.iter().filter(|s| s.trace_id == id).cloned().collect()
    };
    let spans = receiver.wait_for(Duration::from_secs(30), |spans| {
        in_trace(spans, &trace_id).len() >= 6
    });
    let spans = in_trace(&spans, &trace_id);
    let find = |kind: &str, name: &str| -> ReceivedSpan {
        spans
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("no {kind} span `{name}` in {spans:#?}"))
            .clone()
    };
    let server = find("server", "POST /api/v1/messages");
    let route = find("internal", "route data_request");
    let attempt = find("internal", "attempt hhni_001");
    let publish = find("producer", &format!("publish {namespace}.deliver"));
    let process = find("consumer", &format!("process {namespace}.system.hhni_001"));
    let answer = spans
        .iter()
        .find(|s| s.kind == "producer" && s.parent_span_id == process.span_id)
        .unwrap_or_else(|| panic!("no reply publish under the system's span: {spans:#?}"));

    // Parentage, across the broker and the two processes.
    assert_eq!(server.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(route.parent_span_id, server.span_id);
    assert_eq!(attempt.parent_span_id, route.span_id);
    assert_eq!(publish.parent_span_id, attempt.span_id);
    assert_eq!(process.parent_span_id, publish.span_id);
    assert_eq!(server.service_name, "aimbus");
    assert_eq!(publish.service_name, "aimbus");
    assert_eq!(process.service_name, "aimbus-systems");
    assert_eq!(answer.service_name, "aimbus-systems");
    // The bus names its node in its resource; the systems' process is no node.
    let node = server.resource.get("service.instance.id");
    assert!(
        node.is_some_and(|id| !id.is_empty()),
        "{:?}",
        server.resource
    );
    assert_eq!(publish.resource.get("service.instance.id"), node);
    assert!(!process.resource.contains_key("service.instance.id"));
    for span in [&server, &process] {
        let environment = span.resource.get("deployment.environment");
        assert_eq!(
            environment.map(String::as_str),
            Some("e2e"),
            "{:?}",
            span.resource
        );
        assert_eq!(
            span.resource.get("team").map(String::as_str),
            Some("aim os")
        );
    }
    // The caller's tracestate travels with the context, over HTTP and AMQP alike.
    assert_eq!(server.trace_state, "vendor=opaque");
    assert_eq!(process.trace_state, "vendor=opaque");
    assert!(spans.iter().all(|s| !s.failed), "{spans:#?}");

    // Attributes: HTTP and messaging conventions, and the router's decisions; what the
    // conventions type as int is exported as one.
    assert_eq!(server.int_attribute("http.response.status_code"), Some(200));
    assert_eq!(
        attempt.int_attribute("aimbus.attempt"),
        route.int_attribute("aimbus.attempts")
    );
    assert!(
        process
            .int_attribute("messaging.rabbitmq.message.delivery_tag")
            .is_some(),
        "{process:#?}"
    );
    let expect = |span: &ReceivedSpan, pairs: &[(&str, &str)]| {
        for (key, value) in pairs {
            assert_eq!(span.attribute(key), Some(*value), "{key} on {span:#?}");
        }
    };
    expect(
        &server,
        &[
            ("http.request.method", "POST"),
            ("http.route", "/api/v1/messages"),
            ("url.path", "/api/v1/messages"),
            ("http.response.status_code", "200"),
        ],
    );
    expect(
        &route,
        &[
            ("aimbus.message_id", message_id.as_str()),
            ("aimbus.message_type", "data_request"),
            ("aimbus.source_system", "cmc_001"),
            ("aimbus.target_system", "hhni_001"),
            ("aimbus.served_by", "hhni_001"),
            ("aimbus.outcome", "delivered"),
        ],
    );
    expect(
        &attempt,
        &[
            // The attempt that delivered is the last (one may have found the system
            // not yet taking traffic, before its first health check).
            (
                "aimbus.attempt",
                route.attribute("aimbus.attempts").unwrap(),
            ),
            ("aimbus.system_id", "hhni_001"),
            ("aimbus.breaker.state", "closed"),
        ],
    );
    let deliver = format!("{namespace}.deliver");
    expect(
        &publish,
        &[
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", deliver.as_str()),
            (
                "messaging.rabbitmq.destination.routing_key",
                "hhni.hhni_001",
            ),
        ],
    );
    let system_queue = format!("{namespace}.system.hhni_001");
    expect(
        &process,
        &[
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.type", "process"),
            ("messaging.destination.name", system_queue.as_str()),
        ],
    );

    // Enqueued over HTTP with a reply_to: the trace crosses the ingress queue, reaches
    // the system, and its context (baggage too) comes back with the reply.
    let (_connection, channel, replies) = stack.replies_queue().await;
    let queued_trace = uuid::Uuid::new_v4().simple().to_string();
    let mut queued = message.clone();
    queued["message_id"] = json!(uuid::Uuid::new_v4().to_string());
    queued["reply_to"] = json!(replies);
    // Another question: the same one would be answered from the response cache.
    queued["payload"] = json!({"query": "traced, queued"});
    let response = post(&queued, &queued_trace, true).await.unwrap();
    assert_eq!(response.status(), 202);
    let answer = next_message(&channel, &replies).await;
    let header = |name: &str| aimbus_amqp::envelope::header(&answer.delivery.properties, name);
    let traceparent = header("traceparent").expect("the reply carries its trace context");
    assert!(
        traceparent.starts_with(&format!("00-{queued_trace}-")),
        "{traceparent}"
    );
    assert_eq!(header("tracestate").as_deref(), Some("vendor=opaque"));
    assert_eq!(header("baggage").as_deref(), Some("tenant=aimos-test"));

    // Each process exports on its own: wait for the last span of each (the ingress's
    // ends after the reply it publishes).
    let ingress_span = format!("process {namespace}.ingress");
    let spans = receiver.wait_for(Duration::from_secs(30), |spans| {
        let spans = in_trace(spans, &queued_trace);
        spans.iter().any(|s| s.name == ingress_span)
            && spans
                .iter()
                .any(|s| s.service_name == "aimbus-systems" && s.kind == "consumer")
    });
    let spans = in_trace(&spans, &queued_trace);
    let child_of = |parent: &ReceivedSpan, kind: &str| -> ReceivedSpan {
        spans
            .iter()
            .find(|s| s.parent_span_id == parent.span_id && s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} child of {parent:#?} in {spans:#?}"))
            .clone()
    };
    let server = spans.iter().find(|s| s.kind == "server").unwrap();
    let enqueue = child_of(server, "producer");
    assert_eq!(enqueue.name, format!("publish {namespace}.ingress"));
    let ingress = child_of(&enqueue, "consumer");
    assert_eq!(ingress.name, ingress_span);
    let route = child_of(&ingress, "internal");
    assert_eq!(route.name, "route data_request");
    let attempt = child_of(&route, "internal");
    let deliver = child_of(&attempt, "producer");
    let process = child_of(&deliver, "consumer");
    assert_eq!(process.service_name, "aimbus-systems");
    assert_eq!(process.trace_state, "vendor=opaque");

    stack.stop().await;
}

/// `aimbus systems ping` asks workers directly: a simulated system answers healthy, a
/// system nobody serves fails the command.
#[tokio::test(flavor = "multi_thread")]
async fn systems_ping_asks_the_workers_themselves() {
    // The bus declares the delivery exchange the checks are published to.
    let stack = Stack::start("ping", &["--system", "hhni_001"], &[]);
    let ping = |args: &[&str]| {
        common::aimbus_command()
            .arg("--config")
            .arg(&stack.path)
            .args(["systems", "ping"])
            .args(args)
            .env("AIMBUS_AMQP__NAMESPACE", &stack.namespace)
            .output()
            .unwrap()
    };
    let healthy = ping(&["--system", "hhni_001"]);
    assert!(healthy.status.success(), "{healthy:?}");
    assert_eq!(String::from_utf8_lossy(&healthy.stdout), "hhni_001 ok\n");
    let unserved = ping(&[
        "--system",
        "hhni_001",
        "--system",
        "vif_001",
        "--timeout-ms",
        "1000",
    ]);
    assert_eq!(unserved.status.code(), Some(1), "{unserved:?}");
    let stdout = String::from_utf8_lossy(&unserved.stdout);
    assert!(stdout.starts_with("hhni_001 ok\nvif_001 "), "{unserved:?}");
    stack.stop().await;
}

/// `serve` stopped mid-stream, by SIGTERM and then by SIGKILL, and started again: every
/// confirmed message reaches its system. After SIGTERM none is forwarded twice (the
/// ingress drained: what it finished was acknowledged); after SIGKILL a message whose
/// ack died with the process is forwarded again, and the system's window filters it.
#[tokio::test(flavor = "multi_thread")]
async fn serve_stopped_mid_stream_by_sigterm_or_sigkill_loses_nothing() {
    const MESSAGES: usize = 5_000;
    // One source sends the whole stream; its rate limit would only make it slower.
    let env = [("AIMBUS_RATE_LIMITING__ENABLE_RATE_LIMITING", "false")];
    let mut stack = Stack::start("drain", &["--system", "hhni_001"], &env);
    // A tap bound as hhni_001's queue is: a copy of every forward, removed with the
    // namespace.
    let (_connection, channel, tap) = stack.replies_queue().await;
    let names = Names::new(&stack.namespace);
    channel
        .queue_bind(
            tap.as_str().into(),
            names.deliver().into(),
            "hhni.hhni_001".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let client = std::sync::Arc::new(
        BusClient::connect(
            &stack.config.amqp().url,
            &stack.namespace,
            stack.config.codec(),
        )
        .await
        .unwrap(),
    );
    let mut forwards = std::collections::HashMap::<String, usize>::new();
    for signal in ["TERM", "KILL"] {
        let confirmed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let publishing = {
            let (client, confirmed) = (
                std::sync::Arc::clone(&client),
                std::sync::Arc::clone(&confirmed),
            );
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..MESSAGES {
                    let payload = json!({"n": n}).as_object().unwrap().clone();
                    let message =
                        IntegrationMessage::new("cmc_001", "hhni_001", "status_update", payload);
                    client.send(&message, Format::MessagePack).await.unwrap();
                    ids.push(message.message_id);
                    confirmed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                ids
            })
        };
        while confirmed.load(std::sync::atomic::Ordering::SeqCst) < MESSAGES / 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid = stack.serve.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = stack.serve.wait().unwrap();
        if signal == "TERM" {
            assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");
        }
        stack.serve = start_with(
            &stack.path,
            &stack.namespace,
            &["serve"],
            "aimbus is serving",
            &env,
        );
        let ids = publishing.await.unwrap();
        for _ in 0..1_200 {
            while let Some(copy) = channel
                .basic_get(
                    tap.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap()
            {
                if let Some(id) = copy.delivery.properties.message_id() {
                    *forwards.entry(id.as_str().to_owned()).or_default() += 1;
                }
            }
            if ids.iter().all(|id| forwards.contains_key(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lost = ids.iter().filter(|id| !forwards.contains_key(*id)).count();
        let twice: usize = ids
            .iter()
            .map(|id| forwards.get(id).copied().unwrap_or(1).saturating_sub(1))
            .sum();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let dead = channel
            .queue_declare(
                names.dead_letter_queue().as_str().into(),
                passive,
                Default::default(),
            )
            .await
            .unwrap()
            .message_count();
        println!(
            "fault serve-sig{}: sent {MESSAGES}, confirmed {}, delivered {}, forwarded twice {twice}, dead-lettered {dead}, lost {lost}",
            signal.to_lowercase(),
            ids.len(),
            ids.len() - lost,
        );
        assert_eq!((lost, dead), (0, 0), "after SIG{signal}");
        if signal == "TERM" {
            assert_eq!(twice, 0, "a drained bus forwards nothing twice");
        }
    }
    stack.stop().await;
}

/// PostgreSQL (a server of the test's own) stopped while the bus runs: registrations are
/// answered 503 with `Retry-After` and commit nothing, reads and routing keep serving from
/// memory, and once the server is back registrations are accepted again.
#[tokio::test(flavor = "multi_thread")]
async fn with_postgres_away_writes_answer_503_and_routing_keeps_serving() {
    let postgres = aimbus_store::testing::PrivatePostgres::start();
    let database = aimbus_store::testing::ScratchDatabase::create_on(&postgres.admin_url())
        .await
        .unwrap();
    let store = [("AIMBUS_REGISTRY__DATABASE_URL", database.url())];
    let stack = Stack::start("pg-away", &["--system", "hhni_001"], &store);
    let admin = mint(&stack.path, "ops", "admin");
    let publisher = mint(&stack.path, "cmc_001", "publisher");
    let http = &reqwest::Client::new();
    let (gateway, admin, publisher) = (&stack.gateway, &admin, &publisher);
    let route = || async move {
        let message = json!({
            "message_id": uuid::Uuid::new_v4().to_string(),
            "source_system": "cmc_001", "target_system": "hhni_001",
            "message_type": "data_request", "payload": {"query": "while the store is away"},
        });
        http.post(format!("{gateway}/api/v1/messages"))
            .bearer_auth(publisher)
            .json(&message)
            .send()
            .await
            .unwrap()
            .status()
    };
    let register = |id: &'static str| async move {
        let system = json!({
            "system_id": id, "system_type": "hhni", "name": id, "version": "1.0.0",
            "capabilities": ["search"], "interfaces": {"amqp": format!("{{namespace}}.system.{id}")},
        });
        http.post(format!("{gateway}/api/v1/systems"))
            .bearer_auth(admin)
            .json(&system)
            .send()
            .await
            .unwrap()
    };
    // Routed once the bus has seen the system answer its first health check.
    let started = std::time::Instant::now();
    while route().await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "hhni_001 never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(register("before_001").await.status(), 201);

    postgres.stop();
    for attempt in 0..3 {
        let refused = register("during_001").await;
        assert_eq!(refused.status(), 503, "attempt {attempt}");
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");
        let problem: serde_json::Value = refused.json().await.unwrap();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("store-unavailable"),
            "{problem}"
        );
    }
    let read = http
        .get(format!("{gateway}/api/v1/systems/before_001"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reads keep serving from memory");
    for _ in 0..5 {
        assert_eq!(route().await, 200, "routing keeps serving");
    }

    postgres.start_again();
    let back = std::time::Instant::now();
    loop {
        let status = register("during_001").await.status();
        if status == 201 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "writes never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "registrations accepted again {:?} after PostgreSQL returned",
        back.elapsed()
    );
    stack.stop().await;
}

/// Three `serve` nodes on one PostgreSQL and one broker compete on the ingress; one is
/// SIGKILLed mid-stream of 10,000 messages. Its unacknowledged deliveries go back to the
/// queue and the other nodes route them: nothing is lost, and the system (served here on
/// the SDK, which deduplicates by `message_id`) handles each message once.
#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_one_killed_mid_stream_lose_nothing_and_each_message_is_handled_once() {
    const MESSAGES: usize = 10_000;
    let database = aimbus_store::testing::ScratchDatabase::create()
        .await
        .unwrap();
    let namespace = format!("aimbus-cluster-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = shipped_config();
    let env = |node: &'static str| {
        [
            ("AIMBUS_REGISTRY__DATABASE_URL", database.url().to_owned()),
            ("AIMBUS_CLUSTER__NODE_ID", node.to_owned()),
            (
                "AIMBUS_RATE_LIMITING__ENABLE_RATE_LIMITING",
                "false".to_owned(),
            ),
            // The system runs in this test, without the bus's keyring.
            ("AIMBUS_SECURITY__ENABLE_ENCRYPTION", "false".to_owned()),
        ]
    };
    let mut nodes = Vec::new();
    for node in ["node-a", "node-b", "node-c"] {
        let env = env(node);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (child, gateway) =
            start_logging(&path, &namespace, &["serve"], "aimbus is serving", &env);
        nodes.push((child, gateway.expect("serve logs its gateway")));
    }
    let overrides: Vec<(String, String)> = env("test")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([("AIMBUS_AMQP__NAMESPACE".to_owned(), namespace.clone())])
        .collect();
    let config = Config::load(&path, overrides).unwrap();
    let systems = SystemsFile::load(&config.systems_file()).unwrap();
    let hhni = systems.registry().get("hhni_001").unwrap().clone();

    let handled = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    let options = aimbus_client::WorkerOptions {
        amqp: config.amqp().clone(),
        prefetch: 64,
        keyring: None,
    };
    let worker = aimbus_client::SystemWorker::connect(hhni, options, config.codec())
        .await
        .unwrap();
    let stats = worker.stats();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let serving = {
        let handled = std::sync::Arc::clone(&handled);
        tokio::spawn(worker.serve_until(
            move |message: IntegrationMessage| {
                *handled
                    .lock()
                    .unwrap()
                    .entry(message.message_id)
                    .or_default() += 1;
                async { Ok(serde_json::Map::new()) }
            },
            stopping,
        ))
    };

    let client = BusClient::connect(&config.amqp().url, &namespace, config.codec())
        .await
        .unwrap();
    let mut ids = Vec::with_capacity(MESSAGES);
    for n in 0..MESSAGES {
        let payload = json!({"n": n}).as_object().unwrap().clone();
        let message = IntegrationMessage::new("cmc_001", "hhni_001", "status_update", payload);
        client.send(&message, Format::MessagePack).await.unwrap();
        ids.push(message.message_id);
        if n == MESSAGES / 3 {
            let (mut child, _) = nodes.remove(1);
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    let started = std::time::Instant::now();
    let lost = loop {
        let lost = {
            let handled = handled.lock().unwrap();
            ids.iter().filter(|id| !handled.contains_key(*id)).count()
        };
        if lost == 0 || started.elapsed() > Duration::from_secs(120) {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let twice = handled.lock().unwrap().values().filter(|n| **n > 1).count();
    let duplicates = stats.duplicates.load(std::sync::atomic::Ordering::Relaxed);
    // Each surviving node routed a share of the stream.
    let http = reqwest::Client::new();
    let mut routed_by = Vec::new();
    for (_, gateway) in &nodes {
        let metrics = scrape(&http, &format!("http://{gateway}")).await;
        let routed: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("aimbus_messages_routed_total{")
                    && l.contains("outcome=\"delivered\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        routed_by.push(routed as u64);
    }
    println!(
        "fault cluster-sigkill: nodes 3, killed 1 after {} messages, sent {MESSAGES}, confirmed {}, handled {}, handled twice {twice}, redeliveries filtered {duplicates}, routed by the survivors {routed_by:?}, lost {lost}",
        MESSAGES / 3 + 1,
        ids.len(),
        ids.len() - lost,
    );
    assert_eq!(lost, 0);
    assert_eq!(twice, 0, "the system handles each message once");
    assert!(
        routed_by.iter().all(|n| *n > 0),
        "both survivors routed: {routed_by:?}"
    );

    stop.send(true).unwrap();
    serving.await.unwrap().unwrap();
    for (child, _) in nodes {
        common::terminate(child);
    }
    remove_namespace(&config, &namespace).await;
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Over gRPC end to end, as a user runs it: `serve` with its gRPC API on and `grpc` first
/// in the interface preference, HHNI simulated by `systems simulate --transport grpc` on
/// its `grpc` interface. A `Bus/Request` whose metadata carries a `traceparent` comes back
/// with HHNI's answer, and the real OTLP receiver gets one trace across both processes:
/// the API's server span → route → attempt → the call to the system → the system's own
/// server span; and the health monitor judges HHNI through `grpc.health.v1`.
#[tokio::test(flavor = "multi_thread")]
async fn one_message_is_one_trace_over_grpc() {
    use aimbus_grpc::pb;
    use aimbus_telemetry::receiver::{ReceivedSpan, Receiver};

    let receiver = Receiver::start().unwrap();
    let endpoint = receiver.endpoint();
    let api = format!("127.0.0.1:{}", free_port());
    let hhni = format!("127.0.0.1:{}", free_port());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("AIMBUS_TELEMETRY__EXPORT_INTERVAL_MS", "100"),
        ("AIMBUS_GATEWAY__GRPC_LISTEN", api.as_str()),
        (
            "AIMBUS_TRANSPORTS__INTERFACE_PREFERENCE",
            r#"["grpc", "amqp"]"#,
        ),
        ("AIMBUS_MONITORING__HEALTH_CHECK_INTERVAL_SECONDS", "1"),
    ];
    let simulated = ["--system", "hhni_001", "--transport", "grpc"];
    let stack = Stack::start_with_systems("grpc", &simulated, &env, |systems| {
        systems.replace(r#"grpc = "localhost:8004""#, &format!(r#"grpc = "{hhni}""#))
    });
    let token = mint(&stack.path, "cmc_001", "publisher");
    let mut bus = pb::bus_client::BusClient::connect(format!("http://{api}"))
        .await
        .unwrap();
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let payload = json!({"query": "traced over grpc"});
    let sent = IntegrationMessage::new(
        "cmc_001",
        "hhni_001",
        "data_request",
        payload.as_object().unwrap().clone(),
    );
    let mut request = tonic::Request::new(aimbus_grpc::to_proto(&sent));
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    metadata.insert("traceparent", traceparent.parse().unwrap());
    let reply = bus.request(request).await.unwrap().into_inner();
    let reply = aimbus_grpc::from_proto(reply, 32).unwrap();
    assert_eq!(reply.source_system, "hhni_001");
    assert_eq!(
        reply.correlation_id.as_deref(),
        Some(sent.message_id.as_str())
    );

    let in_trace = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    };
    let spans = receiver.wait_for(Duration::from_secs(30), |spans| in_trace(spans).len() >= 5);
    let spans = in_trace(&spans);
    let find = |kind: &str, name: &str, service: &str| -> ReceivedSpan {
        spans
            .iter()
            .find(|s| s.kind == kind && s.name == name && s.service_name == service)
            .unwrap_or_else(|| panic!("no {kind} span `{name}` of {service} in {spans:#?}"))
            .clone()
    };
    let server = find("server", "aimbus.v1.Bus/Request", "aimbus");
    let route = find("internal", "route data_request", "aimbus");
    let attempt = find("internal", "attempt hhni_001", "aimbus");
    let call = find("client", "aimbus.v1.System/Deliver", "aimbus");
    let system = find("server", "aimbus.v1.System/Deliver", "aimbus-systems");
    assert_eq!(server.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(route.parent_span_id, server.span_id);
    assert_eq!(attempt.parent_span_id, route.span_id);
    assert_eq!(call.parent_span_id, attempt.span_id);
    assert_eq!(system.parent_span_id, call.span_id);
    assert_eq!(call.attribute("rpc.system"), Some("grpc"));
    assert_eq!(call.int_attribute("rpc.grpc.status_code"), Some(0));
    assert_eq!(server.int_attribute("rpc.grpc.status_code"), Some(0));

    // Checked through the standard health service, HHNI is healthy; the systems nobody
    // serves are not.
    let http = reqwest::Client::new();
    let status = |id: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v1/systems/{id}", stack.gateway);
        let token = mint(&stack.path, "ops_001", "readonly");
        async move {
            let system: serde_json::Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            system["status"].as_str().unwrap_or_default().to_owned()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (hhni, cmc) = (status("hhni_001").await, status("cmc_001").await);
        if hhni == "healthy" && cmc != "healthy" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hhni_001 {hhni}, cmc_001 {cmc}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop().await;
}

/// The gRPC contract holds for any language: a system written with Python's grpcio (its
/// code generated by grpcio-tools from the repository's proto file), registered with a
/// `grpc` interface, gets a message routed to it from the HTTP gateway, with the trace
/// context in its metadata and its refusal passed back as one; and a Python client calls
/// `Bus/Request`.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpc_system_and_client_speak_the_contract() {
    const SCRIPT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/grpc_system.py"
    );
    const PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let has_grpc = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_health"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_grpc {
        // `.ci/run` installs them; elsewhere, say so rather than fail.
        assert!(std::env::var_os("CI").is_none(), "python3 lacks grpcio");
        eprintln!("skipped: pip install grpcio grpcio-tools grpcio-health-checking");
        return;
    }
    let port = free_port().to_string();
    let (_python, _) = common::spawn_until(
        Command::new("python3").args([SCRIPT, "serve", PROTO, &port]),
        "serving",
        Duration::from_secs(60),
        |_| {},
    );
    let api = format!("127.0.0.1:{}", free_port());
    let namespace = format!("aimbus-pygrpc-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = shipped_config();
    let env = [("AIMBUS_GATEWAY__GRPC_LISTEN", api.as_str())];
    let (serve, gateway) = start_logging(&path, &namespace, &["serve"], "aimbus is serving", &env);
    let gateway = format!("http://{}", gateway.unwrap());
    let http = reqwest::Client::new();

    let system = json!({
        "system_id": "py_001", "system_type": "python_echo", "name": "Python echo",
        "version": "1.0.0", "interfaces": {"grpc": format!("127.0.0.1:{port}")},
    });
    let registered = http
        .post(format!("{gateway}/api/v1/systems"))
        .bearer_auth(mint(&path, "ops_001", "admin"))
        .json(&system)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let publisher = mint(&path, "cmc_001", "publisher");
    let post = |payload: serde_json::Value| {
        http.post(format!("{gateway}/api/v1/messages"))
            .bearer_auth(&publisher)
            .json(&json!({
                "message_id": uuid::Uuid::new_v4().to_string(),
                "source_system": "cmc_001", "target_system": "py_001",
                "message_type": "data_request", "payload": payload,
            }))
            .send()
    };
    let answered = post(json!({"query": "over http, to python", "n": 2}))
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let reply: serde_json::Value = answered.json().await.unwrap();
    assert_eq!(reply["source_system"], "py_001");
    assert_eq!(reply["payload"]["served_by"], "python");
    assert_eq!(reply["payload"]["echo"]["n"], 2);
    let traceparent = reply["payload"]["traceparent"].as_str().unwrap();
    assert!(traceparent.starts_with("00-"), "{reply}");
    let refused = post(json!({"refuse": true})).await.unwrap();
    assert_eq!(refused.status(), 422, "INVALID_ARGUMENT is a refusal");
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("python refuses this"),
        "{problem}"
    );

    let output = Command::new("python3")
        .args([
            SCRIPT, "request", PROTO, &api, &publisher, "cmc_001", "py_001",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["source_system"], "py_001");
    assert_eq!(answer["correlation_id"], answer["request_id"]);
    assert_eq!(answer["payload"]["served_by"], "python");
    assert_eq!(answer["payload"]["echo"]["n"], 7.0);
    common::terminate(serve);
    remove_namespace(&Config::load(&path, Vec::new()).unwrap(), &namespace).await;
}

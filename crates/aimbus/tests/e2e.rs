//! The whole bus as a user runs it: `aimbus serve` and `aimbus systems simulate --all`
//! as processes on the real broker, and a client that publishes to the ingress.

use std::process::{Child, Command};
use std::time::Duration;

use aimbus_amqp::{Names, topology};
use aimbus_client::BusClient;
use aimbus_core::{Codec, Config, Format, IntegrationMessage, SystemsFile};
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

mod common;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/aimbus.toml");
const SHIPPED_SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/systems.toml");

/// The shipped configuration, with the systems' queues moved into `namespace`.
fn config_in(namespace: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(SHIPPED, dir.path().join("aimbus.toml")).unwrap();
    let systems = std::fs::read_to_string(SHIPPED_SYSTEMS).unwrap().replace(
        "amqp = \"aimbus.system.",
        &format!("amqp = \"{namespace}.system."),
    );
    std::fs::write(dir.path().join("systems.toml"), systems).unwrap();
    let path = dir.path().join("aimbus.toml");
    (dir, path)
}

/// Starts `aimbus <args>` in `namespace` and waits for `ready` in its log.
fn start(config: &std::path::Path, namespace: &str, args: &[&str], ready: &str) -> Child {
    start_with(config, namespace, args, ready, &[])
}

fn start_with(
    config: &std::path::Path,
    namespace: &str,
    args: &[&str],
    ready: &str,
    env: &[(&str, &str)],
) -> Child {
    start_logging(config, namespace, args, ready, env).0
}

/// Like `start_with`, also returning the gateway's address if the process logged one.
fn start_logging(
    config: &std::path::Path,
    namespace: &str,
    args: &[&str],
    ready: &str,
    env: &[(&str, &str)],
) -> (Child, Option<String>) {
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
    let namespace = format!("aimbus-http-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = config_in(&namespace);
    let (serve, gateway) = start_logging(&path, &namespace, &["serve"], "aimbus is serving", &[]);
    let gateway = format!(
        "http://{}",
        gateway.expect("serve logs its gateway address")
    );
    let simulate = start(
        &path,
        &namespace,
        &["systems", "simulate", "--all"],
        "simulated systems serving",
    );
    let token = mint(&path, "cmc_001", "publisher");
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

    let config = Config::load(&path, Vec::new()).unwrap();
    let connection = Connection::connect(&config.amqp().url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let replies = format!("{namespace}.http-replies");
    channel
        .queue_declare(
            replies.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
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
    let mut answer = None;
    for _ in 0..400 {
        answer = channel
            .basic_get(
                replies.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if answer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the enqueued message was routed and answered");
    let correlation = answer.delivery.properties.correlation_id().clone().unwrap();
    assert_eq!(correlation.as_str(), later["message_id"].as_str().unwrap());
    let metrics = http
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "aimbus_amqp_publishes_total{outcome=\"confirmed\"}",
        "aimbus_system_requests_total{system_id=\"hhni_001\"}",
        "aimbus_http_requests_total{",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let _ = channel
        .queue_delete(replies.as_str().into(), QueueDeleteOptions::default())
        .await;
    common::terminate(simulate);
    common::terminate(serve);
    remove_namespace(&config, &namespace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_simulated_systems_answer_a_client_over_rabbitmq() {
    let namespace = format!("aimbus-e2e-{}", uuid::Uuid::new_v4().simple());
    let (_dir, path) = config_in(&namespace);
    let serve = start(&path, &namespace, &["serve"], "aimbus is serving");
    let simulate = start(
        &path,
        &namespace,
        &["systems", "simulate", "--all"],
        "simulated systems serving",
    );

    let config = Config::load(&path, Vec::new()).unwrap();
    let codec = Codec::new(config.decode_limits());
    let client = BusClient::connect(&config.amqp().url, &namespace, codec)
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
    common::terminate(simulate);
    common::terminate(serve);

    remove_namespace(&config, &namespace).await;
}

/// Deletes the queues and exchanges of a test's namespace.
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
        .map(|s| names.system_queue(&s.system_id));
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
    let (_dir, path) = config_in(&namespace);
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
    let (_dir, path) = config_in(&namespace);
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

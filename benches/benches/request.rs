//! The request/reply path a user pays for: HTTP `POST /api/v1/messages` → gateway →
//! router → RabbitMQ → an SDK system → its reply → the HTTP answer, 1 KiB payloads with
//! unique ids (no cache or dedup hits), 32 connections in a closed loop. The shipped
//! defaults (authentication, payload encryption, tracing at the default sampling,
//! exported over OTLP to a receiver in the parent process) against the same path with
//! all three off, and each of the three on alone, to tell what each costs; and the
//! defaults with `amqp.persistent_requests` on, against transient requests. Each setting
//! runs in a process of its own (a subscriber is process-wide), the settings in turn.
//! Needs RabbitMQ on 127.0.0.1:5672.
//!
//! Run: `cargo bench -p aimbus-benches --bench request` (`-- --requests N` to resize,
//! `--rounds N` for the runs of each setting).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_amqp::{Names, topology};
use aimbus_bridge::{Bridge, BridgeSecurity};
use aimbus_client::{SystemWorker, WorkerOptions};
use aimbus_core::{Config, IntegrationMessage, Keyring, SystemInfo, new_keyring_text};
use aimbus_gateway::Gateway;
use aimbus_telemetry::Process;
use aimbus_telemetry::receiver::Receiver;
use hdrhistogram::Histogram;
use serde_json::json;

#[path = "support/child.rs"]
mod child;
#[path = "support/gateway.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const CONNECTIONS: usize = 32;

/// Which of the defaults a run has on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    authentication: bool,
    encryption: bool,
    tracing: bool,
    /// `amqp.persistent_requests`: off in the defaults.
    persistent_requests: bool,
}

impl Setting {
    const BARE: Setting = Setting {
        authentication: false,
        encryption: false,
        tracing: false,
        persistent_requests: false,
    };
    const DEFAULTS: Setting = Setting {
        authentication: true,
        encryption: true,
        tracing: true,
        persistent_requests: false,
    };
    /// Each setting's name, in the order of every round.
    const ALL: [(&'static str, Setting); 6] = [
        ("bare", Setting::BARE),
        ("defaults", Setting::DEFAULTS),
        (
            "authentication",
            Setting {
                authentication: true,
                ..Setting::BARE
            },
        ),
        (
            "encryption",
            Setting {
                encryption: true,
                ..Setting::BARE
            },
        ),
        (
            "tracing",
            Setting {
                tracing: true,
                ..Setting::BARE
            },
        ),
        (
            "persistent_requests",
            Setting {
                persistent_requests: true,
                ..Setting::DEFAULTS
            },
        ),
    ];

    fn named(name: &str) -> Setting {
        Setting::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("no setting named {name}"))
    }

    /// The shipped configuration with this setting's three switches, and limits sized
    /// so the bench measures the path rather than refusals.
    fn config(self, namespace: &str, otlp_endpoint: &str) -> Config {
        let toml = format!(
            "[amqp]\nurl = \"{URL}\"\nnamespace = \"{namespace}\"\npersistent_requests = {}\n\
             [security]\nenable_authentication = {}\nenable_encryption = {}\n\
             [monitoring]\nenable_tracing = {}\nhealth_check_interval_seconds = 3600\nlog_level = \"WARN\"\n\
             [telemetry]\notlp_endpoint = \"{otlp_endpoint}\"\n\
             [rate_limiting]\nrate_limit_requests_per_minute = 10000000\nrate_limit_burst_size = 1000000\n\
             [core]\nmax_concurrent_requests = 10000\nmax_concurrent_requests_per_system = 10000\n",
            self.persistent_requests, self.authentication, self.encryption, self.tracing
        );
        Config::from_toml_str("bench", &toml, Vec::new(), ".".into()).unwrap()
    }
}

fn system_info(id: &str, kind: &str, interface: serde_json::Value) -> SystemInfo {
    serde_json::from_value(json!({
        "system_id": id, "system_type": kind, "name": id, "version": "1",
        "interfaces": interface,
    }))
    .unwrap()
}

/// Runs the bus (bridge, router, gateway) on an actix system of its own thread, as
/// `aimbus serve` does; returns the gateway's address once the bridge is connected.
fn start_bus(
    config: Arc<Config>,
    keyring: Option<Arc<Keyring>>,
) -> (String, actix::System, std::thread::JoinHandle<()>) {
    let (ready, connected) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let system = actix::System::new();
        system.block_on(async move {
            let security = BridgeSecurity {
                keyring: keyring.clone(),
                ..BridgeSecurity::default()
            };
            let bridge = Arc::new(Bridge::new(config.amqp(), config.codec(), security));
            let answering = system_info(
                "bench_001",
                "hhni",
                json!({"amqp": bridge.names().system_queue("bench_001")}),
            );
            bridge.declare_systems([&answering]).await.unwrap();
            let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
                .with_interface("amqp", bridge.transport());
            let registry = RegistryHandle::in_memory(&config, transports)
                .await
                .unwrap();
            registry.register(answering).await.unwrap();
            let publisher =
                system_info("cmc_001", "cmc", json!({"rest_api": "http://localhost:1"}));
            registry.register(publisher).await.unwrap();
            let router = RouterHandle::start(Arc::clone(&config), registry.clone())
                .await
                .unwrap();
            bridge.start(router.clone());
            bridge.wait_connected().await;
            let auth = support::authenticator(&config);
            let mut gateway =
                Gateway::new(&config, router, registry, auth).with_bridge(Arc::clone(&bridge));
            if let Some(keyring) = keyring {
                gateway = gateway.with_keyring(keyring);
            }
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap().to_string();
            actix_rt::spawn(aimbus_gateway::run(listener, Arc::new(gateway)).unwrap());
            ready.send((address, actix::System::current())).unwrap();
        });
        system.run().unwrap();
    });
    let (address, system) = connected
        .recv()
        .expect("the bus connects to RabbitMQ on 127.0.0.1:5672");
    (address, system, thread)
}

/// One request with a fresh id and a 1 KiB payload: its latency.
async fn post(client: &reqwest::Client, url: &str, token: Option<&str>, n: usize) -> Duration {
    let body = serde_json::to_vec(&json!({
        "message_id": format!("bench-{}-{n}", std::process::id()),
        "source_system": "cmc_001", "target_system": "bench_001",
        "message_type": "status_update", "payload": {"blob": "x".repeat(1000)},
    }))
    .unwrap();
    let started = Instant::now();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {text}");
    started.elapsed()
}

/// Closed loop: `CONNECTIONS` clients post `n` requests in all, numbered from `first`.
async fn throughput(
    url: &str,
    token: Option<&str>,
    first: usize,
    n: usize,
) -> (f64, Histogram<u64>) {
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + n;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (url, token, next) = (url.to_owned(), token.map(str::to_owned), Arc::clone(&next));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = support::histogram();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break latencies;
                    }
                    let took = post(&client, &url, token.as_deref(), i).await;
                    latencies.saturating_record(took.as_micros() as u64);
                }
            })
        })
        .collect();
    let mut latencies = support::histogram();
    for task in tasks {
        latencies.add(task.await.unwrap()).unwrap();
    }
    (n as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// What one run measured.
#[derive(serde::Serialize, serde::Deserialize)]
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The child's side: one setting's bus, SDK system and load client in this process,
/// the subscriber `aimbus serve` would install for it.
fn request_run(setting: Setting, n: usize, otlp_endpoint: &str) {
    let namespace = format!("aimbus-bench-{}", std::process::id());
    let config = Arc::new(setting.config(&namespace, otlp_endpoint));
    let telemetry = aimbus_telemetry::init(&config, Process::Bus).unwrap();
    let keyring = setting
        .encryption
        .then(|| Arc::new(Keyring::from_toml_str("bench", &new_keyring_text("bench")).unwrap()));
    let (address, bus, bus_thread) = start_bus(Arc::clone(&config), keyring.clone());
    let token = setting
        .authentication
        .then(|| support::publisher_token(&support::authenticator(&config)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = runtime.block_on(async {
        let names = Names::new(&namespace);
        let options = WorkerOptions {
            amqp: config.amqp().clone(),
            prefetch: config.amqp().prefetch,
            keyring,
        };
        let answering = system_info(
            "bench_001",
            "hhni",
            json!({"amqp": names.system_queue("bench_001")}),
        );
        let worker = SystemWorker::connect(answering, options, config.codec())
            .await
            .unwrap();
        let serving = tokio::spawn(
            worker.serve(|message: IntegrationMessage| async move { Ok(message.payload) }),
        );
        let url = format!("http://{address}/api/v1/messages");
        // Warm up (connections, allocator, caches) before measuring.
        throughput(&url, token.as_deref(), 0, 1_000.min(n)).await;
        let (rate, latencies) = throughput(&url, token.as_deref(), 1_000, n).await;
        serving.abort();
        let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1e3;
        Run {
            rate,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    });
    // Stopped first, or its reconnect loop would declare the namespace again.
    bus.stop();
    bus_thread.join().unwrap();
    runtime.block_on(async {
        let names = Names::new(&namespace);
        let connection = lapin::Connection::connect(URL, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology::delete_namespace(&channel, &names, [names.system_queue("bench_001")])
            .await
            .unwrap();
    });
    drop(telemetry);
    child::report("REQUEST_RUN", &run);
}

fn run_in_child(name: &str, n: usize, otlp_endpoint: &str) -> Run {
    let n = n.to_string();
    let args = [
        "--requests",
        &n,
        "--setting",
        name,
        "--otlp-endpoint",
        otlp_endpoint,
    ];
    child::run(&args, "REQUEST_RUN")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().skip_while(|a| *a != name).nth(1);
    let n = arg("--requests").map_or(10_000, |v| v.parse().expect("--requests takes a number"));
    if let (Some(setting), Some(endpoint)) = (arg("--setting"), arg("--otlp-endpoint")) {
        return request_run(Setting::named(setting), n, endpoint);
    }
    let rounds = arg("--rounds").map_or(3, |v| v.parse().expect("--rounds takes a number"));
    let receiver = Receiver::start().unwrap();
    let mut runs: Vec<Vec<Run>> = Setting::ALL.iter().map(|_| Vec::new()).collect();
    // The settings take turns within each round, so drift hits each alike; the medians
    // are compared.
    for _ in 0..rounds {
        for ((name, _), runs) in Setting::ALL.iter().zip(&mut runs) {
            runs.push(run_in_child(name, n, &receiver.endpoint()));
        }
    }
    let medians: Vec<Run> = runs
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            runs.swap_remove(runs.len() / 2)
        })
        .collect();
    println!(
        "{n} requests of 1 KiB over {CONNECTIONS} connections, HTTP → gateway → RabbitMQ → SDK system → reply; median of {rounds}"
    );
    let bare = medians[0].rate;
    let mut result = json!({"bench": "request", "requests": n, "connections": CONNECTIONS});
    for ((name, _), run) in Setting::ALL.iter().zip(&medians) {
        println!(
            "{name:<20} {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   {:>5.3} of bare",
            run.rate,
            run.p50_ms,
            run.p99_ms,
            run.rate / bare
        );
        result[format!("{name}_req_per_sec")] = json!(run.rate);
        result[format!("{name}_p50_ms")] = json!(run.p50_ms);
        result[format!("{name}_p99_ms")] = json!(run.p99_ms);
        if *name == "persistent_requests" {
            // The same defaults with requests written to disk: what transient ones save.
            result["persistent_requests_ratio_to_defaults"] = json!(run.rate / medians[1].rate);
        } else if *name != "bare" && *name != "defaults" {
            // What the default costs alone: the share of the bare path's rate it takes.
            result[format!("{name}_cost_share")] = json!(1.0 - run.rate / bare);
        }
    }
    result["ratio"] = json!(medians[1].rate / bare);
    println!("RESULT {result}");
}

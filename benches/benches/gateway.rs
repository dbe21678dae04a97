//! The gateway (JWT check, bounded read, decode, validate, route to an in-process echo
//! system, encode the reply) against a minimal actix-web handler that deserializes and
//! echoes the same JSON: same server settings (actix-web's defaults: one worker per
//! core), same load client, same run. The load client is a process of its own, so it
//! shares no runtime or allocator with the servers it measures.
//!
//! Run: `cargo bench -p aimbus-benches --bench gateway` (`-- --requests N` to resize).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use aimbus_actors::{
    DeliveryFailure, InProcessTransport, RegistryHandle, Reply, RouterHandle, TransportSet,
};
use aimbus_core::{Config, IntegrationMessage, SystemInfo};
use aimbus_gateway::Gateway;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[path = "support/child.rs"]
mod child;
#[path = "support/gateway.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections posting at once in the throughput phase.
const CONNECTIONS: usize = 32;
/// The fixed rate of the latency phase, and how long it lasts.
const FIXED_RATE: u64 = 1_000;
const FIXED_SECONDS: u64 = 5;
/// The shipped defaults (authentication on), with the limits sized so the bench
/// measures the gateway rather than refusals.
fn config() -> Config {
    let toml = format!("{}[amqp]\nenabled = false\n", support::UNLIMITED);
    Config::from_toml_str("bench", &toml, Vec::new(), ".".into()).unwrap()
}

fn body() -> Vec<u8> {
    // status_update is not cacheable: every request is routed.
    let message = json!({
        "message_id": "bench-1", "source_system": "cmc_001", "target_system": "hhni_001",
        "message_type": "status_update", "payload": {"blob": "x".repeat(894)},
    });
    let body = serde_json::to_vec(&message).unwrap();
    assert!(
        (1000..1100).contains(&body.len()),
        "about 1 KiB: {}",
        body.len()
    );
    body
}

async fn echo(message: Arc<IntegrationMessage>) -> Result<Reply, DeliveryFailure> {
    Ok(Reply::new(message.payload.clone()))
}

async fn minimal_echo(message: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(message.into_inner())
}

/// Starts both servers on an actix system of their own thread; returns their addresses
/// and a token for the gateway.
fn start_servers() -> (String, String, String) {
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix::System::new();
        system.block_on(async move {
            let config = config();
            let systems = Arc::new(InProcessTransport::new());
            let registry =
                RegistryHandle::in_memory(&config, TransportSet::new(Arc::clone(&systems)))
                    .await
                    .unwrap();
            for (id, kind) in [("cmc_001", "cmc"), ("hhni_001", "hhni")] {
                let info: SystemInfo = serde_json::from_value(json!({
                    "system_id": id, "system_type": kind, "name": id, "version": "1",
                    "interfaces": {"rest_api": "http://localhost:1"},
                }))
                .unwrap();
                systems.register(id, echo);
                registry.register(info).await.unwrap();
            }
            let router = RouterHandle::start(Arc::new(config.clone()), registry.clone())
                .await
                .unwrap();
            let auth = support::authenticator(&config);
            let token = support::publisher_token(&auth);
            let gateway = Gateway::new(&config, router, registry, auth);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let gateway_address = listener.local_addr().unwrap().to_string();
            actix_rt::spawn(aimbus_gateway::run(listener, Arc::new(gateway)).unwrap());

            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let minimal_address = listener.local_addr().unwrap().to_string();
            let minimal = HttpServer::new(|| {
                App::new().route("/api/v1/messages", web::post().to(minimal_echo))
            })
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            actix_rt::spawn(minimal);
            ready
                .send((gateway_address, minimal_address, token))
                .unwrap();
        });
        system.run().unwrap();
    });
    started.recv().unwrap()
}

async fn post(client: &reqwest::Client, url: &str, token: &str, body: &[u8]) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap();
    started.elapsed()
}

/// Closed loop: `CONNECTIONS` clients post `n` requests in all; requests per second and
/// the latencies.
async fn throughput(url: &str, token: &str, n: usize) -> (f64, Histogram<u64>) {
    let body = Arc::new(body());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (url, token, body, next) = (
                url.to_owned(),
                token.to_owned(),
                Arc::clone(&body),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = support::histogram();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let took = post(&client, &url, &token, &body).await;
                    latencies.saturating_record(took.as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = support::histogram();
    for task in tasks {
        latencies.add(task.await.unwrap()).unwrap();
    }
    (n as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// Open loop: one request every 1/`FIXED_RATE` s for `FIXED_SECONDS`, each timed alone.
async fn at_fixed_rate(url: &str, token: &str) -> Histogram<u64> {
    let body = Arc::new(body());
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / FIXED_RATE));
    let mut tasks = Vec::new();
    for _ in 0..FIXED_RATE * FIXED_SECONDS {
        ticks.tick().await;
        let (client, url, token, body) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            Arc::clone(&body),
        );
        tasks.push(tokio::spawn(async move {
            post(&client, &url, &token, &body).await
        }));
    }
    let mut latencies = support::histogram();
    for task in tasks {
        latencies.saturating_record(task.await.unwrap().as_micros() as u64);
    }
    latencies
}

/// What the load client measured, for both servers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Measured {
    minimal_rate: f64,
    gateway_rate: f64,
    /// Closed-loop and fixed-rate latencies in µs: p50, p99.
    minimal_closed: (u64, u64),
    gateway_closed: (u64, u64),
    minimal_fixed: (u64, u64),
    gateway_fixed: (u64, u64),
}

/// The client's side: both phases against both servers, in turn.
fn load_client(gateway: &str, minimal: &str, token: &str, n: usize) {
    let quantiles = |h: &Histogram<u64>| (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let measured = runtime.block_on(async {
        // Warm both up (connections, allocator, caches) before measuring.
        throughput(minimal, token, 2_000).await;
        throughput(gateway, token, 2_000).await;
        let (minimal_rate, minimal_latency) = throughput(minimal, token, n).await;
        let (gateway_rate, gateway_latency) = throughput(gateway, token, n).await;
        let minimal_fixed = at_fixed_rate(minimal, token).await;
        let gateway_fixed = at_fixed_rate(gateway, token).await;
        Measured {
            minimal_rate,
            gateway_rate,
            minimal_closed: quantiles(&minimal_latency),
            gateway_closed: quantiles(&gateway_latency),
            minimal_fixed: quantiles(&minimal_fixed),
            gateway_fixed: quantiles(&gateway_fixed),
        }
    });
    child::report("CLIENT", &measured);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().skip_while(|a| *a != name).nth(1);
    let n = arg("--requests").map_or(50_000, |v| v.parse().expect("--requests takes a number"));
    if let (Some(gateway), Some(minimal), Some(token)) =
        (arg("--gateway"), arg("--minimal"), arg("--token"))
    {
        return load_client(gateway, minimal, token, n);
    }
    let (gateway, minimal, token) = start_servers();
    let gateway = format!("http://{gateway}/api/v1/messages");
    let minimal = format!("http://{minimal}/api/v1/messages");
    let n_arg = n.to_string();
    let args = [
        "--requests",
        &n_arg,
        "--gateway",
        &gateway,
        "--minimal",
        &minimal,
        "--token",
        &token,
    ];
    let m: Measured = child::run(&args, "CLIENT");
    let ms = |us: u64| us as f64 / 1e3;
    println!(
        "{n} POSTs of 1 KiB JSON over {CONNECTIONS} connections, the client a process of its own"
    );
    for (name, rate, closed, fixed) in [
        (
            "minimal actix-web",
            m.minimal_rate,
            m.minimal_closed,
            m.minimal_fixed,
        ),
        (
            "aimbus gateway",
            m.gateway_rate,
            m.gateway_closed,
            m.gateway_fixed,
        ),
    ] {
        println!(
            "{name:<18} {rate:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   at {FIXED_RATE} req/s: p50 {:>5.2} ms, p99 {:>5.2} ms",
            ms(closed.0),
            ms(closed.1),
            ms(fixed.0),
            ms(fixed.1)
        );
    }
    let result = json!({
        "bench": "gateway",
        "requests": n,
        "minimal_req_per_sec": m.minimal_rate,
        "gateway_req_per_sec": m.gateway_rate,
        "ratio": m.gateway_rate / m.minimal_rate,
        "minimal_p50_ms": ms(m.minimal_closed.0),
        "minimal_p99_ms": ms(m.minimal_closed.1),
        "gateway_p50_ms": ms(m.gateway_closed.0),
        "gateway_p99_ms": ms(m.gateway_closed.1),
        "fixed_rate_req_per_sec": FIXED_RATE,
        "fixed_minimal_p99_ms": ms(m.minimal_fixed.1),
        "fixed_gateway_p99_ms": ms(m.gateway_fixed.1),
        "fixed_added_p99_ms": ms(m.gateway_fixed.1) - ms(m.minimal_fixed.1),
    });
    println!("RESULT {result}");
}

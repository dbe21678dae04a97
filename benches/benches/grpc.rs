//! The gRPC path: `Bus/Request` to the bus's gRPC API (JWT check, conversion, route) →
//! the gRPC transport → a system served by the SDK's `GrpcSystem` that echoes, against a
//! minimal `tonic` echo of `System/Deliver` called directly by the same client: two gRPC
//! hops against one, 1 KiB payloads, unique message ids, same client, same run. The load
//! client is a process of its own, so it shares no runtime with the servers.
//!
//! Run: `cargo bench -p aimbus-benches --bench grpc` (`-- --requests N --rounds R` to
//! resize; rates are the medians of the rounds, latencies over all of them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_client::GrpcSystem;
use aimbus_core::{Config, IntegrationMessage, SystemInfo};
use aimbus_gateway::{Gateway, GrpcServer, GrpcTransport};
use aimbus_grpc::pb;
use hdrhistogram::Histogram;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[path = "support/child.rs"]
mod child;
#[path = "support/gateway.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Calls in flight at once, each client task on a connection of its own.
const CONNECTIONS: usize = 32;
/// The shipped defaults (authentication on), the limits sized so the bench measures the
/// path rather than refusals, and gRPC the systems' transport.
fn config() -> Config {
    let toml = format!(
        "{}[amqp]\nenabled = false\n[transports]\ninterface_preference = [\"grpc\"]\n",
        support::UNLIMITED
    );
    Config::from_toml_str("bench", &toml, Vec::new(), ".".into()).unwrap()
}

/// The minimal system: answers each message with itself.
struct MinimalEcho;

#[tonic::async_trait]
impl pb::system_server::System for MinimalEcho {
    async fn deliver(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Response<pb::IntegrationMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

/// Starts the SDK's echo system and the minimal echo on a runtime of their own thread,
/// the bus with its gRPC API on an actix system of another; returns the API's and the
/// minimal echo's addresses and a token for the API.
fn start_servers() -> (String, String, String) {
    let (ready, systems_up) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let (system, system_address) = listener().await;
            let (minimal, minimal_address) = listener().await;
            let limits = Config::default().decode_limits();
            let echo = |message: IntegrationMessage| async move { Ok(message.payload) };
            let served =
                GrpcSystem::new("hhni_001", limits).serve(system, echo, std::future::pending());
            tokio::spawn(served);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(pb::system_server::SystemServer::new(MinimalEcho))
                    .serve_with_incoming(aimbus_grpc::incoming(minimal)),
            );
            ready.send((system_address, minimal_address)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (system_address, minimal_address) = systems_up.recv().unwrap();
    let (ready, bus_up) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix::System::new();
        system.block_on(async move {
            let config = config();
            let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
                .with_interface("grpc", Arc::new(GrpcTransport::new(&config)));
            let registry = RegistryHandle::in_memory(&config, transports)
                .await
                .unwrap();
            for (id, kind, address) in [
                ("cmc_001", "cmc", "127.0.0.1:1"),
                ("hhni_001", "hhni", system_address.as_str()),
            ] {
                let info: SystemInfo = serde_json::from_value(json!({
                    "system_id": id, "system_type": kind, "name": id, "version": "1",
                    "interfaces": {"grpc": address},
                }))
                .unwrap();
                registry.register(info).await.unwrap();
            }
            let router = RouterHandle::start(Arc::new(config.clone()), registry.clone())
                .await
                .unwrap();
            let auth = support::authenticator(&config);
            let token = support::publisher_token(&auth);
            let gateway = Arc::new(Gateway::new(&config, router, registry, auth));
            let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let api_address = api.local_addr().unwrap().to_string();
            // Kept for the life of the process: dropping it would stop the API.
            std::mem::forget(GrpcServer::start(api, gateway).unwrap());
            ready.send((api_address, token)).unwrap();
        });
        system.run().unwrap();
    });
    let (api_address, token) = bus_up.recv().unwrap();
    (api_address, minimal_address, token)
}

/// A 1 KiB message with an id of its own.
fn message(n: usize) -> pb::IntegrationMessage {
    // status_update is not cacheable: every request is routed.
    let payload = json!({"blob": "x".repeat(960)});
    let mut message = IntegrationMessage::new(
        "cmc_001",
        "hhni_001",
        "status_update",
        payload.as_object().unwrap().clone(),
    );
    message.message_id = format!("bench-{n}");
    aimbus_grpc::to_proto(&message)
}

/// Which service a load run calls.
#[derive(Clone, Copy)]
enum Target {
    Bus,
    Minimal,
}

/// Closed loop: `CONNECTIONS` clients call `n` times in all; calls per second and the
/// latencies.
async fn throughput(address: &str, target: Target, token: &str, n: usize) -> (f64, Histogram<u64>) {
    let next = Arc::new(AtomicUsize::new(0));
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (next, authorization) = (Arc::clone(&next), authorization.clone());
        tasks.push(async move {
            let mut bus = pb::bus_client::BusClient::new(channel.clone());
            let mut minimal = pb::system_client::SystemClient::new(channel);
            let mut latencies = support::histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return latencies;
                }
                let mut request = Request::new(message(i));
                let started = Instant::now();
                let reply = match target {
                    Target::Bus => {
                        request
                            .metadata_mut()
                            .insert("authorization", authorization.clone());
                        bus.request(request).await
                    }
                    Target::Minimal => minimal.deliver(request).await,
                };
                let reply = reply.unwrap().into_inner();
                assert!(reply.payload.is_some());
                latencies.saturating_record(started.elapsed().as_micros() as u64);
            }
        });
    }
    let started = Instant::now();
    let tasks: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut latencies = support::histogram();
    for task in tasks {
        latencies.add(task.await.unwrap()).unwrap();
    }
    (n as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// What the load client measured, for both paths: calls per second, and p50 and p99 in
/// µs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Measured {
    minimal_rate: f64,
    bus_rate: f64,
    minimal_latency: (u64, u64),
    bus_latency: (u64, u64),
}

/// The middle of `rates` (the mean of the middle two for an even count).
fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    let middle = rates.len() / 2;
    if rates.len() % 2 == 0 {
        (rates[middle - 1] + rates[middle]) / 2.0
    } else {
        rates[middle]
    }
}

/// `rounds` rounds, each measuring both paths, the one that goes first alternating: this
/// machine's noise moves a single run by a third.
fn load_client(bus: &str, minimal: &str, token: &str, n: usize, rounds: usize) {
    let quantiles = |h: &Histogram<u64>| (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let measured = runtime.block_on(async {
        // Warm both up (connections, allocator, caches) before measuring.
        throughput(minimal, Target::Minimal, token, 2_000).await;
        throughput(bus, Target::Bus, token, 2_000).await;
        let (mut minimal_rates, mut bus_rates) = (Vec::new(), Vec::new());
        let (mut minimal_latency, mut bus_latency) = (support::histogram(), support::histogram());
        for round in 0..rounds {
            let mut order = [(minimal, Target::Minimal), (bus, Target::Bus)];
            if round % 2 == 1 {
                order.reverse();
            }
            for (address, target) in order {
                let (rate, latency) = throughput(address, target, token, n).await;
                let (rates, latencies) = match target {
                    Target::Minimal => (&mut minimal_rates, &mut minimal_latency),
                    Target::Bus => (&mut bus_rates, &mut bus_latency),
                };
                rates.push(rate);
                latencies.add(latency).unwrap();
            }
        }
        Measured {
            minimal_rate: median(minimal_rates),
            bus_rate: median(bus_rates),
            minimal_latency: quantiles(&minimal_latency),
            bus_latency: quantiles(&bus_latency),
        }
    });
    child::report("CLIENT", &measured);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().skip_while(|a| *a != name).nth(1);
    let n = arg("--requests").map_or(50_000, |v| v.parse().expect("--requests takes a number"));
    let rounds = arg("--rounds").map_or(3, |v| v.parse().expect("--rounds takes a number"));
    if let (Some(bus), Some(minimal), Some(token)) =
        (arg("--bus"), arg("--minimal"), arg("--token"))
    {
        return load_client(bus, minimal, token, n, rounds);
    }
    let (bus, minimal, token) = start_servers();
    let (n_arg, rounds_arg) = (n.to_string(), rounds.to_string());
    let args = [
        "--requests",
        &n_arg,
        "--rounds",
        &rounds_arg,
        "--bus",
        &bus,
        "--minimal",
        &minimal,
        "--token",
        &token,
    ];
    let m: Measured = child::run(&args, "CLIENT");
    let ms = |us: u64| us as f64 / 1e3;
    println!(
        "{n} calls of 1 KiB over {CONNECTIONS} connections per path and round, medians of {rounds} rounds, the client a process of its own"
    );
    for (name, rate, latency) in [
        ("minimal tonic echo", m.minimal_rate, m.minimal_latency),
        ("aimbus Bus/Request", m.bus_rate, m.bus_latency),
    ] {
        println!(
            "{name:<19} {rate:>8.0} calls/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            ms(latency.0),
            ms(latency.1)
        );
    }
    let result = json!({
        "bench": "grpc",
        "requests": n,
        "rounds": rounds,
        "minimal_calls_per_sec": m.minimal_rate,
        "bus_calls_per_sec": m.bus_rate,
        "ratio": m.bus_rate / m.minimal_rate,
        "minimal_p50_ms": ms(m.minimal_latency.0),
        "minimal_p99_ms": ms(m.minimal_latency.1),
        "bus_p50_ms": ms(m.bus_latency.0),
        "bus_p99_ms": ms(m.bus_latency.1),
    });
    println!("RESULT {result}");
}

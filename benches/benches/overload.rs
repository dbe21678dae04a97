//! Memory under overload: N messages (100,000 by default) published to `<ns>.ingress` for
//! a system that answers each in 100 ms, far slower than they come: the broker holds the
//! backlog, and the bus holds no more than its prefetch, so its memory must stay flat.
//! The baseline is the process's resident memory once the bus and the system are up and
//! one message went through, before the flood; the figure is its peak (sampled every
//! 50 ms) until the last message was handled. The bus, the SDK system and the publisher
//! share the process, so a leak in any of them shows. Needs RabbitMQ on 127.0.0.1:5672.
//!
//! Most of what grows is the two dedup windows (the ingress's forwarded ids, the
//! system's answers) filling up to their bound, `amqp.dedup_window` ids (100,000) and
//! `amqp.dedup_window_mib` each; `--dedup-window N` sets a smaller bound to show the
//! plateau past it.
//!
//! Run: `cargo bench -p aimbus-benches --bench overload` (`-- --messages N` to resize,
//! `--dedup-window N`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::{INGRESS_ROUTING_KEY, Names, Publisher, topology};
use aimbus_bridge::{Bridge, BridgeSecurity};
use aimbus_client::{SystemWorker, WorkerOptions};
use aimbus_core::{Config, Format, IntegrationMessage, SystemInfo};
use lapin::options::QueueDeclareOptions;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// How long the system takes to answer each message.
const HANDLING: Duration = Duration::from_millis(100);
/// Publishes in flight at once, each awaiting its confirm.
const PUBLISHERS: usize = 16;

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn ready_in(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, Default::default())
        .await
        .unwrap()
        .message_count()
}

async fn run(messages: usize, dedup_window: Option<usize>) {
    let namespace = format!("aimbus-overload-{}", uuid_like());
    // One source floods: its rate limit would park the flood in the broker too, but
    // slowly; the bench is after the bus's memory while it works at full speed.
    let window = dedup_window.map_or(String::new(), |n| format!("dedup_window = {n}\n"));
    let toml = format!(
        "[amqp]\nurl = \"{URL}\"\nnamespace = \"{namespace}\"\n{window}\
         [rate_limiting]\nenable_rate_limiting = false\n"
    );
    let config =
        Arc::new(Config::from_toml_str("overload", &toml, Vec::new(), ".".into()).unwrap());
    let codec = config.codec();
    let bridge = Bridge::new(config.amqp(), codec, BridgeSecurity::default());
    let names: Names = bridge.names().clone();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "slow_001", "system_type": "custom_slow", "name": "Slow", "version": "1",
        "interfaces": {"amqp": names.system_queue("slow_001")},
    }))
    .unwrap();
    bridge.declare_systems([&system]).await.unwrap();
    let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
        .with_interface("amqp", bridge.transport());
    let registry = RegistryHandle::in_memory(&config, transports)
        .await
        .unwrap();
    registry.register(system.clone()).await.unwrap();
    let router = RouterHandle::start(Arc::clone(&config), registry)
        .await
        .unwrap();
    let link = bridge.start(router);
    bridge.wait_connected().await;

    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let options = WorkerOptions {
        amqp: config.amqp().clone(),
        ..WorkerOptions::default()
    };
    let prefetch = options.prefetch;
    let worker = SystemWorker::connect(system.clone(), options, codec)
        .await
        .unwrap();
    let serving = tokio::spawn(worker.serve(move |_| {
        let counter = Arc::clone(&counter);
        async move {
            tokio::time::sleep(HANDLING).await;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(serde_json::Map::new())
        }
    }));

    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    let publish = move |n: usize| {
        let payload = json!({"n": n, "pad": "x".repeat(1024)})
            .as_object()
            .unwrap()
            .clone();
        let message = IntegrationMessage::new("cmc_001", "slow_001", "status_update", payload);
        envelope::encode(&codec, Format::MessagePack, &message, &Routing::default()).unwrap()
    };
    // Off the clock: one message through, so the bus sees the system take traffic.
    let (body, properties) = publish(usize::MAX);
    publisher
        .publish(&names.ingress(), INGRESS_ROUTING_KEY, &body, properties)
        .await
        .unwrap();
    while handled.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (publisher, next, ingress) =
                (publisher.clone(), Arc::clone(&next), names.ingress());
            let bodies = publish;
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= messages {
                        return;
                    }
                    let (body, properties) = bodies(n);
                    publisher
                        .publish(&ingress, INGRESS_ROUTING_KEY, &body, properties)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in publishing {
        task.await.unwrap();
    }
    let published_in = started.elapsed();
    // The system's pace bounds the drain; allow it twice over.
    let pace = HANDLING.as_secs_f64() / f64::from(prefetch);
    let deadline = Instant::now() + Duration::from_secs_f64(messages as f64 * pace * 2.0 + 60.0);
    while handled.load(Ordering::Relaxed) < messages + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = started.elapsed();
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed).max(rss_kib());
    let delivered = handled.load(Ordering::Relaxed) - 1;
    let channel = connection.create_channel().await.unwrap();
    let dead_lettered = ready_in(&channel, &names.dead_letter_queue()).await;

    serving.abort();
    link.abort();
    topology::delete_namespace(&channel, &names, [names.system_queue("slow_001")])
        .await
        .unwrap();

    let ratio = peak as f64 / baseline.max(1) as f64;
    println!(
        "overload: {messages} messages published in {published_in:.1?}, {delivered} handled at {:.0} msg/s (a system answering in {HANDLING:?}, {prefetch} at once), {dead_lettered} dead-lettered",
        delivered as f64 / drained_in.as_secs_f64()
    );
    println!(
        "resident memory: {baseline} KiB before the flood, peak {peak} KiB while it drained (x{ratio:.2})"
    );
    println!(
        "RESULT {}",
        json!({
            "bench": "overload",
            "messages": messages,
            "dedup_window": config.amqp().dedup_window,
            "delivered": delivered,
            "dead_lettered": dead_lettered,
            "baseline_rss_kib": baseline,
            "peak_rss_kib": peak,
            "ratio": ratio,
            "published_seconds": published_in.as_secs_f64(),
            "drained_seconds": drained_in.as_secs_f64(),
        })
    );
    assert_eq!(delivered, messages, "every message handled");
    assert_eq!(dead_lettered, 0, "nothing dead-lettered");
}

/// A name part unique to this run.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
}

/// The number after `flag` on the command line.
fn arg(flag: &str) -> Option<usize> {
    std::env::args().skip_while(|a| a != flag).nth(1).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{flag} takes a number"))
    })
}

fn main() {
    let messages = arg("--messages").unwrap_or(100_000);
    actix_rt::System::new().block_on(run(messages, arg("--dedup-window")));
}

//! A routed message (router → breaker → system actor → in-process echo → reply) against a
//! bare actix chain with the same actor hops and no policies, in one process and runtime;
//! then routing with the bus's logging subscriber, with tracing off and on (every message
//! traced and exported over OTLP/gRPC to a receiver in this process), 10% sampled, and
//! on with nothing sampled.
//!
//! Run: `cargo bench -p aimbus-benches --bench route` (`-- --messages N` to resize).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use aimbus_actors::{
    DeliveryFailure, InProcessTransport, RegistryHandle, Reply, RouterHandle, TransportSet,
};
use aimbus_core::{Config, IntegrationMessage, SystemInfo};
use aimbus_telemetry::Process;
use aimbus_telemetry::receiver::Receiver;
use hdrhistogram::Histogram;
use serde_json::json;

/// The allocator the `aimbus` binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 256;
/// Rounds of the tracing settings: as many as settings, so each runs once in each place.
const ROUNDS: usize = 4;

/// Policies on, sized so the bench measures routing rather than refusals: the rate
/// limiter and bulkheads admit everything, the breaker and cache are consulted.
const ROUTED_CONFIG: &str = r#"
[core]
max_concurrent_requests = 1000
max_concurrent_requests_per_system = 1000
[rate_limiting]
rate_limit_requests_per_minute = 10000000
rate_limit_burst_size = 1000000
"#;

/// The system's work, the same in both chains: read the request, answer a small reply.
fn answer(message: &IntegrationMessage) -> Result<Reply, DeliveryFailure> {
    let mut payload = serde_json::Map::new();
    payload.insert("status".into(), json!("success"));
    payload.insert(
        "echo".into(),
        message.payload.get("n").cloned().unwrap_or_default(),
    );
    Ok(Reply::new(payload))
}

async fn echo(message: Arc<IntegrationMessage>) -> Result<Reply, DeliveryFailure> {
    answer(&message)
}

/// One message made once and cloned per send, in both chains alike.
fn message() -> IntegrationMessage {
    thread_local! {
        static TEMPLATE: IntegrationMessage = {
            let payload = json!({"request": "bench", "n": 1}).as_object().unwrap().clone();
            // status_update is not cacheable: every message really travels.
            IntegrationMessage::new("cmc_001", "hhni_001", "status_update", payload)
        };
    }
    TEMPLATE.with(IntegrationMessage::clone)
}

// The baseline: two actors, each forwarding as the router and the system actor do.

#[derive(Message)]
#[rtype(result = "Result<Reply, DeliveryFailure>")]
struct Hop(IntegrationMessage);

struct Front {
    next: Addr<Back>,
}

impl Actor for Front {
    type Context = Context<Self>;
}

impl Handler<Hop> for Front {
    type Result = ResponseFuture<Result<Reply, DeliveryFailure>>;

    fn handle(&mut self, hop: Hop, _: &mut Context<Self>) -> Self::Result {
        let next = self.next.clone();
        Box::pin(async move {
            next.send(hop)
                .await
                .unwrap_or_else(|_| Err(DeliveryFailure::Unreachable("back hop gone".into())))
        })
    }
}

struct Back;

impl Actor for Back {
    type Context = Context<Self>;
}

impl Handler<Hop> for Back {
    type Result = ResponseFuture<Result<Reply, DeliveryFailure>>;

    fn handle(&mut self, Hop(message): Hop, _: &mut Context<Self>) -> Self::Result {
        let reply = answer(&message);
        Box::pin(async move { reply })
    }
}

/// Something that sends one message and waits for its reply.
trait Client: Clone + 'static {
    async fn call(&self, message: IntegrationMessage);
}

#[derive(Clone)]
struct Bare(Addr<Front>);

impl Client for Bare {
    async fn call(&self, message: IntegrationMessage) {
        self.0.send(Hop(message)).await.unwrap().unwrap();
    }
}

#[derive(Clone)]
struct Routed(RouterHandle);

impl Client for Routed {
    async fn call(&self, message: IntegrationMessage) {
        self.0.route(message).await.unwrap();
    }
}

/// Messages per second with `IN_FLIGHT` clients sending back to back.
async fn throughput(client: &impl Client, messages: usize) -> f64 {
    let per_client = messages / IN_FLIGHT;
    let started = Instant::now();
    let clients: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = client.clone();
            // A source per client, as many publishers are: each has the rate limiter's
            // whole burst, so the bench measures routing rather than refusals.
            let mut template = message();
            template.source_system = format!("cmc_{i:03}");
            actix_rt::spawn(async move {
                for _ in 0..per_client {
                    client.call(template.clone()).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    (per_client * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64()
}

/// One message at a time: latency in nanoseconds.
async fn latency(client: &impl Client, samples: usize) -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for _ in 0..samples {
        let started = Instant::now();
        client.call(message()).await;
        histogram.saturating_record(started.elapsed().as_nanos() as u64);
    }
    histogram
}

/// The bench's configuration, with environment-style overrides.
fn config(overrides: &[(&str, &str)]) -> Config {
    let env = overrides
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()));
    Config::from_toml_str("bench", ROUTED_CONFIG, env, ".".into()).unwrap()
}

async fn start_routed() -> RouterHandle {
    let config = Arc::new(config(&[]));
    let in_process = Arc::new(InProcessTransport::new());
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "hhni_001", "system_type": "hhni", "name": "HHNI", "version": "1.0.0",
        "interfaces": {"rest_api": "http://localhost:8003"},
    }))
    .unwrap();
    in_process.register(&system.system_id, echo);
    let registry = RegistryHandle::in_memory(&config, TransportSet::new(in_process))
        .await
        .unwrap();
    registry.register(system).await.unwrap();
    RouterHandle::start(config, registry).await.unwrap()
}

fn main() {
    let messages = std::env::args()
        .skip_while(|a| a != "--messages")
        .nth(1)
        .map_or(200_000, |v| v.parse().expect("--messages takes a number"));
    let samples = (messages / 10).max(100);
    actix::System::new().block_on(async move {
        let bare = Bare(Front { next: Back.start() }.start());
        let routed = Routed(start_routed().await);
        // Warm both paths up, then measure them alternately so drift hits both alike.
        throughput(&bare, messages / 10).await;
        throughput(&routed, messages / 10).await;
        let bare_rate = throughput(&bare, messages).await;
        let routed_rate = throughput(&routed, messages).await;
        let bare_latency = latency(&bare, samples).await;
        let routed_latency = latency(&routed, samples).await;
        tokio::time::sleep(Duration::from_millis(10)).await;

        // The bus's own subscriber (logs at INFO), tracing off and then on. Everything
        // here runs on this thread, so a thread default covers the router and systems.
        let receiver = Receiver::start().unwrap();
        let endpoint = receiver.endpoint();
        let exported = ("AIMBUS_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str());
        // Tracing off; on with nothing sampled, 10% and every message sampled.
        let settings: [Vec<(&str, &str)>; 4] = [
            vec![("AIMBUS_MONITORING__ENABLE_TRACING", "false")],
            vec![exported, ("AIMBUS_TELEMETRY__SAMPLING_RATIO", "0")],
            vec![exported, ("AIMBUS_TELEMETRY__SAMPLING_RATIO", "0.1")],
            vec![exported],
        ];
        let mut rates: [Vec<f64>; 4] = Default::default();
        let (mut spans_received, mut spans_expected) = (0, 0);
        // In turn, each round starting one setting later, so drift and what a setting
        // leaves behind (the allocator's state after an exporting one) hit each alike;
        // the medians are compared.
        for round in 0..ROUNDS {
            for turn in 0..settings.len() {
                let i = (turn + round) % settings.len();
                let setting = &settings[i];
                let (subscriber, telemetry) =
                    aimbus_telemetry::subscriber(&config(setting), Process::Bus).unwrap();
                let before = receiver.span_count();
                let rate = {
                    let _subscriber = tracing::subscriber::set_default(subscriber);
                    throughput(&routed, messages / 10).await;
                    throughput(&routed, messages).await
                };
                // Flushes what is queued, so the next setting does not pay for this
                // one's export; spans the full queue dropped never arrive.
                drop(telemetry);
                if i == settings.len() - 1 {
                    spans_received += receiver.span_count() - before;
                    spans_expected += 2 * (messages + messages / 10) / IN_FLIGHT * IN_FLIGHT;
                }
                rates[i].push(rate);
            }
        }
        let [untraced_rate, unsampled_rate, sampled_rate, traced_rate] = rates.map(|mut runs| {
            runs.sort_by(f64::total_cmp);
            let middle = runs.len() / 2;
            (runs[middle - 1] + runs[middle]) / 2.0
        });

        let p = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        println!(
            "messages {messages}, {IN_FLIGHT} in flight; latency over {samples} single messages"
        );
        println!(
            "bare actix chain   {bare_rate:>12.0} msg/s   p50 {:>6.0} µs   p99 {:>6.0} µs",
            p(&bare_latency, 0.5),
            p(&bare_latency, 0.99)
        );
        println!(
            "routed             {routed_rate:>12.0} msg/s   p50 {:>6.0} µs   p99 {:>6.0} µs",
            p(&routed_latency, 0.5),
            p(&routed_latency, 0.99)
        );
        println!("routed, logging    {untraced_rate:>12.0} msg/s   (tracing off)");
        println!(
            "routed, tracing    {traced_rate:>12.0} msg/s   (100% sampled; {spans_received} of {spans_expected} spans exported, the rest dropped by the full export queue)"
        );
        println!("routed, 10% traced {sampled_rate:>12.0} msg/s   (sampling_ratio 0.1)");
        println!("routed, 0% traced  {unsampled_rate:>12.0} msg/s   (tracing on, sampling_ratio 0)");
        let result = json!({
            "bench": "route",
            "messages": messages,
            "in_flight": IN_FLIGHT,
            "bare_msgs_per_sec": bare_rate,
            "routed_msgs_per_sec": routed_rate,
            "throughput_ratio": routed_rate / bare_rate,
            "bare_p50_us": p(&bare_latency, 0.5),
            "bare_p99_us": p(&bare_latency, 0.99),
            "routed_p50_us": p(&routed_latency, 0.5),
            "routed_p99_us": p(&routed_latency, 0.99),
            "p99_ratio": p(&routed_latency, 0.99) / p(&bare_latency, 0.99),
            "tracing_off_msgs_per_sec": untraced_rate,
            "tracing_on_msgs_per_sec": traced_rate,
            "tracing_ratio": traced_rate / untraced_rate,
            "sampled_10_percent_msgs_per_sec": sampled_rate,
            "sampled_10_percent_ratio": sampled_rate / untraced_rate,
            "sampled_0_msgs_per_sec": unsampled_rate,
            "sampled_0_ratio": unsampled_rate / untraced_rate,
            "spans_expected": spans_expected,
            "spans_exported": spans_received,
        });
        println!("RESULT {result}");
    });
}

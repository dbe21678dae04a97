//! 1 KiB persistent messages with confirms, publisher → `<ns>.ingress` → bus → system
//! queue → SDK echo consumer, against a minimal raw lapin relay (consume one queue,
//! publish to another with confirms, ack after the confirm) on the same broker, in the
//! same run; against the same relay carrying the bus's envelope to a queue declared as
//! a system's (the broker's share of the contract, none of the bus's work); and against
//! each of those two parts alone. Then the bus path with its every message traced (100%
//! sampled, exported over OTLP to a receiver in the bench's own process, as a local
//! collector would be) against tracing off, and with the publisher and the system
//! traced too. Each bus run is a process of its own with the subscriber `aimbus serve`
//! installs, as a bus has one per process. Needs RabbitMQ on 127.0.0.1:5672.
//!
//! Last, the bus path on two and three bus nodes in one namespace, competing on the
//! ingress, against one; and on one node with `amqp.max_priority = 0` (system queues
//! without priorities) against the plain relay.
//!
//! Run: `cargo bench -p aimbus-benches --bench amqp` (`-- --messages N` to resize,
//! `--rounds N` for the runs of each path; `AIMBUS_TELEMETRY__OTLP_PROTOCOL` and
//! the other telemetry variables apply to the traced runs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::topology;
use aimbus_amqp::{INGRESS_ROUTING_KEY, Names, Publisher};
use aimbus_bridge::{Bridge, BridgeSecurity};
use aimbus_client::{SystemWorker, WorkerOptions};
use aimbus_core::{AmqpConfig, Codec, Config, Format, IntegrationMessage, SystemInfo};
use aimbus_telemetry::Process;
use aimbus_telemetry::receiver::Receiver;
use chrono::Utc;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use tokio_stream::StreamExt;

#[path = "support/child.rs"]
mod child;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Publishes in flight at once (each awaits its own confirm).
const PUBLISHERS: usize = 64;
/// Unacknowledged messages a consumer holds, for the bus's ingress and the relay alike.
const PREFETCH: u16 = 64;

/// What the consuming end saw: how many, and their end-to-end latencies.
struct Sink {
    received: AtomicUsize,
    latencies: Mutex<Histogram<u64>>,
}

impl Sink {
    fn new() -> Arc<Sink> {
        Arc::new(Sink {
            received: AtomicUsize::new(0),
            latencies: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()),
        })
    }

    fn record(&self, sent_at_micros: i64) {
        let micros = (Utc::now().timestamp_micros() - sent_at_micros).max(1) as u64;
        self.latencies.lock().unwrap().saturating_record(micros);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets what arrived so far.
    fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.latencies.lock().unwrap().reset();
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.received.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} arrived",
                self.received.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Publishes `n` bodies from `make` with `PUBLISHERS` confirms in flight; returns when
/// all are confirmed.
async fn publish_all(
    publisher: &Publisher,
    exchange: &str,
    routing_key: &str,
    n: usize,
    make: impl Fn() -> (Vec<u8>, BasicProperties) + Send + Sync + 'static,
) {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (publisher, make, next) = (publisher.clone(), Arc::clone(&make), Arc::clone(&next));
            let (exchange, routing_key) = (exchange.to_owned(), routing_key.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let (body, properties) = make();
                    publisher
                        .publish(&exchange, &routing_key, &body, properties)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Publishes `n` bodies from `make` and waits until `sink` has them all: messages per
/// second and their latencies. One message goes down the path first, off the clock, so
/// the run measures a path that serves: the bus's router learns that a system takes
/// traffic from its first health check, and a message routed before that waits out its
/// retry delay (a second, holding a prefetch slot), which left runs starting a second
/// behind their publisher.
async fn timed_run(
    publisher: &Publisher,
    (exchange, routing_key): (&str, &str),
    n: usize,
    sink: &Sink,
    make: impl Fn() -> (Vec<u8>, BasicProperties) + Clone + Send + Sync + 'static,
) -> (f64, Histogram<u64>) {
    publish_all(publisher, exchange, routing_key, 1, make.clone()).await;
    sink.wait_for(1).await;
    sink.reset();
    let started = Instant::now();
    publish_all(publisher, exchange, routing_key, n, make).await;
    sink.wait_for(n).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    (rate, sink.latencies.lock().unwrap().clone())
}

fn kib_payload() -> serde_json::Map<String, serde_json::Value> {
    json!({"blob": "x".repeat(1000)})
        .as_object()
        .unwrap()
        .clone()
}

/// What a bus run runs: how many bus nodes, and the system queues' `amqp.max_priority`.
#[derive(Clone, Copy)]
struct Shape {
    nodes: usize,
    max_priority: u8,
}

impl Shape {
    /// One node, the defaults.
    const ONE: Shape = Shape {
        nodes: 1,
        max_priority: 10,
    };
}

fn bus_config(namespace: &str, shape: Shape) -> Arc<Config> {
    let max_priority = shape.max_priority;
    let toml = format!(
        "[amqp]\nurl = \"{URL}\"\nnamespace = \"{namespace}\"\nprefetch = {PREFETCH}\n\
         max_priority = {max_priority}\n\
         [rate_limiting]\nrate_limit_requests_per_minute = 10000000\nrate_limit_burst_size = 1000000\n\
         [core]\nmax_concurrent_requests = 1000\nmax_concurrent_requests_per_system = 1000\n"
    );
    Arc::new(Config::from_toml_str("bench", &toml, Vec::new(), ".".into()).unwrap())
}

fn bench_system(names: &Names) -> SystemInfo {
    serde_json::from_value(json!({
        "system_id": "bench_001", "system_type": "hhni", "name": "Bench", "version": "1",
        "interfaces": {"amqp": names.system_queue("bench_001")},
    }))
    .unwrap()
}

/// Runs the bus on an actix system of its own thread, as `aimbus serve` runs it, and
/// returns once it is connected, with the means to stop it.
/// `dispatch`, when given, is the bus thread's own subscriber (the bus traced while its
/// clients are not).
fn start_bus(
    namespace: &str,
    shape: Shape,
    dispatch: Option<tracing::Dispatch>,
) -> (actix::System, std::thread::JoinHandle<()>) {
    let config = bus_config(namespace, shape);
    let (ready, connected) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _subscriber = dispatch.map(|dispatch| tracing::dispatcher::set_default(&dispatch));
        let system = actix::System::new();
        system.block_on(async move {
            let codec = Codec::new(config.decode_limits());
            let bridge = Bridge::new(config.amqp(), codec, BridgeSecurity::default());
            let system = bench_system(bridge.names());
            bridge.declare_systems([&system]).await.unwrap();
            let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
                .with_interface("amqp", bridge.transport());
            let registry = RegistryHandle::in_memory(&config, transports)
                .await
                .unwrap();
            registry.register(system).await.unwrap();
            let router = RouterHandle::start(Arc::clone(&config), registry)
                .await
                .unwrap();
            bridge.start(router);
            bridge.wait_connected().await;
            ready.send(actix::System::current()).unwrap();
        });
        // Serves until stopped.
        system.run().unwrap();
    });
    let system = connected
        .recv()
        .expect("the bus connects to RabbitMQ on 127.0.0.1:5672");
    (system, thread)
}

/// The bus path, driven from its own runtime as a separate publisher and a separate
/// system would drive it: messages per second and the system's latencies.
async fn bus_path(namespace: &str, n: usize, shape: Shape) -> (f64, Histogram<u64>) {
    let config = bus_config(namespace, shape);
    let codec = Codec::new(config.decode_limits());
    let names = Names::new(namespace);
    let sink = Sink::new();
    let counting = Arc::clone(&sink);
    let options = WorkerOptions {
        amqp: config.amqp().clone(),
        prefetch: PREFETCH,
        keyring: None,
    };
    let worker = SystemWorker::connect(bench_system(&names), options, codec)
        .await
        .unwrap();
    let system = tokio::spawn(worker.serve(move |message: IntegrationMessage| {
        if message.message_type != "health_check" {
            counting.record(message.timestamp.timestamp_micros());
        }
        async move { Ok(message.payload) }
    }));

    let connection = connect().await;
    let publisher = Publisher::open(&connection).await.unwrap();
    let ingress = names.ingress();
    let (rate, latencies) = timed_run(
        &publisher,
        (&ingress, INGRESS_ROUTING_KEY),
        n,
        &sink,
        move || {
            let message =
                IntegrationMessage::new("cmc_001", "bench_001", "status_update", kib_payload());
            envelope::encode(&codec, Format::MessagePack, &message, &Routing::default()).unwrap()
        },
    )
    .await;
    // Stopped, or it would declare its queue again once the namespace is removed (which
    // happens once the bus has stopped too: see `bus_run`).
    system.abort();
    (rate, latencies)
}

async fn connect() -> Connection {
    Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap()
}

/// What the relay carries, and to what queue: the plain baseline, the broker's whole
/// share of the contract with none of the bus's work (the bus's own cost is the gap to
/// that line), and each of the contract's two parts alone, which say where the broker's
/// share goes.
#[derive(Clone, Copy, PartialEq)]
enum Relayed {
    /// 1 KiB bodies with no properties but persistence, plain queues.
    Plain,
    /// The bus's encoded message with its properties and headers, plain queues.
    Envelope,
    /// 1 KiB bodies, relayed to a queue declared as a system's (`x-max-priority` 10).
    Priorities,
    /// The envelope, relayed to a queue declared as a system's.
    Contract,
}

impl Relayed {
    const ALL: [Relayed; 4] = [
        Relayed::Plain,
        Relayed::Envelope,
        Relayed::Priorities,
        Relayed::Contract,
    ];

    fn envelope(self) -> bool {
        matches!(self, Relayed::Envelope | Relayed::Contract)
    }

    fn priorities(self) -> bool {
        matches!(self, Relayed::Priorities | Relayed::Contract)
    }
}

/// The baseline: a relay that consumes one queue and republishes to another with
/// confirms, acking after the confirm, and a sink on the other queue. Publisher, relay
/// and sink each have a connection of their own, as the publisher, the bus and the system
/// of the bus path have (one shared connection would batch all three roles' frames
/// into the same socket writes, which no deployment of separate processes gets).
async fn raw_relay(namespace: &str, n: usize, relayed: Relayed) -> (f64, Histogram<u64>) {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let (input, output) = (
        format!("{namespace}.relay.in"),
        format!("{namespace}.relay.out"),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for queue in [&input, &output] {
        let arguments = match relayed.priorities() && queue == &output {
            // Declared as the bus declares a system's queue (classic, with priorities).
            true => {
                topology::system_queue_arguments(&AmqpConfig::default(), &Names::new(namespace))
            }
            false => FieldTable::default(),
        };
        channel
            .queue_declare(queue.as_str().into(), durable, arguments)
            .await
            .unwrap();
    }
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut relay_in = channel
        .basic_consume(
            input.as_str().into(),
            "relay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let relay_out = Publisher::open(&connection).await.unwrap();
    let forward_to = output.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = relay_in.next().await {
            let relay_out = relay_out.clone();
            let forward_to = forward_to.clone();
            tokio::spawn(async move {
                let properties = delivery.properties.clone();
                relay_out
                    .publish("", &forward_to, &delivery.data, properties)
                    .await
                    .unwrap();
                delivery.ack(BasicAckOptions::default()).await.unwrap();
            });
        }
    });
    let sink = Sink::new();
    let counting = Arc::clone(&sink);
    let sink_connection = connect().await;
    let sink_channel = sink_connection.create_channel().await.unwrap();
    sink_channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut sink_in = sink_channel
        .basic_consume(
            output.as_str().into(),
            "sink".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = sink_in.next().await {
            let sent: i64 = delivery.properties.timestamp().map_or(0, |t| t as i64);
            counting.record(sent);
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    });

    let publisher_connection = connect().await;
    let publisher = Publisher::open(&publisher_connection).await.unwrap();
    let codec = Codec::new(bus_config(namespace, Shape::ONE).decode_limits());
    let (rate, latencies) = timed_run(&publisher, ("", &input), n, &sink, move || {
        // Microseconds here, so the sink can time the trip as the bus path does.
        let sent_at = Utc::now().timestamp_micros() as u64;
        let (body, properties) = if relayed.envelope() {
            let message =
                IntegrationMessage::new("cmc_001", "bench_001", "status_update", kib_payload());
            let routing = Routing {
                priorities: relayed.priorities(),
                ..Routing::default()
            };
            envelope::encode(&codec, Format::MessagePack, &message, &routing).unwrap()
        } else {
            let properties = BasicProperties::default().with_delivery_mode(2);
            // The priority a new message has, as the envelope would carry it.
            let properties = match relayed.priorities() {
                true => properties.with_priority(0),
                false => properties,
            };
            (vec![b'x'; 1024], properties)
        };
        (body, properties.with_timestamp(sent_at))
    })
    .await;
    let channel = connection.create_channel().await.unwrap();
    for queue in [input, output] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    (rate, latencies)
}

/// CPU seconds used so far by this process and by the broker (every `beam.smp` on the
/// machine), read from /proc: where a path spends its CPU explains its rate on a machine
/// the broker and the bus share.
#[derive(Clone, Copy)]
struct CpuTimes {
    own: f64,
    broker: f64,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let own = procfs::process::Process::myself()
            .ok()
            .and_then(|p| cpu_seconds(&p))
            .unwrap_or(0.0);
        let broker = procfs::process::all_processes()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|p| p.stat().is_ok_and(|stat| stat.comm == "beam.smp"))
            .filter_map(|p| cpu_seconds(&p))
            .sum();
        CpuTimes { own, broker }
    }

    /// Microseconds of CPU per message since `earlier`: (this process, broker).
    fn per_message_since(&self, earlier: CpuTimes, n: usize) -> (f64, f64) {
        let per = |now: f64, then: f64| (now - then) * 1e6 / n as f64;
        (per(self.own, earlier.own), per(self.broker, earlier.broker))
    }
}

/// A process's user and system CPU time, in seconds of the system's own clock tick.
fn cpu_seconds(process: &procfs::process::Process) -> Option<f64> {
    let stat = process.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// What one run of a path measured (a bus run's as its child process reports it).
#[derive(serde::Serialize, serde::Deserialize)]
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Microseconds of CPU per message: (the clients' process, the broker).
    cpu_us_per_msg: (f64, f64),
}

impl Run {
    fn new(rate: f64, latencies: &Histogram<u64>, cpu_us_per_msg: (f64, f64)) -> Run {
        let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1e3;
        Run {
            rate,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            cpu_us_per_msg,
        }
    }

    fn cpu_json(&self) -> serde_json::Value {
        json!({"clients": self.cpu_us_per_msg.0, "broker": self.cpu_us_per_msg.1})
    }
}

/// What a bus run traces.
#[derive(Clone, Copy, PartialEq)]
enum Traced {
    Nothing,
    /// The bus's spans only; the publisher and the SDK system are not traced.
    Bus,
    /// The bus, the publisher and the SDK system: the whole trace of each message.
    Everything,
}

impl Traced {
    const ALL: [Traced; 3] = [Traced::Nothing, Traced::Bus, Traced::Everything];

    fn arg(self) -> &'static str {
        match self {
            Traced::Nothing => "nothing",
            Traced::Bus => "bus",
            Traced::Everything => "everything",
        }
    }

    fn from_arg(arg: &str) -> Traced {
        Traced::ALL
            .into_iter()
            .find(|traced| traced.arg() == arg)
            .unwrap_or_else(|| panic!("--bus-run takes nothing, bus or everything, not {arg}"))
    }
}

/// A child process's run of the bus path, exporting to `otlp_endpoint` what `traced`
/// says: a subscriber is process-wide, so each setting gets a process.
fn bus_run_in_child(n: usize, traced: Traced, shape: Shape, otlp_endpoint: &str) -> Run {
    let (n, nodes, max_priority) = (
        n.to_string(),
        shape.nodes.to_string(),
        shape.max_priority.to_string(),
    );
    let args = [
        "--messages",
        &n,
        "--bus-run",
        traced.arg(),
        "--nodes",
        &nodes,
        "--max-priority",
        &max_priority,
        "--otlp-endpoint",
        otlp_endpoint,
    ];
    child::run(&args, "BUS_RUN")
}

/// The run with the median rate.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    runs.swap_remove(runs.len() / 2)
}

/// The child's side: the bus path with the subscriber `aimbus serve` would install, on
/// `nodes` buses in one namespace (each with its own connection, actors and threads,
/// competing on the ingress queue, as `serve` processes on one broker do).
fn bus_run(n: usize, traced: Traced, shape: Shape, otlp_endpoint: &str) {
    // AIMBUS_TELEMETRY__… variables (the protocol, the queue) apply as they would to a
    // bus; the run's own settings come first and win.
    let config = |tracing: bool| {
        let own = [
            ("AIMBUS_MONITORING__ENABLE_TRACING", tracing.to_string()),
            ("AIMBUS_TELEMETRY__OTLP_ENDPOINT", otlp_endpoint.to_owned()),
        ];
        let env = own
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .chain(std::env::vars());
        Config::from_toml_str("bench", "", env, ".".into()).unwrap()
    };
    let (global, bus_only) = match traced {
        Traced::Everything => (config(true), None),
        Traced::Bus => (config(false), Some(config(true))),
        Traced::Nothing => (config(false), None),
    };
    let global_telemetry = aimbus_telemetry::init(&global, Process::Bus).unwrap();
    let bus_only = bus_only.map(|config| {
        let (subscriber, telemetry) = aimbus_telemetry::subscriber(&config, Process::Bus).unwrap();
        (tracing::Dispatch::new(subscriber), telemetry)
    });
    let dispatch = bus_only.as_ref().map(|(dispatch, _)| dispatch.clone());
    let namespace = format!("aimbus-bench-{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Each bus on its own actix thread; publisher and system on the runtime.
    let buses: Vec<_> = (0..shape.nodes)
        .map(|_| start_bus(&namespace, shape, dispatch.clone()))
        .collect();
    let before = CpuTimes::now();
    let (rate, latencies) = runtime.block_on(bus_path(&namespace, n, shape));
    let cpu = CpuTimes::now().per_message_since(before, n);
    // Stopped first, or their reconnect loops would declare the namespace again.
    for (bus_system, bus_thread) in buses {
        bus_system.stop();
        bus_thread.join().unwrap();
    }
    runtime.block_on(async {
        let names = Names::new(&namespace);
        let channel = connect().await.create_channel().await.unwrap();
        topology::delete_namespace(&channel, &names, [names.system_queue("bench_001")])
            .await
            .unwrap();
    });
    // Flushes what is still queued.
    drop(bus_only);
    drop(global_telemetry);
    let run = Run::new(rate, &latencies, cpu);
    child::report("BUS_RUN", &run);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .skip_while(|a| *a != "--messages")
        .nth(1)
        .map_or(20_000, |v| v.parse().expect("--messages takes a number"));
    let arg = |name: &str| args.iter().skip_while(|a| *a != name).nth(1);
    if let (Some(traced), Some(endpoint)) = (arg("--bus-run"), arg("--otlp-endpoint")) {
        let shape = Shape {
            nodes: arg("--nodes").map_or(1, |v| v.parse().expect("--nodes takes a number")),
            max_priority: arg("--max-priority").map_or(10, |v| v.parse().expect("0 to 10")),
        };
        return bus_run(n, Traced::from_arg(traced), shape, endpoint);
    }
    let namespace = format!("aimbus-bench-{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = |relayed| {
        let before = CpuTimes::now();
        let (rate, latencies) = runtime.block_on(raw_relay(&namespace, n, relayed));
        Run::new(
            rate,
            &latencies,
            CpuTimes::now().per_message_since(before, n),
        )
    };
    let rounds = args
        .iter()
        .skip_while(|a| *a != "--rounds")
        .nth(1)
        .map_or(3, |v| v.parse().expect("--rounds takes a number"));
    // The relays and the bus settings take turns within each round, so drift on a
    // shared machine (the broker's disk, other load) hits every path alike; the medians
    // are compared.
    let receiver = Receiver::start().unwrap();
    let mut relay_runs: Vec<Vec<Run>> = Relayed::ALL.iter().map(|_| Vec::new()).collect();
    let mut bus_runs: Vec<Vec<Run>> = Traced::ALL.iter().map(|_| Vec::new()).collect();
    // Two and three bus nodes, untraced: on this one machine more nodes add no CPU, so
    // what they show is what coordinating costs per message.
    // And one node whose system queues have no priorities (`amqp.max_priority = 0`),
    // against the plain relay.
    const SHAPES: [Shape; 3] = [
        Shape {
            nodes: 2,
            max_priority: 10,
        },
        Shape {
            nodes: 3,
            max_priority: 10,
        },
        Shape {
            nodes: 1,
            max_priority: 0,
        },
    ];
    let mut shape_runs: Vec<Vec<Run>> = SHAPES.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (relayed, runs) in Relayed::ALL.into_iter().zip(&mut relay_runs) {
            runs.push(relay(relayed));
        }
        for (setting, runs) in Traced::ALL.into_iter().zip(&mut bus_runs) {
            runs.push(bus_run_in_child(
                n,
                setting,
                Shape::ONE,
                &receiver.endpoint(),
            ));
        }
        for (shape, runs) in SHAPES.into_iter().zip(&mut shape_runs) {
            runs.push(bus_run_in_child(
                n,
                Traced::Nothing,
                shape,
                &receiver.endpoint(),
            ));
        }
    }
    let mut shape_medians = shape_runs.into_iter().map(median);
    let (two_nodes, three_nodes, no_priorities) = (
        shape_medians.next().unwrap(),
        shape_medians.next().unwrap(),
        shape_medians.next().unwrap(),
    );
    let spans_exported = receiver.span_count();
    let mut relays = relay_runs.into_iter().map(median);
    let (raw, enveloped, prioritised, contract) = (
        relays.next().unwrap(),
        relays.next().unwrap(),
        relays.next().unwrap(),
        relays.next().unwrap(),
    );
    let mut medians = bus_runs.into_iter().map(median);
    let (bus, traced, everything) = (
        medians.next().unwrap(),
        medians.next().unwrap(),
        medians.next().unwrap(),
    );
    println!(
        "{n} messages of 1 KiB, persistent, confirmed; {PUBLISHERS} publishes and {PREFETCH} deliveries in flight"
    );
    for (label, run) in [
        ("raw lapin relay", &raw),
        ("relay, envelope", &enveloped),
        ("relay, priorities", &prioritised),
        ("relay, contract", &contract),
        ("aimbus", &bus),
        ("aimbus, traced", &traced),
        ("all traced", &everything),
        ("aimbus, 2 nodes", &two_nodes),
        ("aimbus, 3 nodes", &three_nodes),
        ("aimbus, no prio", &no_priorities),
    ] {
        println!(
            "{label:<17} {:>9.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   CPU/msg: clients {:>5.0} µs, broker {:>5.0} µs",
            run.rate, run.p50_ms, run.p99_ms, run.cpu_us_per_msg.0, run.cpu_us_per_msg.1
        );
    }
    println!(
        "each path: median of {rounds} runs, the paths in turn; traced: the bus's spans, 100% sampled; all traced: the publisher's and the system's too; {spans_exported} spans exported to the OTLP receiver"
    );
    let result = json!({
        "bench": "amqp",
        "messages": n,
        "raw_relay_msgs_per_sec": raw.rate,
        "aimbus_msgs_per_sec": bus.rate,
        "ratio": bus.rate / raw.rate,
        "raw_p50_ms": raw.p50_ms,
        "raw_p99_ms": raw.p99_ms,
        "aimbus_p50_ms": bus.p50_ms,
        "aimbus_p99_ms": bus.p99_ms,
        "raw_cpu_us_per_msg": raw.cpu_json(),
        "envelope_relay_msgs_per_sec": enveloped.rate,
        "envelope_relay_cpu_us_per_msg": enveloped.cpu_json(),
        "priority_relay_msgs_per_sec": prioritised.rate,
        "priority_relay_cpu_us_per_msg": prioritised.cpu_json(),
        "contract_relay_msgs_per_sec": contract.rate,
        "contract_relay_cpu_us_per_msg": contract.cpu_json(),
        "ratio_to_contract_relay": bus.rate / contract.rate,
        "aimbus_cpu_us_per_msg": bus.cpu_json(),
        "tracing_on_msgs_per_sec": traced.rate,
        "tracing_on_p99_ms": traced.p99_ms,
        "tracing_ratio": traced.rate / bus.rate,
        "tracing_cpu_us_per_msg": traced.cpu_json(),
        "all_traced_msgs_per_sec": everything.rate,
        "all_traced_ratio": everything.rate / bus.rate,
        "all_traced_cpu_us_per_msg": everything.cpu_json(),
        "two_nodes_msgs_per_sec": two_nodes.rate,
        "two_nodes_p99_ms": two_nodes.p99_ms,
        "three_nodes_msgs_per_sec": three_nodes.rate,
        "three_nodes_p99_ms": three_nodes.p99_ms,
        "three_nodes_ratio_to_one": three_nodes.rate / bus.rate,
        "no_priorities_msgs_per_sec": no_priorities.rate,
        "no_priorities_p99_ms": no_priorities.p99_ms,
        "no_priorities_ratio_to_raw_relay": no_priorities.rate / raw.rate,
        "rounds": rounds,
        "spans_exported": spans_exported,
    });
    println!("RESULT {result}");
}

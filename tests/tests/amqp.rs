//! The RabbitMQ bridge against the real broker (127.0.0.1:5672): each test runs in a
//! namespace of its own, so tests never share a queue, and removes it afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aimbus_actors::{InProcessTransport, RegistryHandle, RouterHandle, TransportSet};
use aimbus_amqp::envelope::{self, ERROR_HEADER};
use aimbus_amqp::topology;
use aimbus_amqp::{DeadLetters, INGRESS_ROUTING_KEY, Names, Publisher, Selection};
use aimbus_bridge::{Bridge, BridgeSecurity};
use aimbus_client::{BusClient, HandlerError, SystemWorker, WorkerOptions, WorkerStats};
use aimbus_core::{
    Codec, Config, Format, IntegrationMessage, Keyring, SEALED_FIELD, SigningKeys, SystemInfo,
};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A bus wired to RabbitMQ in a fresh namespace, with one AMQP system registered.
struct AmqpBus {
    config: Arc<Config>,
    keyring: Option<Arc<Keyring>>,
    codec: Codec,
    names: Names,
    system: SystemInfo,
    bridge: Arc<Bridge>,
    /// The bridge's reconnect loop, stopped before the namespace is removed (or it would
    /// declare it again).
    link: tokio::task::JoinHandle<()>,
    /// The SDK systems served, stopped before the namespace is removed too (a worker
    /// whose queue is deleted reconnects and declares it again).
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<Result<(), aimbus_client::Error>>>>,
    registry: RegistryHandle,
    router: RouterHandle,
}

async fn amqp_bus() -> AmqpBus {
    amqp_bus_with("").await
}

/// A bus as `amqp_bus` makes it, with more `[amqp]` settings.
async fn amqp_bus_with(amqp_settings: &str) -> AmqpBus {
    amqp_bus_keyed(amqp_settings, None).await
}

/// A bus whose bridge, and the systems the test serves, seal payloads with `keyring`.
async fn amqp_bus_keyed(amqp_settings: &str, keyring: Option<Arc<Keyring>>) -> AmqpBus {
    amqp_bus_secured(amqp_settings, keyring, None, false).await
}

/// A bus whose ingress checks signatures with `signing_keys`.
async fn amqp_bus_secured(
    amqp_settings: &str,
    keyring: Option<Arc<Keyring>>,
    signing_keys: Option<Arc<SigningKeys>>,
    require_signed: bool,
) -> AmqpBus {
    let namespace = format!("aimbus-test-{}", uuid::Uuid::new_v4().simple());
    amqp_bus_named(
        &namespace,
        amqp_settings,
        keyring,
        signing_keys,
        require_signed,
    )
    .await
}

/// A bus as `amqp_bus_secured` makes it, in `namespace`: a second bus in the same
/// namespace stands for the first one restarted.
async fn amqp_bus_named(
    namespace: &str,
    amqp_settings: &str,
    keyring: Option<Arc<Keyring>>,
    signing_keys: Option<Arc<SigningKeys>>,
    require_signed: bool,
) -> AmqpBus {
    let toml = format!("[amqp]\nurl = \"{URL}\"\nnamespace = \"{namespace}\"\n{amqp_settings}");
    let config = Arc::new(Config::from_toml_str("test", &toml, Vec::new(), ".".into()).unwrap());
    let codec = config.codec();
    let security = BridgeSecurity {
        keyring: keyring.clone(),
        signing_keys,
        require_signed,
    };
    let bridge = Bridge::new(config.amqp(), codec, security);
    let names = bridge.names().clone();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "hhni_101", "system_type": "hhni", "name": "HHNI", "version": "1.0.0",
        "capabilities": ["search"],
        "interfaces": {"amqp": names.system_queue("hhni_101")},
    }))
    .unwrap();
    bridge.declare_systems([&system]).await.unwrap();
    let transports = TransportSet::new(Arc::new(InProcessTransport::new()))
        .with_interface("amqp", bridge.transport());
    let registry = RegistryHandle::in_memory(&config, transports)
        .await
        .unwrap();
    registry.register(system.clone()).await.unwrap();
    let router = RouterHandle::start(Arc::clone(&config), registry.clone())
        .await
        .unwrap();
    let link = bridge.start(router.clone());
    bridge.publish_events(&registry);
    tokio::time::timeout(Duration::from_secs(30), bridge.wait_connected())
        .await
        .expect("RabbitMQ runs on 127.0.0.1:5672");
    AmqpBus {
        config,
        keyring,
        codec,
        names,
        system,
        bridge,
        link,
        workers: Default::default(),
        registry,
        router,
    }
}

impl AmqpBus {
    /// Runs the system on the SDK with `handler`.
    async fn serve<F, Fut>(&self, handler: F) -> Arc<WorkerStats>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<
                Output = Result<serde_json::Map<String, serde_json::Value>, HandlerError>,
            > + Send
            + 'static,
    {
        self.serve_system(self.system.clone(), handler).await
    }

    async fn serve_system<F, Fut>(&self, system: SystemInfo, handler: F) -> Arc<WorkerStats>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<
                Output = Result<serde_json::Map<String, serde_json::Value>, HandlerError>,
            > + Send
            + 'static,
    {
        let options = WorkerOptions {
            amqp: self.config.amqp().clone(),
            prefetch: 8,
            keyring: self.keyring.clone(),
        };
        let worker = SystemWorker::connect(system, options, self.codec)
            .await
            .unwrap();
        let stats = worker.stats();
        let serving = tokio::spawn(worker.serve(handler));
        self.workers.lock().unwrap().push(serving);
        stats
    }

    /// A second system, late_001, registered now and served on the SDK with `echo`.
    async fn register_and_serve_late_001(&self) {
        let late: SystemInfo = serde_json::from_value(json!({
            "system_id": "late_001", "system_type": "custom_late", "name": "Late", "version": "1",
            "interfaces": {"amqp": self.names.system_queue("late_001")},
        }))
        .unwrap();
        self.bridge.declare_systems([&late]).await.unwrap();
        self.registry.register(late.clone()).await.unwrap();
        self.serve_system(late, echo).await;
    }

    async fn client(&self) -> BusClient {
        BusClient::connect(URL, &self.config.amqp().namespace, self.codec)
            .await
            .unwrap()
    }

    /// A queue of our own for replies, as a client would declare for `reply_to`. Removed
    /// with the namespace.
    async fn replies_queue(&self, channel: &lapin::Channel) -> String {
        let replies = format!("{}.replies", self.names.ingress());
        channel
            .queue_declare(
                replies.as_str().into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        replies
    }

    /// A tap: a queue of our own bound like hhni_101's, so it gets a copy of each
    /// delivery exactly as it crosses the broker. Removed with the namespace.
    async fn tap(&self, channel: &lapin::Channel) -> String {
        let tap = format!("{}.tap", self.names.ingress());
        channel
            .queue_declare(tap.as_str().into(), Default::default(), Default::default())
            .await
            .unwrap();
        channel
            .queue_bind(
                tap.as_str().into(),
                self.names.deliver().into(),
                "hhni.hhni_101".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        tap
    }

    /// A tap (see `tap`) on a channel of a connection of its own, kept open by holding it.
    async fn tapped(&self) -> (Connection, lapin::Channel, String) {
        let connection = Connection::connect(URL, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let tap = self.tap(&channel).await;
        (connection, channel, tap)
    }

    /// Deletes every queue and exchange of the namespace.
    async fn remove(self) {
        self.link.abort();
        for worker in self.workers.into_inner().unwrap() {
            worker.abort();
        }
        let connection = Connection::connect(URL, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let queues = [
            self.names.system_queue("hhni_101"),
            self.names.system_queue("late_001"),
            format!("{}.replies", self.names.ingress()),
            format!("{}.tap", self.names.ingress()),
        ];
        topology::delete_namespace(&channel, &self.names, queues)
            .await
            .unwrap();
    }
}

/// The dead letters, once there are `n` of them (or after 30 s, whatever is there).
async fn dead_letters(dead: &DeadLetters, n: usize) -> Vec<aimbus_amqp::DeadLetter> {
    let mut listed = Vec::new();
    for _ in 0..600 {
        listed = dead.list(10).await.unwrap();
        if listed.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listed
}

/// The next message on `queue`, waiting up to 10 s for one.
async fn next_message(
    channel: &lapin::Channel,
    queue: &str,
) -> Option<lapin::message::BasicGetMessage> {
    for _ in 0..200 {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if got.is_some() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn echo(
    message: IntegrationMessage,
) -> Result<serde_json::Map<String, serde_json::Value>, HandlerError> {
    let mut payload = message.payload;
    payload.insert("handled_by".into(), json!("hhni_101"));
    Ok(payload)
}

/// `handler`, counting into `calls` the messages it is given (health checks are
/// answered by the SDK itself and never reach it).
fn counted<F, Fut>(
    calls: &Arc<AtomicU32>,
    handler: F,
) -> impl Fn(IntegrationMessage) -> Fut + Send + Sync + 'static
where
    F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
{
    let calls = Arc::clone(calls);
    move |message| {
        calls.fetch_add(1, Ordering::SeqCst);
        handler(message)
    }
}

#[actix_rt::test]
async fn a_request_on_the_ingress_reaches_an_sdk_system_and_its_reply_comes_back() {
    let bus = amqp_bus().await;
    bus.serve(echo).await;
    let client = bus.client().await;
    for (n, format) in [Format::Json, Format::MessagePack].into_iter().enumerate() {
        let payload = json!({"query": "fractal", "n": n})
            .as_object()
            .unwrap()
            .clone();
        let request = IntegrationMessage::new("cmc_001", "hhni_101", "data_request", payload);
        let reply = client
            .request(request.clone(), format, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(reply.outcome, "ok");
        let message = reply.message;
        assert_eq!(
            message.correlation_id.as_deref(),
            Some(request.message_id.as_str())
        );
        assert_eq!(message.source_system, "hhni_101");
        assert_eq!(message.target_system, "cmc_001");
        assert_eq!(message.message_type, "data_response");
        assert_eq!(message.payload["query"], "fractal");
        assert_eq!(message.payload["handled_by"], "hhni_101");
    }
    // The router reaches the same system over AMQP directly, by type.
    let payload = json!({"direct": true}).as_object().unwrap().clone();
    let routed = bus
        .router
        .route(IntegrationMessage::new(
            "cmc_001",
            "hhni",
            "status_update",
            payload,
        ))
        .await
        .unwrap();
    assert_eq!(&*routed.served_by, "hhni_101");
    assert_eq!(routed.reply.payload["direct"], true);
    bus.remove().await;
}

/// A request, whose caller waits and retries, travels transient by default and persistent
/// with `amqp.persistent_requests`; a forwarded message, which nobody waits for, is
/// always persistent.
#[actix_rt::test]
async fn requests_travel_transient_unless_configured_and_forwards_always_persistent() {
    for (settings, request_mode) in [("", 1), ("persistent_requests = true\n", 2)] {
        let bus = amqp_bus_with(settings).await;
        let (_connection, channel, tap) = bus.tapped().await;
        bus.serve(echo).await;
        let payload = json!({"n": 1}).as_object().unwrap().clone();
        let message = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
        bus.router.route(message.clone()).await.unwrap();
        let mut forwarded = message;
        forwarded.message_id = format!("{}-forwarded", forwarded.message_id);
        bus.router.forward(forwarded).await.unwrap();
        let mut modes = Vec::new();
        while modes.len() < 2 {
            let copy = next_message(&channel, &tap)
                .await
                .expect("a copy on the tap");
            let kind = copy.properties.kind().as_ref().map(|k| k.to_string());
            // Health checks are requests too: counted with the request.
            if kind.as_deref() == Some("health_check") {
                assert_eq!(*copy.properties.delivery_mode(), Some(request_mode));
                continue;
            }
            modes.push(*copy.properties.delivery_mode());
        }
        assert_eq!(
            modes,
            [Some(request_mode), Some(2)],
            "settings {settings:?}"
        );
        bus.remove().await;
    }
}

/// Ready and unacknowledged messages of `queue`, as the broker counts them.
fn queue_counts(queue: &str) -> Option<(u64, u64)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages_ready"])
        .arg("messages_unacknowledged")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == queue).then_some(())?;
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
}

#[actix_rt::test]
async fn a_slow_message_holds_only_its_own_prefetch_slot_and_every_message_is_acked() {
    let bus = amqp_bus().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let fast = Arc::new(AtomicU32::new(0));
    let (held, handled) = (Arc::clone(&release), Arc::clone(&fast));
    bus.serve(move |message: IntegrationMessage| {
        let (held, handled) = (Arc::clone(&held), Arc::clone(&handled));
        async move {
            if message.payload.contains_key("slow") {
                held.notified().await;
            } else {
                handled.fetch_add(1, Ordering::SeqCst);
            }
            Ok(serde_json::Map::new())
        }
    })
    .await;
    let client = bus.client().await;
    let message = |payload: serde_json::Value| {
        let payload = payload.as_object().unwrap().clone();
        IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload)
    };
    client
        .send(&message(json!({"slow": true})), Format::MessagePack)
        .await
        .unwrap();
    for n in 0..40 {
        client
            .send(&message(json!({"n": n})), Format::MessagePack)
            .await
            .unwrap();
    }
    // Forty messages through the worker's prefetch of 8 while the first is held: each
    // is acked without waiting for the held one, or the broker would stop at 8.
    for _ in 0..600 {
        if fast.load(Ordering::SeqCst) == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fast.load(Ordering::SeqCst),
        40,
        "the held message stalled the rest"
    );
    release.notify_one();
    // Coalesced or alone, every delivery ends acknowledged: nothing ready, nothing held.
    let queue = bus.names.system_queue("hhni_101");
    let mut counts = None;
    for _ in 0..30 {
        counts = queue_counts(&queue);
        if counts == Some((0, 0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(counts, Some((0, 0)), "ready and unacknowledged in {queue}");
    bus.remove().await;
}

#[actix_rt::test]
async fn a_system_failure_comes_back_typed_and_a_rejection_is_not_retried() {
    let bus = amqp_bus().await;
    let calls = Arc::new(AtomicU32::new(0));
    bus.serve(counted(&calls, |message: IntegrationMessage| async move {
        Err(HandlerError::Rejected(format!(
            "cannot read {}",
            message.message_type
        )))
    }))
    .await;
    let payload = json!({"q": 1}).as_object().unwrap().clone();
    let err = bus
        .router
        .route(IntegrationMessage::new(
            "cmc_001",
            "hhni_101",
            "data_request",
            payload,
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("rejected: cannot read data_request"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    bus.remove().await;
}

#[actix_rt::test]
async fn poison_and_unroutable_messages_are_dead_lettered_with_their_reason() {
    let bus = amqp_bus().await;
    bus.serve(echo).await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    let garbage = b"{not json".to_vec();
    let json = BasicProperties::default().with_content_type("application/json".into());
    publisher
        .publish(&bus.names.ingress(), INGRESS_ROUTING_KEY, &garbage, json)
        .await
        .unwrap();
    let payload = json!({"q": 1}).as_object().unwrap().clone();
    let lost = IntegrationMessage::new("cmc_001", "nobody_001", "data_request", payload);
    let (body, properties) =
        envelope::encode(&bus.codec, Format::Json, &lost, &Default::default()).unwrap();
    publisher
        .publish(&bus.names.ingress(), INGRESS_ROUTING_KEY, &body, properties)
        .await
        .unwrap();

    let channel = connection.create_channel().await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..200 {
        let got = channel
            .basic_get(
                bus.names.dead_letter_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(message) = got {
            let reason = envelope::header(&message.delivery.properties, ERROR_HEADER).unwrap();
            dead.push((reason, message.delivery.data.clone()));
            if dead.len() == 2 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[0].0.starts_with("decode: cannot decode json"),
        "{}",
        dead[0].0
    );
    assert_eq!(dead[0].1, garbage, "the body is kept intact");
    assert!(dead[1].0.starts_with("unknown_target: "), "{}", dead[1].0);
    assert_eq!(dead[1].1, body);
    // The consumer kept going: a good message still gets its reply.
    let client = bus.client().await;
    let payload = json!({"after": "poison"}).as_object().unwrap().clone();
    let request = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
    client
        .request(request, Format::Json, Duration::from_secs(20))
        .await
        .unwrap();
    bus.remove().await;
}

/// A request to hhni_101 through the ingress, its replies due to a queue of our own,
/// with hhni_101 served by a handler that always fails: the calls it got, the connection
/// and channel the test goes on with, and the body as sent.
async fn send_to_a_failing_system(
    bus: &AmqpBus,
) -> (Arc<AtomicU32>, Connection, lapin::Channel, Vec<u8>) {
    let calls = Arc::new(AtomicU32::new(0));
    bus.serve(counted(&calls, |_| async {
        Err(HandlerError::Failed("disk full".into()))
    }))
    .await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let replies = bus.replies_queue(&channel).await;
    let payload = json!({"q": 1}).as_object().unwrap().clone();
    let mut request = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
    request.reply_to = Some(replies);
    let (body, properties) =
        envelope::encode(&bus.codec, Format::Json, &request, &Default::default()).unwrap();
    Publisher::open(&connection)
        .await
        .unwrap()
        .publish(&bus.names.ingress(), INGRESS_ROUTING_KEY, &body, properties)
        .await
        .unwrap();
    (calls, connection, channel, body)
}

/// A message whose system keeps failing goes back to the ingress with its count of
/// failed deliveries in a header, and is dead-lettered once the count reaches
/// `delivery_limit`.
#[actix_rt::test]
async fn a_message_that_keeps_failing_is_dead_lettered_at_the_delivery_limit() {
    dead_lettered_at_the_delivery_limit("delivery_limit = 3\n").await;
}

/// On quorum queues, its pauses in the (quorum) delay queues included.
#[actix_rt::test]
async fn a_message_that_keeps_failing_is_dead_lettered_at_the_delivery_limit_on_quorum_queues() {
    dead_lettered_at_the_delivery_limit("delivery_limit = 3\nqueue_type = \"quorum\"\n").await;
}

async fn dead_lettered_at_the_delivery_limit(settings: &str) {
    let bus = amqp_bus_with(settings).await;
    let (calls, connection, channel, body) = send_to_a_failing_system(&bus).await;

    let dead = DeadLetters::open(&connection, bus.names.clone())
        .await
        .unwrap();
    let listed = dead_letters(&dead, 1).await;
    assert_eq!(listed.len(), 1, "dead-lettered within 30 s");
    assert!(
        listed[0]
            .reason
            .starts_with("delivery_limit: 3 deliveries failed (last: "),
        "{}",
        listed[0].reason
    );
    let letter = channel
        .basic_get(
            bus.names.dead_letter_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the dead letter");
    assert_eq!(letter.delivery.data, body, "the body is kept intact");
    assert_eq!(
        envelope::count_header(
            &letter.delivery.properties,
            envelope::FAILED_DELIVERIES_HEADER
        ),
        2,
        "the two requeued deliveries were counted in the header"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "each delivery reached the system"
    );
    bus.remove().await;
}

/// Messages ready in `queue` (a passive declare, cheap enough to poll).
async fn ready_in(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

#[actix_rt::test]
async fn a_message_waiting_for_its_next_delivery_holds_no_ingress_slot() {
    // One ingress slot: a failing message that kept it through its pauses would hold
    // up the messages for every other system.
    let bus = amqp_bus_with("prefetch = 1\n").await;
    let (failures, _connection, channel, _) = send_to_a_failing_system(&bus).await;
    bus.register_and_serve_late_001().await;

    // Parked after its third delivery (each of up to two attempts; the first may have
    // found the system not yet taking traffic), now for 2 s: in the 2 s delay level.
    let retry_queue = bus.names.delay_queue(Duration::from_secs(2));
    for _ in 0..500 {
        if failures.load(Ordering::SeqCst) >= 5 && ready_in(&channel, &retry_queue).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed_so_far = failures.load(Ordering::SeqCst);
    assert!(failed_so_far >= 5, "{failed_so_far} failed attempts");
    assert_eq!(ready_in(&channel, &retry_queue).await, 1, "parked");
    let payload = json!({"q": "healthy"}).as_object().unwrap().clone();
    let request = IntegrationMessage::new("cmc_001", "late_001", "status_update", payload);
    let reply = bus
        .client()
        .await
        .request(request, Format::Json, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(reply.message.payload["q"], "healthy");
    assert_eq!(
        (
            failures.load(Ordering::SeqCst),
            ready_in(&channel, &retry_queue).await
        ),
        (failed_so_far, 1),
        "answered while the failing message was still parked"
    );
    bus.remove().await;
}

#[actix_rt::test]
async fn a_redelivered_message_is_answered_again_but_handled_once() {
    let bus = amqp_bus().await;
    let calls = Arc::new(AtomicU32::new(0));
    bus.serve(counted(&calls, echo)).await;
    let client = bus.client().await;
    let payload = json!({"once": true}).as_object().unwrap().clone();
    let request = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
    for _ in 0..2 {
        // The same message id twice, as a publisher retrying after a lost confirm would.
        let reply = client
            .request(request.clone(), Format::Json, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(reply.message.payload["once"], true);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    bus.remove().await;
}

#[actix_rt::test]
async fn a_system_remembers_answers_within_its_memory_budget_oldest_forgotten_first() {
    let bus = amqp_bus_with("dedup_window_mib = 1\n").await;
    let calls = Arc::new(AtomicU32::new(0));
    let stats = bus.serve(counted(&calls, echo)).await;
    let client = bus.client().await;
    // Answers of 400 KB: two fit in 1 MiB, the third pushes the first out.
    let requests: Vec<IntegrationMessage> = (0..3)
        .map(|i| {
            let payload = json!({"i": i, "blob": "x".repeat(400_000)});
            let payload = payload.as_object().unwrap().clone();
            // Not a cacheable type: each request reaches the system.
            IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload)
        })
        .collect();
    let ask = |request: &IntegrationMessage| {
        let (client, request) = (&client, request.clone());
        async move {
            let reply = client
                .request(request, Format::Json, Duration::from_secs(20))
                .await
                .unwrap();
            reply.message.payload["i"].as_u64().unwrap()
        }
    };
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(ask(request).await, i as u64);
    }
    // Sent again, as after a lost confirm: the latest is answered from memory, the
    // forgotten first is handled again; both get their answer.
    assert_eq!(ask(&requests[2]).await, 2);
    assert_eq!(ask(&requests[0]).await, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(stats.duplicates.load(Ordering::SeqCst), 1);
    bus.remove().await;
}

#[actix_rt::test]
async fn dead_letters_are_listed_and_replayed_once_their_cause_is_fixed() {
    let bus = amqp_bus().await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let replies = bus.replies_queue(&channel).await;
    let payload = json!({"q": "early"}).as_object().unwrap().clone();
    let mut early = IntegrationMessage::new("cmc_001", "late_001", "status_update", payload);
    early.reply_to = Some(replies.clone());
    bus.client().await.send(&early, Format::Json).await.unwrap();

    let dead = DeadLetters::open(&connection, bus.names.clone())
        .await
        .unwrap();
    let listed = dead_letters(&dead, 1).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].message_id.as_deref(),
        Some(early.message_id.as_str())
    );
    assert!(
        listed[0].reason.starts_with("unknown_target: "),
        "{}",
        listed[0].reason
    );
    assert_eq!(listed[0].source.as_deref(), Some("cmc_001"));
    assert_eq!(
        dead.list(10).await.unwrap().len(),
        1,
        "listing leaves them in the queue"
    );

    // The cause goes away: late_001 registers and starts serving.
    bus.register_and_serve_late_001().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let others = Selection::Ids(vec!["some-other-id".into()]);
    assert_eq!(dead.replay(&others, 10).await.unwrap(), 0);
    let this_one = Selection::Ids(vec![early.message_id.clone()]);
    assert_eq!(dead.replay(&this_one, 10).await.unwrap(), 1);
    let reply = next_message(&channel, &replies).await;
    let reply = reply.expect("the replayed message was answered");
    let correlation = reply.delivery.properties.correlation_id().clone().unwrap();
    assert_eq!(correlation.as_str(), early.message_id);
    assert!(dead.list(10).await.unwrap().is_empty());
    bus.remove().await;
}

/// The contract holds for any language: a Python client (pika, msgpack) publishes a
/// MessagePack and a JSON message with `reply_to` and gets both routed replies.
#[actix_rt::test]
async fn a_python_client_speaks_the_contract_in_msgpack_and_json() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/publish.py");
    let has_pika = std::process::Command::new("python3")
        .args(["-c", "import pika, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pika {
        // `.ci/run` installs them; elsewhere, say so rather than fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 lacks pika or msgpack"
        );
        eprintln!("skipped: pip install pika msgpack to run the interop test");
        return;
    }
    let bus = amqp_bus().await;
    bus.serve(echo).await;
    let namespace = bus.config.amqp().namespace.clone();
    let output = tokio::process::Command::new("python3")
        .args([script, URL, &namespace, "hhni_101"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let mut formats: Vec<&str> = answers
        .iter()
        .map(|a| a["content_type"].as_str().unwrap())
        .collect();
    formats.sort();
    assert_eq!(
        formats,
        ["application/json", "application/msgpack"],
        "each reply in its request's format"
    );
    for answer in &answers {
        assert_eq!(answer["sent_as"], answer["content_type"]);
        let reply = &answer["reply"];
        assert_eq!(reply["correlation_id"], answer["correlation_id"]);
        assert_eq!(reply["source_system"], "hhni_101");
        assert_eq!(reply["message_type"], "data_response");
        assert_eq!(reply["payload"]["query"], "from python");
    }
    bus.remove().await;
}

#[actix_rt::test]
async fn registry_events_are_published_to_the_events_exchange() {
    let bus = amqp_bus().await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let options = lapin::options::QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), options, Default::default())
        .await
        .unwrap();
    let queue = queue.name().as_str().to_owned();
    channel
        .queue_bind(
            queue.as_str().into(),
            bus.names.events().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let newcomer: SystemInfo = serde_json::from_value(json!({
        "system_id": "vif_101", "system_type": "vif", "name": "VIF", "version": "1",
        "interfaces": {"amqp": bus.names.system_queue("vif_101")},
    }))
    .unwrap();
    bus.registry.register(newcomer).await.unwrap();
    bus.registry
        .set_status("vif_101", aimbus_core::IntegrationStatus::Degraded, "slow")
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..200 {
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(message) => {
                let event: serde_json::Value =
                    serde_json::from_slice(&message.delivery.data).unwrap();
                keys.push((
                    message.delivery.routing_key.as_str().to_owned(),
                    event["kind"].as_str().unwrap().to_owned(),
                ));
                if keys.len() == 2 {
                    break;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(
        keys,
        [
            (
                "system_registered.vif_101".to_owned(),
                "system_registered".to_owned()
            ),
            (
                "status_update.vif_101".to_owned(),
                "status_update".to_owned()
            ),
        ]
    );
    bus.remove().await;
}

#[actix_rt::test]
async fn a_copy_of_a_message_already_seen_through_is_not_routed_again() {
    let bus = amqp_bus().await;
    let calls = Arc::new(AtomicU32::new(0));
    let stats = bus.serve(counted(&calls, echo)).await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let publisher = Publisher::open(&connection).await.unwrap();
    let payload = json!({"once": true}).as_object().unwrap().clone();
    let message = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
    let (body, properties) =
        envelope::encode(&bus.codec, Format::Json, &message, &Default::default()).unwrap();
    for _ in 0..2 {
        // A publisher that lost its confirm sends the same message again.
        publisher
            .publish(
                &bus.names.ingress(),
                INGRESS_ROUTING_KEY,
                &body,
                properties.clone(),
            )
            .await
            .unwrap();
        for _ in 0..200 {
            if calls.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        stats.duplicates.load(Ordering::SeqCst),
        0,
        "the ingress filtered the copy before it reached the system"
    );
    bus.remove().await;
}

#[actix_rt::test]
async fn with_quorum_queues_every_queue_is_quorum_and_requests_cross_them() {
    let bus = amqp_bus_with("queue_type = \"quorum\"\ndelivery_limit = 7\n").await;
    bus.serve(echo).await;
    let client = bus.client().await;
    let payload = json!({"q": "quorum"}).as_object().unwrap().clone();
    let request = IntegrationMessage::new("cmc_001", "hhni_101", "data_request", payload);
    let reply = client
        .request(request, Format::Json, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(reply.message.payload["q"], "quorum");
    // Ingress, dead letters, every delay queue and the system's queue: all quorum, so a
    // cluster node's loss takes none of them.
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("{}.", bus.config.amqp().namespace);
    let ours: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?))
        })
        .filter(|(name, _)| name.starts_with(&prefix))
        .collect();
    let expected = 3 + aimbus_amqp::parking::levels().count();
    assert!(ours.len() >= expected, "{ours:?}");
    assert!(ours.iter().all(|(_, kind)| *kind == "quorum"), "{ours:?}");
    // The broker refuses to redeclare a queue with other arguments: the system's queue is
    // not classic.
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("classic".into()),
    );
    let queue = bus.names.system_queue("hhni_101");
    let as_classic = connection.create_channel().await.unwrap();
    let refused = as_classic
        .queue_declare(queue.as_str().into(), durable, classic)
        .await;
    assert!(refused.is_err(), "the system queue is not classic");
    bus.remove().await;
}

/// `amqp.max_priority = 0`: the system's queue is declared without priorities (the
/// broker refuses to redeclare it with them), and messages of every priority cross it.
#[actix_rt::test]
async fn with_max_priority_0_system_queues_have_no_priorities_and_messages_cross_them() {
    let bus = amqp_bus_with("max_priority = 0\n").await;
    bus.serve(echo).await;
    let client = bus.client().await;
    for priority in [0, 9] {
        let payload = json!({ "priority": priority }).as_object().unwrap().clone();
        let mut request = IntegrationMessage::new("cmc_001", "hhni_101", "data_request", payload);
        request.priority = priority;
        let reply = client
            .request(request, Format::Json, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(reply.message.payload["priority"], priority);
    }
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut prioritised = FieldTable::default();
    prioritised.insert(
        "x-max-priority".into(),
        lapin::types::AMQPValue::ShortShortUInt(10),
    );
    let queue = bus.names.system_queue("hhni_101");
    let channel = connection.create_channel().await.unwrap();
    let refused = channel
        .queue_declare(queue.as_str().into(), durable, prioritised)
        .await;
    assert!(refused.is_err(), "the system queue has no priorities");
    let channel = connection.create_channel().await.unwrap();
    let plain = channel
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await;
    assert!(plain.is_ok(), "{plain:?}");
    bus.remove().await;
}

/// With encryption on, payloads cross the broker sealed on the hop to the system (its
/// queue never holds the plaintext), the SDK opens them and seals its reply, the bus
/// opens that; a sealed client message that was tampered with is dead-lettered.
#[actix_rt::test]
async fn sealed_payloads_cross_the_broker_opaque_and_tampered_ones_are_dead_lettered() {
    let keyring =
        Arc::new(Keyring::from_toml_str("test", &aimbus_core::new_keyring_text("k1")).unwrap());
    let bus = amqp_bus_keyed("", Some(Arc::clone(&keyring))).await;
    let (connection, channel, tap) = bus.tapped().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    bus.serve(move |message: IntegrationMessage| {
        recorder.lock().unwrap().push(message.payload.clone());
        echo(message)
    })
    .await;
    let payload = json!({"secret": "launch codes"})
        .as_object()
        .unwrap()
        .clone();
    let routed = bus
        .router
        .route(IntegrationMessage::new(
            "cmc_001",
            "hhni_101",
            "status_update",
            payload,
        ))
        .await
        .unwrap();
    assert_eq!(
        routed.reply.payload["secret"], "launch codes",
        "the bus opened the reply"
    );
    assert_eq!(
        seen.lock().unwrap()[0]["secret"],
        "launch codes",
        "the handler saw the plaintext"
    );
    let mut copies = Vec::new();
    while let Some(copy) = channel
        .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        copies.push(String::from_utf8_lossy(&copy.delivery.data).into_owned());
    }
    let request = copies
        .iter()
        .find(|raw| raw.contains("status_update"))
        .expect("the tap saw the request");
    assert!(!request.contains("launch codes"), "{request}");
    assert!(request.contains(SEALED_FIELD), "{request}");

    // A client's sealed message whose ciphertext was altered never reaches the system.
    let mut tampered = IntegrationMessage::new(
        "cmc_001",
        "hhni_101",
        "status_update",
        json!({"q": 1}).as_object().unwrap().clone(),
    );
    keyring.seal(&mut tampered).unwrap();
    tampered.target_system = "hhni".into();
    bus.client()
        .await
        .send(&tampered, Format::Json)
        .await
        .unwrap();
    let dead = DeadLetters::open(&connection, bus.names.clone())
        .await
        .unwrap();
    let listed = dead_letters(&dead, 1).await;
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].reason.starts_with("unauthorised: "),
        "{}",
        listed[0].reason
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the tampered message reached nobody"
    );
    bus.remove().await;
}

/// With signatures required, only messages signed with their source's key are routed;
/// unsigned and mis-signed ones are dead-lettered as unauthorised.
#[actix_rt::test]
async fn unsigned_and_mis_signed_ingress_messages_are_dead_lettered_when_signing_is_required() {
    let keys = Arc::new(
        SigningKeys::from_toml_str(
            "test",
            &format!("[keys]\ncmc_001 = \"{}\"\n", "5a".repeat(32)),
        )
        .unwrap(),
    );
    let bus = amqp_bus_secured("", None, Some(Arc::clone(&keys)), true).await;
    let calls = Arc::new(AtomicU32::new(0));
    bus.serve(counted(&calls, echo)).await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let replies = bus.replies_queue(&channel).await;
    let publisher = Publisher::open(&connection).await.unwrap();
    let publish = |signature: Option<String>, spoil_body: bool| {
        let payload = json!({"q": "signed?"}).as_object().unwrap().clone();
        let mut message = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
        message.reply_to = Some(replies.clone());
        let (mut body, properties) =
            envelope::encode(&bus.codec, Format::Json, &message, &Default::default()).unwrap();
        let signature = signature.or_else(|| keys.sign(&message, &body));
        let mut headers = properties.headers().clone().unwrap_or_default();
        if let Some(signature) = signature.filter(|s| !s.is_empty()) {
            headers.insert(
                envelope::SIGNATURE_HEADER.into(),
                lapin::types::AMQPValue::LongString(signature.into()),
            );
        }
        if spoil_body {
            // Same message, re-encoded with a space: another body than the one signed.
            body.insert(1, b' ');
        }
        let properties = properties.with_headers(headers);
        let publisher = publisher.clone();
        let ingress = bus.names.ingress();
        async move {
            publisher
                .publish(&ingress, INGRESS_ROUTING_KEY, &body, properties)
                .await
                .unwrap();
            message.message_id
        }
    };
    let signed = publish(None, false).await;
    let unsigned = publish(Some(String::new()), false).await;
    let spoiled = publish(None, true).await;

    let reply = next_message(&channel, &replies).await;
    let reply = reply.expect("the signed message was answered");
    assert_eq!(
        reply
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .unwrap()
            .as_str(),
        signed
    );
    let dead = DeadLetters::open(&connection, bus.names.clone())
        .await
        .unwrap();
    let listed = dead_letters(&dead, 2).await;
    let reason_of = |id: &str| {
        listed
            .iter()
            .find(|d| d.message_id.as_deref() == Some(id))
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason_of(&unsigned)
            .starts_with("unauthorised: signature refused: the message is not signed"),
        "{listed:?}"
    );
    assert!(
        reason_of(&spoiled).starts_with("unauthorised: signature refused: it does not match"),
        "{listed:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the signed message was handled"
    );
    bus.remove().await;
}

/// Bodies above `compression_threshold_bytes` cross the broker gzip-compressed, marked by
/// their content encoding, and reach the handler whole; small ones travel as they are.
#[actix_rt::test]
async fn large_bodies_cross_the_broker_compressed_and_arrive_whole() {
    let bus = amqp_bus_with("").await;
    let (_connection, channel, tap) = bus.tapped().await;
    bus.serve(echo).await;
    let text = "integration ".repeat(2_000);
    for (payload, compressed) in [
        (json!({"text": text}), true),
        (json!({"text": "short"}), false),
    ] {
        let message = IntegrationMessage::new(
            "cmc_001",
            "hhni_101",
            "status_update",
            payload.as_object().unwrap().clone(),
        );
        let routed = bus.router.route(message.clone()).await.unwrap();
        assert_eq!(
            routed.reply.payload["text"], payload["text"],
            "arrived whole and back"
        );
        let copy = loop {
            let got = channel
                .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
                .expect("the tap holds a copy");
            if got
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str())
                == Some(message.message_id.as_str())
            {
                break got;
            }
        };
        let encoding = copy.delivery.properties.content_encoding().clone();
        if compressed {
            assert_eq!(encoding.as_ref().map(|e| e.as_str()), Some("gzip"));
            assert!(
                copy.delivery.data.len() < text.len() / 10,
                "{}",
                copy.delivery.data.len()
            );
        } else {
            assert!(encoding.is_none(), "{encoding:?}");
        }
    }
    bus.remove().await;
}

#[actix_rt::test]
async fn buses_in_two_namespaces_with_the_shipped_systems_file_share_no_queue() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/systems.toml");
    let systems = aimbus_core::SystemsFile::load(std::path::Path::new(shipped)).unwrap();
    let systems = systems.systems();
    let config = Config::default();
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let [a, b] = [0, 1].map(|n| Names::new(&format!("aimbus-ns{n}-{suffix}")));
    let mut declared = Vec::new();
    for names in [&a, &b] {
        topology::declare_bus(&channel, names, config.amqp())
            .await
            .unwrap();
        let mut queues = Vec::new();
        for system in systems {
            queues.push(
                topology::declare_system_queue(&channel, names, config.amqp(), system)
                    .await
                    .unwrap(),
            );
        }
        declared.push(queues);
    }
    assert_eq!(declared[0].len(), 11);
    assert!(
        declared[0].iter().all(|q| !declared[1].contains(q)),
        "{declared:?}"
    );
    assert!(declared[0].contains(&a.system_queue("vif_001")));
    // A message delivered in one namespace waits in that namespace's queue alone.
    let publisher = Publisher::open(&connection).await.unwrap();
    let vif = systems.iter().find(|s| s.system_id == "vif_001").unwrap();
    publisher
        .publish(
            &a.deliver(),
            &Names::system_routing_key(vif),
            b"{}",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert_eq!(ready_in(&channel, &a.system_queue("vif_001")).await, 1);
    assert_eq!(ready_in(&channel, &b.system_queue("vif_001")).await, 0);
    for (names, queues) in [&a, &b].into_iter().zip(declared) {
        topology::delete_namespace(&channel, names, queues)
            .await
            .unwrap();
    }
}

/// A forwarded message (no `reply_to`) to hhni_101, whose handler fails as `outcome`
/// says for each call: what reached the system (the first copy off a tap), and the
/// calls made.
async fn forward_to_an_sdk_system<F>(
    bus: &AmqpBus,
    channel: &lapin::Channel,
    outcome: F,
) -> (Vec<u8>, Arc<AtomicU32>)
where
    F: Fn(u32) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let tap = bus.tap(channel).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let outcome = Arc::new(outcome);
    bus.serve(move |_| {
        let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let result = outcome(call).map(|()| serde_json::Map::new());
        async move { result }
    })
    .await;
    let payload = json!({"q": "poison?"}).as_object().unwrap().clone();
    let message = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
    bus.client()
        .await
        .send(&message, Format::Json)
        .await
        .unwrap();
    // The tap also gets the bus's health checks: the forwarded copy is the one with our id.
    loop {
        let copy = next_message(channel, &tap).await.expect("forwarded");
        if copy
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
            == Some(message.message_id.as_str())
        {
            return (copy.delivery.data, calls);
        }
    }
}

/// An SDK system's handler that always fails: its message is parked between deliveries
/// and dead-lettered, body intact, after exactly `delivery_limit` of them.
async fn an_sdk_poison_message_is_dead_lettered_at_the_delivery_limit(settings: &str) {
    let bus = amqp_bus_with(settings).await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (body, calls) = forward_to_an_sdk_system(&bus, &channel, |_| {
        Err(HandlerError::Failed("disk full".into()))
    })
    .await;
    let dead = DeadLetters::open(&connection, bus.names.clone())
        .await
        .unwrap();
    let listed = dead_letters(&dead, 1).await;
    assert_eq!(listed.len(), 1, "dead-lettered within 30 s");
    assert_eq!(
        listed[0].reason,
        "delivery_limit: 3 deliveries failed (last: failed: disk full)"
    );
    let letter = next_message(&channel, &bus.names.dead_letter_queue())
        .await
        .expect("the dead letter");
    assert_eq!(letter.delivery.data, body, "the body is kept intact");
    assert_eq!(
        envelope::count_header(
            &letter.delivery.properties,
            envelope::FAILED_DELIVERIES_HEADER
        ),
        2,
        "the two parked deliveries were counted in the header"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = calls.load(Ordering::SeqCst);
    println!(
        "fault sdk-poison ({settings:?}): sent 1, confirmed 1, delivered {deliveries} times, dead-lettered {}, lost {}",
        listed.len(),
        1 - listed.len().min(1),
    );
    assert_eq!(deliveries, 3, "exactly delivery_limit deliveries");
    bus.remove().await;
}

#[actix_rt::test]
async fn an_sdk_poison_message_is_dead_lettered_at_the_delivery_limit_on_a_classic_queue() {
    an_sdk_poison_message_is_dead_lettered_at_the_delivery_limit("delivery_limit = 3\n").await;
}

#[actix_rt::test]
async fn an_sdk_poison_message_is_dead_lettered_at_the_delivery_limit_on_a_quorum_queue() {
    an_sdk_poison_message_is_dead_lettered_at_the_delivery_limit(
        "delivery_limit = 3\nqueue_type = \"quorum\"\n",
    )
    .await;
}

#[actix_rt::test]
async fn an_sdk_handler_that_fails_twice_then_succeeds_handles_the_message_once() {
    let bus = amqp_bus_with("delivery_limit = 5\n").await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let successes = Arc::new(AtomicU32::new(0));
    let succeeded = Arc::clone(&successes);
    let (_body, calls) = forward_to_an_sdk_system(&bus, &channel, move |call| {
        if call <= 2 {
            return Err(HandlerError::Failed("not yet".into()));
        }
        succeeded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .await;
    // Parked 0.5 s after the first failure and 1 s after the second.
    for _ in 0..100 {
        if successes.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            successes.load(Ordering::SeqCst)
        ),
        (3, 1),
        "two failures, then handled successfully once"
    );
    assert_eq!(ready_in(&channel, &bus.names.dead_letter_queue()).await, 0);
    bus.remove().await;
}

#[actix_rt::test]
async fn a_bus_stopped_mid_stream_drains_and_its_successor_forwards_the_rest_once() {
    const MESSAGES: usize = 5_000;
    // One source sends the whole stream: over its rate limit it would only be slower.
    const UNLIMITED: &str = "[rate_limiting]\nenable_rate_limiting = false\n";
    let mut first = amqp_bus_with(UNLIMITED).await;
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let tap = first.tap(&channel).await;
    let delivered = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let seen = Arc::clone(&delivered);
    // The system keeps serving while its bus restarts, as systems do.
    let stats = first
        .serve(move |message: IntegrationMessage| {
            seen.lock().unwrap().insert(message.message_id);
            async { Ok(serde_json::Map::new()) }
        })
        .await;
    let confirmed = Arc::new(AtomicU32::new(0));
    let publishing = {
        let (codec, names, confirmed) = (first.codec, first.names.clone(), Arc::clone(&confirmed));
        tokio::spawn(async move {
            let connection = Connection::connect(URL, ConnectionProperties::default())
                .await
                .unwrap();
            let publisher = Publisher::open(&connection).await.unwrap();
            let mut ids = std::collections::HashSet::new();
            for n in 0..MESSAGES {
                let payload = json!({"n": n}).as_object().unwrap().clone();
                let message =
                    IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
                let (body, properties) =
                    envelope::encode(&codec, Format::Json, &message, &Default::default()).unwrap();
                publisher
                    .publish(&names.ingress(), INGRESS_ROUTING_KEY, &body, properties)
                    .await
                    .unwrap();
                ids.insert(message.message_id);
                confirmed.fetch_add(1, Ordering::SeqCst);
            }
            ids
        })
    };
    while (confirmed.load(Ordering::SeqCst) as usize) < MESSAGES / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What `serve` does on SIGTERM: the ingress drains, then the connection closes.
    first.bridge.stop();
    let link = std::mem::replace(&mut first.link, tokio::spawn(async {}));
    tokio::time::timeout(Duration::from_secs(30), link)
        .await
        .expect("the bridge drains within its grace")
        .unwrap();
    let at_stop = delivered.lock().unwrap().len();
    // The bus restarted: a new one in the same namespace, knowing nothing of the first.
    let namespace = first.config.amqp().namespace.clone();
    let second = amqp_bus_named(&namespace, UNLIMITED, None, None, false).await;
    let ids = publishing.await.unwrap();
    for _ in 0..1_200 {
        if delivered.lock().unwrap().len() >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut forwards = 0;
    while let Some(copy) = channel
        .basic_get(tap.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = copy.delivery.properties.message_id().clone();
        forwards += usize::from(id.is_some_and(|id| ids.contains(id.as_str())));
    }
    let delivered = delivered.lock().unwrap().clone();
    let lost = ids.difference(&delivered).count();
    let dead = ready_in(&channel, &first.names.dead_letter_queue()).await;
    println!(
        "fault shutdown-drain: sent {MESSAGES}, confirmed {}, delivered {}, duplicates filtered {}, dead-lettered {dead}, lost {lost}, forwarded twice {} (stopped after {at_stop} deliveries)",
        ids.len(),
        delivered.len(),
        stats.duplicates.load(Ordering::Relaxed),
        forwards.saturating_sub(MESSAGES),
    );
    assert_eq!((lost, dead), (0, 0));
    assert_eq!(
        forwards, MESSAGES,
        "each message forwarded once across the restart"
    );
    assert_eq!(
        stats.handled.load(Ordering::Relaxed) as usize,
        MESSAGES,
        "each handled once"
    );
    second.link.abort();
    first.remove().await;
}

#[actix_rt::test]
async fn an_sdk_system_stopped_mid_stream_finishes_what_it_holds_and_its_successor_the_rest() {
    const MESSAGES: usize = 40;
    let bus = amqp_bus_with("[rate_limiting]\nenable_rate_limiting = false\n").await;
    let handled = Arc::new(AtomicU32::new(0));
    // A worker whose every message takes 300 ms: stopped, it holds some of them.
    let worker = |handled: Arc<AtomicU32>| {
        let options = WorkerOptions {
            amqp: bus.config.amqp().clone(),
            prefetch: 8,
            keyring: None,
        };
        let system = bus.system.clone();
        let codec = bus.codec;
        async move {
            let worker = SystemWorker::connect(system, options, codec).await.unwrap();
            let (stop, stopping) = tokio::sync::watch::channel(false);
            let served = tokio::spawn(worker.serve_until(
                move |_| {
                    let handled = Arc::clone(&handled);
                    async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok(serde_json::Map::new())
                    }
                },
                stopping,
            ));
            (stop, served)
        }
    };
    let (stop, served) = worker(Arc::clone(&handled)).await;
    let client = bus.client().await;
    for n in 0..MESSAGES {
        let payload = json!({"n": n}).as_object().unwrap().clone();
        let message = IntegrationMessage::new("cmc_001", "hhni_101", "status_update", payload);
        client.send(&message, Format::Json).await.unwrap();
    }
    while handled.load(Ordering::SeqCst) < 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(15), served)
        .await
        .expect("the worker drains within its grace")
        .unwrap()
        .unwrap();
    let at_stop = handled.load(Ordering::SeqCst);
    // A successor, knowing nothing of what the first answered.
    let (_stop, _served) = worker(Arc::clone(&handled)).await;
    for _ in 0..300 {
        if handled.load(Ordering::SeqCst) as usize >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!((at_stop as usize) < MESSAGES, "stopped mid-stream");
    assert_eq!(
        handled.load(Ordering::SeqCst) as usize,
        MESSAGES,
        "what the first finished was acknowledged, so none was handled twice"
    );
    _stop.send_replace(true);
    bus.remove().await;
}

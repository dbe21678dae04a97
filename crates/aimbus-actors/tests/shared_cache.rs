//! The response cache's shared tier on a real Redis (a server of the test's own, so it
//! can be stopped): two nodes, each its own registry and router, one Redis.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimbus_actors::{
    DeliveryFailure, InProcessTransport, RegistryHandle, Reply, RouterHandle, TransportSet, metrics,
};
use aimbus_core::{Config, IntegrationMessage, SystemInfo};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

/// `redis-server` on a port of its own, keeping nothing on disk.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.start_again();
        redis
    }

    fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
            ])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server never listened on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One bus node: a registry and a router, serving `hhni_001` in process and counting the
/// messages it delivers.
struct Node {
    router: RouterHandle,
    delivered: Arc<AtomicU32>,
}

async fn node(config: &Arc<Config>) -> Node {
    let delivered = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&delivered);
    let in_process = Arc::new(InProcessTransport::new());
    in_process.register("hhni_001", move |m: Arc<IntegrationMessage>| {
        counter.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, DeliveryFailure>(Reply::new(m.payload.clone())) }
    });
    let registry = RegistryHandle::in_memory(config, TransportSet::new(in_process))
        .await
        .unwrap();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "hhni_001", "system_type": "hhni", "name": "HHNI", "version": "1",
        "interfaces": {"rest_api": "http://localhost:8003"},
    }))
    .unwrap();
    registry.register(system).await.unwrap();
    Node {
        router: RouterHandle::start(Arc::clone(config), registry)
            .await
            .unwrap(),
        delivered,
    }
}

fn request(query: u32) -> IntegrationMessage {
    let payload = json!({ "query": query }).as_object().unwrap().clone();
    IntegrationMessage::new("cmc_001", "hhni_001", "data_request", payload)
}

fn counter(snapshotter: &Snapshotter, totals: &mut Vec<(String, u64)>, name: &str) -> u64 {
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            totals.push((key.key().name().to_owned(), n));
        }
    }
    totals
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

/// Log lines, kept for the test to count.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(text)
            .count()
    }
}

#[actix_rt::test]
async fn a_reply_cached_by_one_node_is_served_by_another_and_redis_away_fails_nothing() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let lines = Lines::default();
    let writer = lines.clone();
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );

    let mut redis = PrivateRedis::start();
    let namespace = format!("aimbus-test-{}", uuid::Uuid::new_v4().simple());
    let toml = format!(
        "[caching]\ndistributed_cache_enabled = true\nredis_url = \"redis://127.0.0.1:{}\"\n\
         [amqp]\nnamespace = \"{namespace}\"\n",
        redis.port
    );
    let config =
        Arc::new(Config::from_toml_str("test.toml", &toml, Vec::new(), ".".into()).unwrap());
    let (a, b) = (node(&config).await, node(&config).await);
    let mut totals = Vec::new();

    // Cached by A (stored in the background), then served to B without delivery.
    let first = a.router.route(request(1)).await.unwrap();
    assert!(!first.cached);
    let mut from_b = b.router.route(request(1)).await.unwrap();
    for _ in 0..50 {
        if from_b.cached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        from_b = b.router.route(request(1)).await.unwrap();
    }
    assert!(from_b.cached, "B is served A's reply from Redis");
    assert_eq!(from_b.reply, first.reply);
    let b_delivered_before = b.delivered.load(Ordering::Relaxed);
    assert!(counter(&snapshotter, &mut totals, metrics::CACHE_SHARED_HITS) >= 1);

    // Redis away: every request is still answered, from the systems and the local tier.
    redis.stop();
    for query in 2..12 {
        let from_a = a.router.route(request(query)).await.unwrap();
        assert!(!from_a.cached);
        let from_b = b.router.route(request(query)).await.unwrap();
        assert!(!from_b.cached, "nothing shared while Redis is away");
    }
    assert_eq!(b.delivered.load(Ordering::Relaxed), b_delivered_before + 10);
    assert!(
        a.router.route(request(2)).await.unwrap().cached,
        "A's local tier still serves"
    );
    assert!(counter(&snapshotter, &mut totals, metrics::CACHE_SHARED_FALLBACKS) >= 2);
    assert_eq!(lines.count("is away"), 2, "logged once by each node");

    // Back: after its rest, the shared tier serves again, and says so once per node.
    redis.start_again();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.router.route(request(100)).await.unwrap();
    let mut from_b = b.router.route(request(100)).await.unwrap();
    for _ in 0..50 {
        if from_b.cached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        from_b = b.router.route(request(100)).await.unwrap();
    }
    assert!(from_b.cached, "shared again once Redis returned");
    assert_eq!(lines.count("answers again"), 2, "logged once by each node");
    assert_eq!(lines.count("is away"), 2);
}

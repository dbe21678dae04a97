//! The counters the routing path records, read back through a recorder installed for this
//! test binary alone (a recorder is process-wide).

use std::sync::Arc;

use aimbus_actors::breaker::Override;
use aimbus_actors::router::OverrideBreaker;
use aimbus_actors::{
    DeliveryFailure, InProcessTransport, RegistryHandle, Reply, RouterHandle, TransportSet, metrics,
};
use aimbus_core::{Config, IntegrationMessage, SystemInfo};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

/// Counter totals so far, by name and labels. The debugging recorder hands counters
/// out as increments since the last snapshot, so the totals are kept here.
#[derive(Default)]
struct Counters(Vec<Count>);

/// A counter's name, labels and increments.
type Count = (String, Vec<(String, String)>, u64);

impl Counters {
    fn take(&mut self, snapshotter: &Snapshotter) -> &Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(n) = value {
                let labels = key
                    .key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                self.0.push((key.key().name().to_owned(), labels, n));
            }
        }
        self
    }

    fn get(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.0
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(.., value)| value)
            .sum()
    }
}

#[actix_rt::test]
async fn cache_lookups_breaker_transitions_and_outcomes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let config = Arc::new(Config::default());
    let in_process = Arc::new(InProcessTransport::new());
    in_process.register("hhni_001", |m: Arc<IntegrationMessage>| async move {
        Ok::<_, DeliveryFailure>(Reply::new(m.payload.clone()))
    });
    let registry = RegistryHandle::in_memory(&config, TransportSet::new(in_process))
        .await
        .unwrap();
    let system: SystemInfo = serde_json::from_value(json!({
        "system_id": "hhni_001", "system_type": "hhni", "name": "HHNI", "version": "1",
        "interfaces": {"rest_api": "http://localhost:8003"},
    }))
    .unwrap();
    registry.register(system).await.unwrap();
    let router = RouterHandle::start(config, registry).await.unwrap();

    let payload = json!({"q": 1}).as_object().unwrap().clone();
    let request =
        || IntegrationMessage::new("cmc_001", "hhni_001", "data_request", payload.clone());
    router.route(request()).await.unwrap();
    router.route(request()).await.unwrap();
    let mut counters = Counters::default();
    counters.take(&snapshotter);
    assert_eq!(counters.get(metrics::CACHE_MISSES, None), 1);
    assert_eq!(counters.get(metrics::CACHE_HITS, None), 1);
    let delivered = counters.get(metrics::MESSAGES_ROUTED, Some(("outcome", "delivered")));
    let cached = counters.get(metrics::MESSAGES_ROUTED, Some(("outcome", "cached")));
    assert_eq!((delivered, cached), (1, 1));

    for order in [Override::ForceOpen, Override::Reset] {
        let request = OverrideBreaker {
            system_id: "hhni_001".into(),
            order,
        };
        router.router().send(request).await.unwrap().unwrap();
    }
    counters.take(&snapshotter);
    let transitions = |to| counters.get(metrics::BREAKER_TRANSITIONS, Some(("to", to)));
    assert_eq!((transitions("forced_open"), transitions("closed")), (1, 1));
}

//! Each backend against its real engine: an SQLite file in a temporary folder, and a
//! scratch database on the PostgreSQL at 127.0.0.1:5432.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aimbus_core::{IntegrationStatus, Registry, SystemInfo};
use aimbus_store::testing::ScratchDatabase;
use aimbus_store::{
    Change, Error, NodeRecord, Notice, PoolOptions, RegistryStore, StatusChange, StoredSystem,
};
use chrono::{SubsecRound, Utc};

const POOL: PoolOptions = PoolOptions {
    max_connections: 4,
    acquire_timeout: Duration::from_secs(5),
};

fn system(id: &str, version: &str, dependencies: &[&str]) -> SystemInfo {
    serde_json::from_value(serde_json::json!({
        "system_id": id,
        "system_type": "hhni",
        "name": format!("{id} system"),
        "version": version,
        "capabilities": ["search"],
        "dependencies": dependencies,
        "interfaces": {"amqp": format!("{{namespace}}.system.{id}")},
    }))
    .unwrap()
}

/// Plans `info` against `registry`, commits it to `store`, then to `registry`, as the
/// registry actor does.
async fn put(
    store: &dyn RegistryStore,
    registry: &mut Registry,
    revision: &mut i64,
    info: SystemInfo,
    seeded: bool,
) {
    let planned = registry.plan_registration(info).unwrap();
    let change = Change::Put {
        planned: Box::new(planned.clone()),
        seeded,
    };
    *revision = store.write(*revision, "node-a", &change).await.unwrap();
    registry.commit_registration(planned);
}

fn stored(registry: &Registry) -> Vec<StoredSystem> {
    registry
        .systems()
        .map(|info| StoredSystem {
            info: info.clone(),
            metadata: *registry.metadata(&info.system_id).unwrap(),
            versions: registry.version_history(&info.system_id).to_vec(),
        })
        .collect()
}

/// Registrations, an upgrade, an unregistration and a seed mark read back exactly as the
/// registry holds them; a write checked against an old revision is refused.
async fn keeps_the_registry(store: Arc<dyn RegistryStore>) {
    let store = store.as_ref();
    let mut registry = Registry::new();
    let mut revision = store.load().await.unwrap().revision;
    assert_eq!(revision, 0, "an empty store starts at revision 0");
    put(
        store,
        &mut registry,
        &mut revision,
        system("base_001", "1.0.0", &[]),
        true,
    )
    .await;
    put(
        store,
        &mut registry,
        &mut revision,
        system("user_001", "1.0.0", &["base_001"]),
        false,
    )
    .await;
    put(
        store,
        &mut registry,
        &mut revision,
        system("user_001", "2.0.0", &["base_001"]),
        false,
    )
    .await;
    put(
        store,
        &mut registry,
        &mut revision,
        system("gone_001", "1.0.0", &[]),
        true,
    )
    .await;
    revision = store
        .write(
            revision,
            "node-a",
            &Change::Delete {
                system_id: "gone_001".into(),
            },
        )
        .await
        .unwrap();
    registry.unregister("gone_001").unwrap();
    revision = store
        .write(
            revision,
            "node-a",
            &Change::MarkSeeded {
                system_id: "user_001".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(revision, 6);

    let snapshot = store.load().await.unwrap();
    assert_eq!(snapshot.revision, 6);
    assert_eq!(snapshot.systems, stored(&registry));
    assert_eq!(snapshot.systems[1].versions, ["1.0.0", "2.0.0"]);
    let seeded: BTreeSet<String> = ["base_001", "gone_001", "user_001"]
        .map(String::from)
        .into();
    assert_eq!(snapshot.seeded, seeded, "an unregistered id stays seeded");

    let (at, one) = store.load_system("user_001").await.unwrap();
    assert_eq!((at, one.as_ref()), (6, Some(&snapshot.systems[1])));
    assert_eq!(store.load_system("gone_001").await.unwrap(), (6, None));

    let late = Change::Delete {
        system_id: "base_001".into(),
    };
    match store.write(5, "node-b", &late).await {
        Err(Error::Stale { expected: 5 }) => {}
        other => panic!("a write checked against revision 5 of 6 must be stale: {other:?}"),
    }
    assert_eq!(
        store.load().await.unwrap().systems.len(),
        2,
        "the stale write changed nothing"
    );
}

async fn keeps_status_history_and_nodes(store: Arc<dyn RegistryStore>) {
    let now = Utc::now().trunc_subsecs(6);
    let changes: Vec<StatusChange> = [
        (IntegrationStatus::Disconnected, IntegrationStatus::Healthy),
        (IntegrationStatus::Healthy, IntegrationStatus::Unhealthy),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (previous, status))| StatusChange {
        system_id: "base_001".into(),
        node_id: "node-a".into(),
        previous,
        status,
        reason: format!("check {i}"),
        at: now + chrono::Duration::milliseconds(i as i64),
    })
    .collect();
    store.record_status(&changes).await.unwrap();
    let history = store.status_history("base_001", 10).await.unwrap();
    assert_eq!(
        history,
        changes.iter().rev().cloned().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(store.status_history("base_001", 1).await.unwrap().len(), 1);

    let old = NodeRecord {
        node_id: "node-old".into(),
        started_at: now - chrono::Duration::minutes(10),
        last_seen: now - chrono::Duration::minutes(5),
        gateway: String::new(),
    };
    let mut live = NodeRecord {
        node_id: "node-live".into(),
        started_at: now,
        last_seen: now,
        gateway: "127.0.0.1:8000".into(),
    };
    store.heartbeat(&old).await.unwrap();
    store.heartbeat(&live).await.unwrap();
    live.last_seen = now + chrono::Duration::seconds(5);
    store.heartbeat(&live).await.unwrap();
    let since = now - chrono::Duration::minutes(1);
    assert_eq!(
        store.nodes(since).await.unwrap(),
        [live.clone()],
        "only the live node, refreshed"
    );
    store.forget_node("node-live").await.unwrap();
    assert!(store.nodes(since).await.unwrap().is_empty());
}

fn sqlite_url(folder: &tempfile::TempDir) -> String {
    aimbus_store::sqlite_url(&folder.path().join("nested"))
}

#[tokio::test]
async fn sqlite_keeps_the_registry_in_a_file_it_creates() {
    let folder = tempfile::tempdir().unwrap();
    let url = sqlite_url(&folder);
    keeps_the_registry(aimbus_store::open(&url, POOL).await.unwrap()).await;
    // Opened again, as after a restart: the same registry, the migrations not re-run.
    let reopened = aimbus_store::open(&url, POOL).await.unwrap();
    assert_eq!(reopened.load().await.unwrap().revision, 6);
    assert!(
        folder.path().join("nested/registry.db-wal").exists(),
        "WAL mode"
    );
}

#[tokio::test]
async fn sqlite_keeps_status_history_and_nodes() {
    let folder = tempfile::tempdir().unwrap();
    keeps_status_history_and_nodes(
        aimbus_store::open(&sqlite_url(&folder), POOL)
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres_keeps_the_registry() {
    let database = ScratchDatabase::create().await.unwrap();
    keeps_the_registry(aimbus_store::open(database.url(), POOL).await.unwrap()).await;
    let reopened = aimbus_store::open(database.url(), POOL).await.unwrap();
    assert_eq!(reopened.load().await.unwrap().revision, 6);
}

#[tokio::test]
async fn postgres_keeps_status_history_and_nodes() {
    let database = ScratchDatabase::create().await.unwrap();
    keeps_status_history_and_nodes(aimbus_store::open(database.url(), POOL).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_announces_each_commit_to_every_watcher() {
    let database = ScratchDatabase::create().await.unwrap();
    let writer = aimbus_store::open(database.url(), POOL).await.unwrap();
    let watcher = aimbus_store::open(database.url(), POOL).await.unwrap();
    let mut notices = watcher.watch().expect("postgres announces changes");
    // Once listening, the watcher is told to read what it may have missed before.
    let first = tokio::time::timeout(Duration::from_secs(5), notices.recv()).await;
    assert_eq!(first.unwrap(), Some(Notice::Resync));
    let mut registry = Registry::new();
    let mut revision = 0;
    put(
        writer.as_ref(),
        &mut registry,
        &mut revision,
        system("base_001", "1.0.0", &[]),
        false,
    )
    .await;
    let notice = tokio::time::timeout(Duration::from_secs(2), notices.recv())
        .await
        .expect("announced within 2 s")
        .unwrap();
    assert_eq!(
        notice,
        Notice::Changed {
            revision: 1,
            node_id: "node-a".into(),
            system_id: "base_001".into(),
        }
    );
    // A write that is refused announces nothing.
    let _ = writer
        .write(
            0,
            "node-a",
            &Change::Delete {
                system_id: "base_001".into(),
            },
        )
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notices.recv())
            .await
            .is_err(),
        "a stale write must not be announced"
    );
}

#[tokio::test]
async fn sqlite_announces_nothing() {
    assert!(
        aimbus_store::SqliteStore::in_memory()
            .await
            .unwrap()
            .watch()
            .is_none()
    );
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_with_what_to_write() {
    let error = aimbus_store::open("mysql://localhost/aimbus", POOL)
        .await
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("expected sqlite://… or postgres://…"),
        "{error}"
    );
}

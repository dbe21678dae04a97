//! The durable registry as a user meets it: `aimbus serve` processes, registrations made
//! through the gateway, restarts, `kill -9`, and several nodes on one PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aimbus_store::testing::ScratchDatabase;
use serde_json::{Value, json};

mod common;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/aimbus.toml");
const SHIPPED_SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/systems.toml");

/// The shipped configuration and systems file in a folder of the test's own, where the
/// SQLite store (`data/registry.db`) and the token secret are made.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(SHIPPED, dir.path().join("aimbus.toml")).unwrap();
        std::fs::copy(SHIPPED_SYSTEMS, dir.path().join("systems.toml")).unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("aimbus.toml")
    }

    fn systems_file(&self) -> PathBuf {
        self.dir.path().join("systems.toml")
    }

    fn admin_token(&self) -> String {
        let output = common::aimbus_command()
            .arg("--config")
            .arg(self.config())
            .args([
                "token", "mint", "--sub", "ops", "--role", "admin", "--ttl", "30m",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// One `aimbus serve` without the broker (the registry needs none), on `store` (empty for
/// SQLite in the data directory).
struct Node {
    child: common::Reaped,
    url: String,
}

impl Node {
    fn start(config: &Path, store: &str, node_id: &str) -> Node {
        let mut command = common::aimbus_command();
        command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("AIMBUS_AMQP__ENABLED", "false")
            .env("AIMBUS_REGISTRY__DATABASE_URL", store)
            .env("AIMBUS_CLUSTER__NODE_ID", node_id)
            .env("AIMBUS_CLUSTER__HEARTBEAT_INTERVAL_SECONDS", "1")
            .env("AIMBUS_CLUSTER__NODE_EXPIRY_SECONDS", "3")
            // One operator registers a thousand systems in a burst.
            .env("AIMBUS_RATE_LIMITING__ENABLE_RATE_LIMITING", "false");
        let mut gateway = None;
        let (child, lines) = common::spawn_until(
            &mut command,
            "aimbus is serving",
            Duration::from_secs(60),
            |line| {
                gateway = gateway.take().or_else(|| common::gateway_address(line));
            },
        );
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            url: format!(
                "http://{}",
                gateway.expect("serve logs its gateway address")
            ),
        }
    }

    fn stop(self) {
        common::terminate(self.child);
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn system(id: &str, version: &str) -> Value {
    json!({
        "system_id": id,
        "system_type": "hhni",
        "name": format!("{id} registered through the API"),
        "version": version,
        "capabilities": ["search"],
        "interfaces": {"amqp": format!("{{namespace}}.system.{id}")},
    })
}

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    fn new(token: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            token,
        }
    }

    async fn register(&self, node: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{node}/api/v1/systems"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn unregister(&self, node: &str, id: &str) -> reqwest::StatusCode {
        self.http
            .delete(format!("{node}/api/v1/systems/{id}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The system's version on `node`, `None` when it answers 404.
    async fn version(&self, node: &str, id: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{node}/api/v1/systems/{id}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(response.status().is_success(), "{response:?}");
        let body: Value = response.json().await.unwrap();
        Some(body["version"].as_str().unwrap().to_owned())
    }

    async fn ids(&self, node: &str) -> Vec<String> {
        let systems: Vec<Value> = self
            .http
            .get(format!("{node}/api/v1/systems"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        systems
            .iter()
            .map(|s| s["system_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until `node` answers `expected` for `id`; returns how long that took.
    async fn until_version(&self, node: &str, id: &str, expected: Option<&str>) -> Duration {
        let started = Instant::now();
        while self.version(node, id).await.as_deref() != expected {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{node} never showed {id} at {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }
}

/// Registrations, an upgrade and an unregistration made through the API are all there
/// after a restart; the systems file does not bring back what the API removed.
async fn api_changes_survive_a_restart(store: &str) {
    let setup = Setup::new();
    let api = Api::new(setup.admin_token());
    let node = Node::start(&setup.config(), store, "node-a");
    assert_eq!(
        api.ids(&node.url).await.len(),
        11,
        "seeded from the systems file"
    );
    let created = api.register(&node.url, &system("api_001", "1.0.0")).await;
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let upgraded = api.register(&node.url, &system("hhni_001", "9.0.0")).await;
    assert_eq!(
        upgraded.status(),
        reqwest::StatusCode::OK,
        "an upgrade of a file system"
    );
    assert_eq!(
        api.unregister(&node.url, "apoe_001").await,
        reqwest::StatusCode::OK
    );
    node.stop();

    let node = Node::start(&setup.config(), store, "node-a");
    assert_eq!(
        api.version(&node.url, "api_001").await.as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        api.version(&node.url, "hhni_001").await.as_deref(),
        Some("9.0.0"),
        "the API's upgrade stands; the file does not undo it"
    );
    assert_eq!(
        api.version(&node.url, "apoe_001").await,
        None,
        "unregistered stays so"
    );
    assert_eq!(api.ids(&node.url).await.len(), 11);
    node.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn api_changes_survive_a_restart_on_sqlite() {
    api_changes_survive_a_restart("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_changes_survive_a_restart_on_postgres() {
    let database = ScratchDatabase::create().await.unwrap();
    api_changes_survive_a_restart(database.url()).await;
}

/// The systems file seeds: a system new to the file is registered on the next start; a
/// change to a system the file registered before changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_systems_file_adds_what_is_new_to_it_and_leaves_the_rest() {
    let setup = Setup::new();
    let api = Api::new(setup.admin_token());
    let node = Node::start(&setup.config(), "", "node-a");
    assert_eq!(
        api.version(&node.url, "cmc_001").await.as_deref(),
        Some("1.0.0")
    );
    node.stop();

    let file = std::fs::read_to_string(setup.systems_file()).unwrap();
    let edited = file.replacen("version = \"1.0.0\"", "version = \"7.0.0\"", 1)
        + "\n[[systems]]\nsystem_id = \"file_new_001\"\nsystem_type = \"hhni\"\n\
           name = \"New to the file\"\nversion = \"1.0.0\"\ncapabilities = [\"search\"]\n\
           interfaces = { amqp = \"{namespace}.system.file_new_001\" }\n";
    std::fs::write(setup.systems_file(), edited).unwrap();
    let node = Node::start(&setup.config(), "", "node-a");
    assert_eq!(
        api.version(&node.url, "file_new_001").await.as_deref(),
        Some("1.0.0")
    );
    let first = api.ids(&node.url).await;
    assert_eq!(first.len(), 12);
    let versions: Vec<Option<String>> = versions_of(&api, &node.url, &first).await;
    assert!(
        versions.iter().all(|v| v.as_deref() == Some("1.0.0")),
        "the edited version of a seeded system is not applied: {versions:?}"
    );
    node.stop();
}

async fn versions_of(api: &Api, node: &str, ids: &[String]) -> Vec<Option<String>> {
    let mut versions = Vec::with_capacity(ids.len());
    for id in ids {
        versions.push(api.version(node, id).await);
    }
    versions
}

/// `kill -9` in the middle of 1,000 registrations from four clients: every registration
/// that was answered 201 is there after the restart.
async fn acknowledged_registrations_survive_kill_9(store: &str) {
    const TOTAL: usize = 1000;
    const CLIENTS: usize = 4;
    let setup = Setup::new();
    let api = Arc::new(Api::new(setup.admin_token()));
    let node = Node::start(&setup.config(), store, "node-a");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (api, acknowledged, url) = (
            Arc::clone(&api),
            Arc::clone(&acknowledged),
            node.url.clone(),
        );
        clients.push(tokio::spawn(async move {
            for i in (client..TOTAL).step_by(CLIENTS) {
                let id = format!("crash_{i:04}");
                let sent = api
                    .http
                    .post(format!("{url}/api/v1/systems"))
                    .bearer_auth(&api.token)
                    .json(&system(&id, "1.0.0"))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                        acknowledged.lock().unwrap().push(id);
                    }
                    Ok(response) => panic!("{id}: {}", response.status()),
                    // The process is gone.
                    Err(_) => return,
                }
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < TOTAL / 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "registrations stalled"
        );
        assert!(
            !clients.iter().any(|c| c.is_finished()),
            "a client stopped early"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill();
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let node = Node::start(&setup.config(), store, "node-a");
    let present = api.ids(&node.url).await;
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !present.contains(id))
        .collect();
    let unacknowledged_kept = present.iter().filter(|id| id.starts_with("crash_")).count()
        - (acknowledged.len() - lost.len());
    println!(
        "kill -9 during {TOTAL} registrations ({}): acknowledged {}, lost {}, kept without an answer {}",
        if store.is_empty() {
            "sqlite"
        } else {
            "postgres"
        },
        acknowledged.len(),
        lost.len(),
        unacknowledged_kept,
    );
    assert!(acknowledged.len() < TOTAL, "the kill came before the end");
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    node.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_registrations_survive_kill_9_on_sqlite() {
    acknowledged_registrations_survive_kill_9("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_registrations_survive_kill_9_on_postgres() {
    let database = ScratchDatabase::create().await.unwrap();
    acknowledged_registrations_survive_kill_9(database.url()).await;
}

/// Three nodes on one PostgreSQL: a registration or an unregistration through one is seen
/// by the others within a second; a node started later sees both; every live node is
/// listed with its heartbeat, and a node that stopped is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_one_node_is_seen_on_every_node_within_a_second() {
    let database = ScratchDatabase::create().await.unwrap();
    let setup = Setup::new();
    let api = Api::new(setup.admin_token());
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|id| Node::start(&setup.config(), database.url(), id))
        .collect();
    let (a, b, c) = (&nodes[0].url, &nodes[1].url, &nodes[2].url);

    let created = api.register(a, &system("shared_001", "1.0.0")).await;
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    for other in [b, c] {
        let waited = api.until_version(other, "shared_001", Some("1.0.0")).await;
        println!("registration on node-a seen on {other} after {waited:?}");
        assert!(waited < Duration::from_secs(1), "seen after {waited:?}");
    }
    let upgraded = api.register(c, &system("shared_001", "2.0.0")).await;
    assert_eq!(upgraded.status(), reqwest::StatusCode::OK);
    for other in [a, b] {
        let waited = api.until_version(other, "shared_001", Some("2.0.0")).await;
        assert!(
            waited < Duration::from_secs(1),
            "upgrade seen after {waited:?}"
        );
    }
    assert_eq!(api.unregister(b, "hhni_001").await, reqwest::StatusCode::OK);
    for other in [a, c] {
        let waited = api.until_version(other, "hhni_001", None).await;
        println!("unregistration on node-b seen on {other} after {waited:?}");
        assert!(waited < Duration::from_secs(1), "seen after {waited:?}");
    }
    // A write checked on a node that has not yet heard of another's is checked again:
    // registering the id another node just registered at the same version is a conflict.
    let again = api.register(b, &system("shared_001", "2.0.0")).await;
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);

    let late = Node::start(&setup.config(), database.url(), "node-d");
    assert_eq!(
        api.version(&late.url, "shared_001").await.as_deref(),
        Some("2.0.0")
    );
    assert_eq!(api.version(&late.url, "hhni_001").await, None);

    let listed = |nodes: Vec<Value>| -> Vec<String> {
        nodes
            .iter()
            .map(|n| n["node_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let nodes_on = |url: String| {
        let api = &api;
        async move {
            let response = api
                .http
                .get(format!("{url}/api/v1/nodes"))
                .bearer_auth(&api.token)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{response:?}");
            response.json::<Vec<Value>>().await.unwrap()
        }
    };
    let all = nodes_on(late.url.clone()).await;
    assert_eq!(
        listed(all.clone()),
        ["node-a", "node-b", "node-c", "node-d"]
    );
    assert!(
        all.iter()
            .all(|n| n["last_seen"].is_string() && n["gateway"].is_string()),
        "{all:?}"
    );
    let mut nodes = nodes;
    nodes.remove(0).stop();
    assert_eq!(
        listed(nodes_on(late.url.clone()).await),
        ["node-b", "node-c", "node-d"],
        "a node that left is not listed"
    );
    late.stop();
    for node in nodes {
        node.stop();
    }
}

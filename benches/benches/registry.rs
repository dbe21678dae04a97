//! The registry at scale: 10,000 systems in a random dependency DAG (3 dependencies on
//! average), against a bare `HashMap` insert of the same systems as the baseline; then
//! the same systems registered through the registry actor on each durable store (an
//! SQLite file, a scratch PostgreSQL database), against a bare `sqlx` loop committing the
//! same rows one registration per transaction, as the registry does.
//!
//! Run: `cargo bench -p aimbus-benches --bench registry` (`-- --systems N` to resize).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aimbus_actors::{NodeIdentity, RegistryHandle, TransportSet};
use aimbus_core::{Config, Registry, SystemInfo};
use aimbus_store::PoolOptions;
use aimbus_store::testing::ScratchDatabase;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

const CAPABILITIES: usize = 300;
const SYSTEM_TYPES: [&str; 11] = [
    "cmc",
    "hhni",
    "vif",
    "apoe",
    "seg",
    "sdfcvf",
    "cas",
    "timeline",
    "cross_model",
    "dual_prompt",
    "mcp",
];

/// Systems `0..n`, each depending on 0–6 (3 on average) distinct earlier ones, so file
/// order is a valid registration order.
fn random_dag(n: usize, seed: u64) -> Vec<SystemInfo> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids: Vec<String> = (0..n).map(|i| format!("sys_{i:06}")).collect();
    (0..n)
        .map(|i| {
            let wanted = rng.random_range(0..=6).min(i);
            let dependencies: Vec<&String> = ids[..i].choose_multiple(&mut rng, wanted).collect();
            let capabilities: Vec<String> = (0..3)
                .map(|k| {
                    format!(
                        "cap_{}",
                        (rng.random_range(0..CAPABILITIES) + k) % CAPABILITIES
                    )
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            serde_json::from_value(json!({
                "system_id": ids[i],
                "system_type": SYSTEM_TYPES[i % SYSTEM_TYPES.len()],
                "name": format!("System {i}"),
                "version": format!("1.{}.0", i % 7),
                "capabilities": capabilities,
                "dependencies": dependencies,
                "interfaces": {
                    "rest_api": format!("http://10.0.{}.{}:8080", i / 250, i % 250),
                    "amqp": format!("aimbus.system.{}", ids[i]),
                },
            }))
            .unwrap()
        })
        .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// Best of `runs`, to keep a stray scheduling hiccup out of the figure.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut best: Option<(T, Duration)> = None;
    for _ in 0..runs {
        let (value, took) = timed(&mut f);
        if best.as_ref().is_none_or(|(_, b)| took < *b) {
            best = Some((value, took));
        }
    }
    best.expect("at least one run")
}

fn register_all(systems: &[SystemInfo]) -> Registry {
    let mut registry = Registry::new();
    for system in systems {
        registry.register(system.clone()).expect("a DAG registers");
    }
    registry
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n = std::env::args()
        .skip_while(|a| a != "--systems")
        .nth(1)
        .map_or(10_000, |v| v.parse().expect("--systems takes a number"));
    let systems = random_dag(n, 42);
    let edges: usize = systems.iter().map(|s| s.dependencies.len()).sum();

    let (_, baseline) = best(5, || {
        let mut map = HashMap::with_capacity(systems.len());
        for system in &systems {
            map.insert(system.system_id.clone(), black_box(system.clone()));
        }
        map
    });
    let (registry, register) = best(5, || register_all(&systems));
    let (_, register_half) = best(5, || register_all(&systems[..n / 2]));

    let (chain_lengths, all_chains) = best(3, || {
        systems
            .iter()
            .map(|s| registry.dependency_chain(&s.system_id).unwrap().len())
            .sum::<usize>()
    });
    let (summary, summary_time) = best(5, || registry.summary());
    assert_eq!(summary.total_systems, n);
    assert_eq!(summary.total_dependencies, edges);
    let (found, capability_lookups) = best(5, || {
        (0..CAPABILITIES)
            .map(|c| registry.by_capability(&format!("cap_{c}")).len())
            .sum::<usize>()
    });
    let (_, compatibility) = best(3, || {
        registry.compatibility(&systems[n - 1].system_id).unwrap()
    });

    println!(
        "systems {n}, dependency edges {edges} ({:.2} per system)",
        edges as f64 / n as f64
    );
    println!("baseline HashMap insert      {:>10.2} ms", ms(baseline));
    println!(
        "register all                 {:>10.2} ms ({:.2} µs each)",
        ms(register),
        register.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "register half                {:>10.2} ms (all/half = {:.2}; 2.0 is linear)",
        ms(register_half),
        ms(register) / ms(register_half)
    );
    println!(
        "every dependency chain       {:>10.2} ms (mean length {:.0})",
        ms(all_chains),
        chain_lengths as f64 / n as f64
    );
    println!("summary                      {:>10.2} ms", ms(summary_time));
    println!(
        "{CAPABILITIES} capability lookups      {:>10.2} ms ({found} hits)",
        ms(capability_lookups)
    );
    println!(
        "one compatibility report     {:>10.2} ms",
        ms(compatibility)
    );
    let stores = durable(&systems);
    let mut result = json!({
        "bench": "registry",
        "systems": n,
        "dependency_edges": edges,
        "baseline_hashmap_insert_ms": ms(baseline),
        "register_all_ms": ms(register),
        "register_vs_baseline_ratio": ms(register) / ms(baseline),
        "register_scaling_all_vs_half": ms(register) / ms(register_half),
        "all_dependency_chains_ms": ms(all_chains),
        "mean_chain_length": chain_lengths as f64 / n as f64,
        "summary_ms": ms(summary_time),
        "capability_lookups_ms": ms(capability_lookups),
        "compatibility_ms": ms(compatibility),
    });
    result.as_object_mut().expect("an object").extend(stores);
    println!("RESULT {result}");
}

/// Registers every system through the registry actor on each store, and the bare loop
/// beside it; the figures by backend.
fn durable(systems: &[SystemInfo]) -> serde_json::Map<String, serde_json::Value> {
    actix_rt::System::new().block_on(async {
        let mut figures = serde_json::Map::new();
        let folder = tempfile::tempdir().unwrap();
        let sqlite = |name: &str| format!("sqlite://{}", folder.path().join(name).display());
        // Two rounds, the two loops in turn, the best of each: disks and the machine are
        // noisy, and each round writes into fresh databases.
        let mut best: [(Duration, Duration); 2] = [(Duration::MAX, Duration::MAX); 2];
        for round in 0..2 {
            let databases = [
                ScratchDatabase::create().await.expect("PostgreSQL on 127.0.0.1:5432"),
                ScratchDatabase::create().await.unwrap(),
            ];
            let runs = [
                (sqlite(&format!("registry{round}.db")), sqlite(&format!("bare{round}.db"))),
                (databases[0].url().to_owned(), databases[1].url().to_owned()),
            ];
            for ((store_url, bare_url), best) in runs.iter().zip(&mut best) {
                best.0 = best.0.min(bare_loop(bare_url, systems).await);
                best.1 = best.1.min(through_registry(store_url, systems).await);
            }
        }
        for (backend, (bare, through)) in ["sqlite", "postgres"].into_iter().zip(best) {
            let ratio = bare.as_secs_f64() / through.as_secs_f64();
            println!(
                "{backend:<8} bare sqlx loop {:>10.2} ms, through the registry {:>10.2} ms ({:.0}/s), ratio {ratio:.2}",
                ms(bare),
                ms(through),
                systems.len() as f64 / through.as_secs_f64(),
            );
            figures.insert(format!("{backend}_bare_sqlx_ms"), json!(ms(bare)));
            figures.insert(format!("{backend}_registry_ms"), json!(ms(through)));
            figures.insert(format!("{backend}_ratio_to_bare_sqlx"), json!(ratio));
        }
        figures
    })
}

const POOL: PoolOptions = PoolOptions {
    max_connections: 4,
    acquire_timeout: Duration::from_secs(30),
};

/// What a user's `POST /api/v1/systems` costs past HTTP: one registration after another,
/// each checked, committed and applied before the next.
async fn through_registry(url: &str, systems: &[SystemInfo]) -> Duration {
    let store = aimbus_store::open(url, POOL).await.unwrap();
    let node = NodeIdentity {
        node_id: "bench".into(),
        gateway: String::new(),
        started_at: chrono::Utc::now(),
    };
    let config = Config::default();
    let registry = RegistryHandle::open(&config, TransportSet::default(), store, node)
        .await
        .unwrap();
    let (_, took) = timed_async(async {
        for system in systems {
            registry.register(system.clone()).await.unwrap();
        }
    })
    .await;
    took
}

/// The same rows, one transaction per system, on a store of the same schema and
/// settings, with nothing between: no validation, no indexes, no actor.
async fn bare_loop(url: &str, systems: &[SystemInfo]) -> Duration {
    // The schema, made as the store makes it.
    drop(aimbus_store::open(url, POOL).await.unwrap());
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        // Nothing before each use: the leanest loop sqlx allows.
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                if connection.backend_name() == "SQLite" {
                    use sqlx::Executor;
                    connection
                        .execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap();
    let (_, took) = timed_async(async {
        for (revision, system) in (1_i64..).zip(systems) {
            let now = chrono::Utc::now().timestamp_micros();
            let mut transaction = pool.begin().await.unwrap();
            sqlx::query("UPDATE registry_revision SET revision = $1 WHERE id = 1")
                .bind(revision)
                .execute(&mut *transaction)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO systems (system_id, version, info, registered_at_us, \
                 last_updated_us, revision) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&system.system_id)
            .bind(&system.version)
            .bind(serde_json::to_string(system).unwrap())
            .bind(now)
            .bind(now)
            .bind(revision)
            .execute(&mut *transaction)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO system_versions (system_id, version, revision) VALUES ($1, $2, $3)",
            )
            .bind(&system.system_id)
            .bind(&system.version)
            .bind(revision)
            .execute(&mut *transaction)
            .await
            .unwrap();
            transaction.commit().await.unwrap();
        }
    })
    .await;
    took
}

async fn timed_async<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let value = f.await;
    (value, start.elapsed())
}

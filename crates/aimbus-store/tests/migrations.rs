//! The two backends' migrations must not drift apart: the same migrations, in the same
//! order, giving the same tables with the same columns.

use std::collections::BTreeMap;
use std::time::Duration;

use aimbus_store::PoolOptions;
use aimbus_store::testing::ScratchDatabase;
use sqlx::{Connection, Row};

const POOL: PoolOptions = PoolOptions {
    max_connections: 1,
    acquire_timeout: Duration::from_secs(5),
};

type Tables = BTreeMap<String, Vec<String>>;

fn migration_names(backend: &str) -> Vec<String> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn sqlite_tables(url: &str) -> Tables {
    let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
    let mut tables = Tables::new();
    let names = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for row in names {
        let table: String = row.get("name");
        let columns = sqlx::query("SELECT name FROM pragma_table_info($1) ORDER BY cid")
            .bind(&table)
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get("name"))
            .collect();
        tables.insert(table, columns);
    }
    tables
}

async fn postgres_tables(url: &str) -> Tables {
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let mut tables = Tables::new();
    let rows = sqlx::query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name NOT LIKE '\\_sqlx\\_%' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    for row in rows {
        tables
            .entry(row.get("table_name"))
            .or_default()
            .push(row.get("column_name"));
    }
    tables
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migration_names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite,
        migration_names("postgres"),
        "migrations/sqlite and migrations/postgres"
    );
}

#[tokio::test]
async fn both_backends_make_the_same_tables_and_columns() {
    let folder = tempfile::tempdir().unwrap();
    let sqlite_url = aimbus_store::sqlite_url(folder.path());
    aimbus_store::open(&sqlite_url, POOL).await.unwrap();
    let database = ScratchDatabase::create().await.unwrap();
    aimbus_store::open(database.url(), POOL).await.unwrap();
    let sqlite = sqlite_tables(&sqlite_url).await;
    assert!(sqlite.contains_key("systems"), "{sqlite:?}");
    assert_eq!(sqlite, postgres_tables(database.url()).await);
}

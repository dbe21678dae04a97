//! Embedded SQLite: the default store, a file in the data directory. WAL, so readers never
//! wait for the writer; `synchronous = FULL`, so a committed write survives a crash of
//! the process and of the machine.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, Executor};
use tokio::sync::mpsc;

use crate::sql::{Dialect, SqlStore};
use crate::{Error, Notice, PoolOptions, StoreFuture};

/// The SQLite dialect of [`SqlStore`].
pub struct Sqlite;

pub type SqliteStore = SqlStore<Sqlite>;

impl Dialect for Sqlite {
    const NAME: &'static str = "sqlite";
    // SQLite transactions are serializable already.
    const SNAPSHOT: Option<&'static str> = None;

    fn announce<'c>(&'c self, _: &'c mut AnyConnection, _: String) -> StoreFuture<'c, ()> {
        // One node per file: nobody to tell.
        Box::pin(async { Ok(()) })
    }

    fn watch(&self) -> Option<mpsc::Receiver<Notice>> {
        None
    }
}

impl SqlStore<Sqlite> {
    /// Opens the database file, creating it and its folder on first start, and applies
    /// the migrations.
    pub async fn open(path: &Path, pool: PoolOptions) -> Result<SqliteStore, Error> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| Error::DataDir {
                path: folder.to_owned(),
                source,
            })?;
        }
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display()), pool).await
    }

    /// A store in memory, for tests: the same engine and migrations, kept only while it
    /// lives (one connection, as every connection to `:memory:` is a database of its own).
    pub async fn in_memory() -> Result<SqliteStore, Error> {
        let pool = PoolOptions {
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(5),
        };
        Self::connect("sqlite::memory:", pool).await
    }

    async fn connect(url: &str, options: PoolOptions) -> Result<SqliteStore, Error> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // A file's connection does not break the way a network one does: no ping
            // (a round trip to SQLite's worker thread) before every use.
            .test_before_acquire(false)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| Error::Open {
                backend: Sqlite::NAME,
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate {
                backend: Sqlite::NAME,
                source,
            })?;
        Ok(SqlStore {
            pool,
            dialect: Sqlite,
        })
    }
}

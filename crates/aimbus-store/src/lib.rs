//! The registry's durable store: one interface ([`RegistryStore`]) with two `sqlx`
//! backends, embedded SQLite (the default: a file in the data directory, nothing to
//! install) and PostgreSQL (for several bus nodes). Migrations are embedded per backend
//! and applied when a store opens.
//!
//! The registry actor keeps its indexes in memory and writes through a store: a change
//! is acknowledged only once [`RegistryStore::write`] returned, that is once the store
//! committed it. Every write names the registry revision it was checked against, so two
//! nodes can never both commit changes checked against the same registry.
#![forbid(unsafe_code)]

mod error;
mod postgres;
mod sql;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aimbus_core::{IntegrationStatus, PlannedRegistration, SystemInfo, SystemMetadata};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub use error::Error;
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// What every store call returns: boxed, so the registry can hold any backend as
/// `Arc<dyn RegistryStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A system as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSystem {
    pub info: SystemInfo,
    pub metadata: SystemMetadata,
    /// Every version it has been registered with, oldest first.
    pub versions: Vec<String>,
}

/// The whole registry at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub revision: i64,
    /// Ordered by id.
    pub systems: Vec<StoredSystem>,
    /// Ids the systems file has ever registered: the file does not register them again.
    pub seeded: BTreeSet<String>,
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A registration or an upgrade; `seeded` when the systems file made it.
    Put {
        planned: Box<PlannedRegistration>,
        seeded: bool,
    },
    Delete {
        system_id: String,
    },
    /// The systems file names an id the registry already holds: remember it as seeded,
    /// change nothing else.
    MarkSeeded {
        system_id: String,
    },
}

impl Change {
    pub fn system_id(&self) -> &str {
        match self {
            Change::Put { planned, .. } => &planned.info.system_id,
            Change::Delete { system_id } | Change::MarkSeeded { system_id } => system_id,
        }
    }
}

/// A system's status change as one node saw it (health and status are per node).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub system_id: String,
    pub node_id: String,
    pub previous: IntegrationStatus,
    pub status: IntegrationStatus,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A bus node's heartbeat row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The gateway's address, empty when it serves none.
    pub gateway: String,
}

/// A change another node committed, as the store announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Changed {
        revision: i64,
        node_id: String,
        system_id: String,
    },
    /// Announcements may have been missed (before the watch began listening, or while
    /// its connection was lost): read the registry again.
    Resync,
}

/// How a store's connection pool behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a call waits for a connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
}

/// The registry's store. Every method is one transaction.
pub trait RegistryStore: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// The whole registry, read in one transaction.
    fn load(&self) -> StoreFuture<'_, Snapshot>;

    /// The registry's revision now: a node behind it has changes to read.
    fn revision(&self) -> StoreFuture<'_, i64>;

    /// One system (`None` if it is not registered) and the revision it was read at.
    fn load_system<'a>(
        &'a self,
        system_id: &'a str,
    ) -> StoreFuture<'a, (i64, Option<StoredSystem>)>;

    /// Commits `change` if the registry is still at revision `expected`; returns the new
    /// revision, or [`Error::Stale`] when another writer came first. `node_id` names the
    /// writer in the announcement other nodes receive.
    fn write<'a>(
        &'a self,
        expected: i64,
        node_id: &'a str,
        change: &'a Change,
    ) -> StoreFuture<'a, i64>;

    fn record_status<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()>;

    /// A system's status changes, newest first.
    fn status_history<'a>(
        &'a self,
        system_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StatusChange>>;

    /// Inserts or refreshes a node's heartbeat row.
    fn heartbeat<'a>(&'a self, node: &'a NodeRecord) -> StoreFuture<'a, ()>;

    /// Nodes seen at or after `since`, ordered by id.
    fn nodes(&self, since: DateTime<Utc>) -> StoreFuture<'_, Vec<NodeRecord>>;

    /// Removes a node's heartbeat row: it left cleanly.
    fn forget_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, ()>;

    /// Changes other writers commit, as they commit them. `None` where the backend cannot
    /// announce them (SQLite: one node per file).
    fn watch(&self) -> Option<mpsc::Receiver<Notice>>;
}

/// Where the registry is kept when no `registry.database_url` is set.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("registry.db").display())
}

/// Opens (creating and migrating as needed) the store a URL names: `sqlite://<file>` or
/// `postgres://…`.
pub async fn open(url: &str, pool: PoolOptions) -> Result<Arc<dyn RegistryStore>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteStore::open(Path::new(path), pool).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url, pool).await?))
    } else {
        Err(Error::UnsupportedUrl(url.to_owned()))
    }
}

//! The store's queries, written once for both backends: they run on an `AnyPool`, in the
//! SQL both SQLite and PostgreSQL speak (`$n` parameters, `ON CONFLICT`), with times as
//! microseconds since the epoch. What differs per backend is a [`Dialect`].

use std::collections::BTreeMap;

use aimbus_core::{IntegrationStatus, SystemInfo, SystemMetadata};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::mpsc;

use crate::{
    Change, Error, NodeRecord, Notice, RegistryStore, Snapshot, StatusChange, StoreFuture,
    StoredSystem,
};

/// What one backend does its own way.
pub trait Dialect: Send + Sync + 'static {
    const NAME: &'static str;
    /// Run first in a read transaction that must see one snapshot throughout.
    const SNAPSHOT: Option<&'static str>;

    /// Tells other nodes, inside the write's transaction, about a change it commits.
    fn announce<'c>(
        &'c self,
        connection: &'c mut AnyConnection,
        payload: String,
    ) -> StoreFuture<'c, ()>;

    fn watch(&self) -> Option<mpsc::Receiver<Notice>>;
}

/// A registry store on one backend: [`crate::SqliteStore`] or [`crate::PostgresStore`].
pub struct SqlStore<D> {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: D,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(system_id: &str, micros: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::BadTimestamp {
        system_id: system_id.to_owned(),
        micros,
    })
}

fn status(name: &str) -> IntegrationStatus {
    // Written from `IntegrationStatus`'s own names; an unknown one (a newer node's) reads
    // as the status that claims nothing.
    IntegrationStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == name)
        .unwrap_or(IntegrationStatus::Disconnected)
}

const SELECT_SYSTEMS: &str =
    "SELECT system_id, info, registered_at_us, last_updated_us FROM systems";
const SELECT_VERSIONS: &str = "SELECT system_id, version FROM system_versions";

fn system_of(row: &AnyRow, versions: Vec<String>) -> Result<StoredSystem, Error> {
    let system_id: String = row.try_get("system_id")?;
    let info: String = row.try_get("info")?;
    let info: SystemInfo = serde_json::from_str(&info).map_err(|source| Error::Corrupt {
        system_id: system_id.clone(),
        source,
    })?;
    Ok(StoredSystem {
        metadata: SystemMetadata {
            registered_at: time(&system_id, row.try_get("registered_at_us")?)?,
            last_updated: time(&system_id, row.try_get("last_updated_us")?)?,
        },
        info,
        versions,
    })
}

async fn revision(connection: &mut AnyConnection) -> Result<i64, Error> {
    Ok(
        sqlx::query("SELECT revision FROM registry_revision WHERE id = 1")
            .fetch_one(connection)
            .await?
            .try_get("revision")?,
    )
}

impl<D: Dialect> SqlStore<D> {
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        let mut transaction = self.pool.begin().await?;
        if let Some(snapshot) = D::SNAPSHOT {
            sqlx::query(snapshot).execute(&mut *transaction).await?;
        }
        Ok(transaction)
    }

    async fn load_all(&self) -> Result<Snapshot, Error> {
        let mut transaction = self.begin_read().await?;
        let revision = revision(&mut transaction).await?;
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sqlx::query(&format!("{SELECT_VERSIONS} ORDER BY system_id, revision"))
            .fetch_all(&mut *transaction)
            .await?
        {
            versions
                .entry(row.try_get("system_id")?)
                .or_default()
                .push(row.try_get("version")?);
        }
        let systems = sqlx::query(&format!("{SELECT_SYSTEMS} ORDER BY system_id"))
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| {
                let id: String = row.try_get("system_id")?;
                system_of(row, versions.remove(&id).unwrap_or_default())
            })
            .collect::<Result<_, Error>>()?;
        let seeded = sqlx::query("SELECT system_id FROM seeded_systems")
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| row.try_get("system_id"))
            .collect::<Result<_, _>>()?;
        transaction.commit().await?;
        Ok(Snapshot {
            revision,
            systems,
            seeded,
        })
    }

    async fn load_one(&self, system_id: &str) -> Result<(i64, Option<StoredSystem>), Error> {
        let mut transaction = self.begin_read().await?;
        let revision = revision(&mut transaction).await?;
        let versions = sqlx::query(&format!(
            "{SELECT_VERSIONS} WHERE system_id = $1 ORDER BY revision"
        ))
        .bind(system_id)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(|row| row.try_get("version"))
        .collect::<Result<_, _>>()?;
        let row = sqlx::query(&format!("{SELECT_SYSTEMS} WHERE system_id = $1"))
            .bind(system_id)
            .fetch_optional(&mut *transaction)
            .await?;
        transaction.commit().await?;
        let system = row.map(|row| system_of(&row, versions)).transpose()?;
        Ok((revision, system))
    }

    async fn commit(&self, expected: i64, node_id: &str, change: &Change) -> Result<i64, Error> {
        let mut transaction = self.pool.begin().await?;
        // A write first, so SQLite takes its write lock at once (a read first could leave
        // two connections each waiting for the other to upgrade).
        let bumped = sqlx::query(
            "UPDATE registry_revision SET revision = revision + 1 WHERE id = 1 AND revision = $1",
        )
        .bind(expected)
        .execute(&mut *transaction)
        .await?;
        if bumped.rows_affected() != 1 {
            return Err(Error::Stale { expected });
        }
        let revision = expected + 1;
        let now = micros(Utc::now());
        match change {
            Change::Put { planned, seeded } => {
                let info = &planned.info;
                let json = serde_json::to_string(info).map_err(|source| Error::Corrupt {
                    system_id: info.system_id.clone(),
                    source,
                })?;
                sqlx::query(
                    "INSERT INTO systems \
                     (system_id, version, info, registered_at_us, last_updated_us, revision) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (system_id) DO UPDATE SET version = excluded.version, \
                     info = excluded.info, registered_at_us = excluded.registered_at_us, \
                     last_updated_us = excluded.last_updated_us, revision = excluded.revision",
                )
                .bind(&info.system_id)
                .bind(&info.version)
                .bind(json)
                .bind(micros(planned.metadata.registered_at))
                .bind(micros(planned.metadata.last_updated))
                .bind(revision)
                .execute(&mut *transaction)
                .await?;
                sqlx::query(
                    "INSERT INTO system_versions (system_id, version, revision) \
                     VALUES ($1, $2, $3) ON CONFLICT (system_id, version) DO NOTHING",
                )
                .bind(&info.system_id)
                .bind(&info.version)
                .bind(revision)
                .execute(&mut *transaction)
                .await?;
                if *seeded {
                    mark_seeded(&mut transaction, &info.system_id, now).await?;
                }
            }
            Change::Delete { system_id } => {
                for table in ["systems", "system_versions"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE system_id = $1"))
                        .bind(system_id)
                        .execute(&mut *transaction)
                        .await?;
                }
            }
            Change::MarkSeeded { system_id } => {
                mark_seeded(&mut transaction, system_id, now).await?;
            }
        }
        let announcement = serde_json::json!({
            "revision": revision,
            "node_id": node_id,
            "system_id": change.system_id(),
        });
        self.dialect
            .announce(&mut transaction, announcement.to_string())
            .await?;
        transaction.commit().await?;
        Ok(revision)
    }
}

async fn mark_seeded(
    connection: &mut AnyConnection,
    system_id: &str,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO seeded_systems (system_id, seeded_at_us) VALUES ($1, $2) \
         ON CONFLICT (system_id) DO NOTHING",
    )
    .bind(system_id)
    .bind(now)
    .execute(connection)
    .await?;
    Ok(())
}

/// Reads an announcement back; `None` for one this version cannot read.
pub(crate) fn notice(payload: &str) -> Option<Notice> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some(Notice::Changed {
        revision: value.get("revision")?.as_i64()?,
        node_id: value.get("node_id")?.as_str()?.to_owned(),
        system_id: value.get("system_id")?.as_str()?.to_owned(),
    })
}

fn node_of(row: &AnyRow) -> Result<NodeRecord, Error> {
    let node_id: String = row.try_get("node_id")?;
    Ok(NodeRecord {
        started_at: time(&node_id, row.try_get("started_at_us")?)?,
        last_seen: time(&node_id, row.try_get("last_seen_us")?)?,
        gateway: row.try_get("gateway")?,
        node_id,
    })
}

impl<D: Dialect> RegistryStore for SqlStore<D> {
    fn backend(&self) -> &'static str {
        D::NAME
    }

    fn load(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(self.load_all())
    }

    fn revision(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let mut connection = self.pool.acquire().await?;
            revision(&mut connection).await
        })
    }

    fn load_system<'a>(
        &'a self,
        system_id: &'a str,
    ) -> StoreFuture<'a, (i64, Option<StoredSystem>)> {
        Box::pin(self.load_one(system_id))
    }

    fn write<'a>(
        &'a self,
        expected: i64,
        node_id: &'a str,
        change: &'a Change,
    ) -> StoreFuture<'a, i64> {
        Box::pin(self.commit(expected, node_id, change))
    }

    fn record_status<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut transaction = self.pool.begin().await?;
            for change in changes {
                sqlx::query(
                    "INSERT INTO status_history \
                     (system_id, node_id, previous, status, reason, at_us) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&change.system_id)
                .bind(&change.node_id)
                .bind(change.previous.as_str())
                .bind(change.status.as_str())
                .bind(&change.reason)
                .bind(micros(change.at))
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?;
            Ok(())
        })
    }

    fn status_history<'a>(
        &'a self,
        system_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<StatusChange>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT node_id, previous, status, reason, at_us FROM status_history \
                 WHERE system_id = $1 ORDER BY at_us DESC, id DESC LIMIT $2",
            )
            .bind(system_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(StatusChange {
                    system_id: system_id.to_owned(),
                    node_id: row.try_get("node_id")?,
                    previous: status(row.try_get("previous")?),
                    status: status(row.try_get("status")?),
                    reason: row.try_get("reason")?,
                    at: time(system_id, row.try_get("at_us")?)?,
                })
            })
            .collect()
        })
    }

    fn heartbeat<'a>(&'a self, node: &'a NodeRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO nodes (node_id, started_at_us, last_seen_us, gateway) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (node_id) DO UPDATE SET \
                 started_at_us = excluded.started_at_us, last_seen_us = excluded.last_seen_us, \
                 gateway = excluded.gateway",
            )
            .bind(&node.node_id)
            .bind(micros(node.started_at))
            .bind(micros(node.last_seen))
            .bind(&node.gateway)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn nodes(&self, since: DateTime<Utc>) -> StoreFuture<'_, Vec<NodeRecord>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT node_id, started_at_us, last_seen_us, gateway FROM nodes \
                 WHERE last_seen_us >= $1 ORDER BY node_id",
            )
            .bind(micros(since))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(node_of)
            .collect()
        })
    }

    fn forget_node<'a>(&'a self, node_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM nodes WHERE node_id = $1")
                .bind(node_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn watch(&self) -> Option<mpsc::Receiver<Notice>> {
        self.dialect.watch()
    }
}

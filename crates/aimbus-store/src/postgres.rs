//! PostgreSQL: the store several bus nodes share. A write announces itself with
//! `pg_notify` inside its transaction, so the announcement goes out exactly when the
//! change commits, and every node's [`RegistryStore::watch`] hears it.

use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::sql::{Dialect, SqlStore, notice};
use aimbus_core::Backoff;

use crate::{Error, Notice, PoolOptions, StoreFuture};

/// The channel registry changes are announced on.
const CHANNEL: &str = "aimbus_registry";

/// The PostgreSQL dialect of [`SqlStore`].
pub struct Postgres {
    url: String,
}

pub type PostgresStore = SqlStore<Postgres>;

impl Dialect for Postgres {
    const NAME: &'static str = "postgres";
    // Every statement of a load reads the same committed state.
    const SNAPSHOT: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");

    fn announce<'c>(
        &'c self,
        connection: &'c mut AnyConnection,
        payload: String,
    ) -> StoreFuture<'c, ()> {
        Box::pin(async move {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(connection)
                .await?;
            Ok(())
        })
    }

    fn watch(&self) -> Option<mpsc::Receiver<Notice>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen(self.url.clone(), sender));
        Some(receiver)
    }
}

/// Hears announcements until the receiver is dropped. Each time LISTEN takes effect (the
/// first time, and after every lost connection) the watcher is told to resync: what was
/// committed before was announced to nobody.
async fn listen(url: String, sender: mpsc::Sender<Notice>) {
    let mut backoff = Backoff::reconnect();
    let mut lost = false;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                if !lost {
                    tracing::warn!(%error, "cannot listen for registry changes; retrying");
                    lost = true;
                }
                tokio::time::sleep(backoff.next_wait()).await;
                if sender.is_closed() {
                    return;
                }
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for registry changes; retrying");
            tokio::time::sleep(backoff.next_wait()).await;
            continue;
        }
        if lost {
            tracing::info!("listening for registry changes again");
        }
        // What was committed before LISTEN took effect (since the watcher last read the
        // registry, at its start or before the connection was lost) was announced to
        // nobody: the watcher reads the registry again, once, now that nothing more can
        // slip by.
        if sender.send(Notice::Resync).await.is_err() {
            return;
        }
        backoff.reset();
        loop {
            tokio::select! {
                () = sender.closed() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if let Some(notice) = notice(notification.payload()) {
                            if sender.send(notice).await.is_err() {
                                return;
                            }
                        }
                    }
                    // `None`: the connection was lost; anything sent meanwhile is gone.
                    Ok(None) | Err(_) => {
                        tracing::warn!("lost the registry change announcements; reconnecting");
                        lost = true;
                        break;
                    }
                },
            }
        }
    }
}

impl SqlStore<Postgres> {
    /// Connects and applies the migrations (each node may; PostgreSQL's migration lock
    /// lets one at a time).
    pub async fn open(url: &str, options: PoolOptions) -> Result<PostgresStore, Error> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(|source| Error::Open {
                backend: Postgres::NAME,
                source,
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate {
                backend: Postgres::NAME,
                source,
            })?;
        Ok(SqlStore {
            pool,
            dialect: Postgres {
                url: url.to_owned(),
            },
        })
    }
}

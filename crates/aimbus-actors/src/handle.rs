use actix::prelude::*;
use aimbus_core::{
    Config, HealthCheckResult, IntegrationStatus, Registration, Registry, SystemInfo,
};

use std::sync::Arc;

use aimbus_store::{NodeRecord, RegistryStore, StatusChange};

use crate::Error;
use crate::registry_actor::{
    ApplyHealthCheck, ChildState, GetChild, Leave, ListNodes, NodeIdentity, Query, Register,
    RegistryActor, Seed, SetStatus, StatusHistory, Subscribe, Subscription, Unregister,
};
use crate::system_actor::{Fault, SystemDirectory};
use crate::transport::TransportSet;

/// A cheap, cloneable way to talk to the registry actor. Every call is one message; the
/// actor's mailbox is bounded, so callers wait when it is full rather than piling up.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<RegistryActor>,
    directory: SystemDirectory,
}

impl RegistryHandle {
    /// Reads the registry from `store` and starts the registry actor on the current actix
    /// arbiter, with an actor for every stored system; its system actors deliver through
    /// `transports`. It takes the whole `Config`, which only exists validated, so no
    /// unchecked setting (an event buffer of 0, say) ever reaches the actor.
    pub async fn open(
        config: &Config,
        transports: TransportSet,
        store: Arc<dyn RegistryStore>,
        node: NodeIdentity,
    ) -> Result<RegistryHandle, Error> {
        let snapshot = store
            .load()
            .await
            .map_err(|source| Error::store(source, std::time::Duration::from_secs(1)))?;
        tracing::info!(
            backend = store.backend(),
            systems = snapshot.systems.len(),
            revision = snapshot.revision,
            "registry read from its store"
        );
        // Listed before anything says the node serves: a node that answered requests but
        // was missing from the node list (its first beat still on its way) was seen.
        if let Err(error) = store.heartbeat(&node.heartbeat()).await {
            tracing::warn!(%error, "the node's first heartbeat was not written");
        }
        let actor = RegistryActor::new(config, transports, store, node, snapshot);
        let directory = actor.directory();
        Ok(RegistryHandle {
            addr: actor.start(),
            directory,
        })
    }

    /// A registry on a store of its own in memory (SQLite's `:memory:`): the same engine
    /// and write path as a durable one, kept only while it runs. For tests and benches.
    pub async fn in_memory(
        config: &Config,
        transports: TransportSet,
    ) -> Result<RegistryHandle, Error> {
        let store = aimbus_store::SqliteStore::in_memory()
            .await
            .map_err(|source| Error::store(source, std::time::Duration::from_secs(1)))?;
        let node = NodeIdentity {
            node_id: "in-memory".to_owned(),
            gateway: String::new(),
            started_at: chrono::Utc::now(),
        };
        RegistryHandle::open(config, transports, Arc::new(store), node).await
    }

    pub fn addr(&self) -> &Addr<RegistryActor> {
        &self.addr
    }

    /// The running actor of each system.
    pub fn directory(&self) -> &SystemDirectory {
        &self.directory
    }

    async fn call<M>(&self, message: M) -> Result<M::Result, Error>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        RegistryActor: Handler<M>,
    {
        self.addr
            .send(message)
            .await
            .map_err(Error::stopped("registry"))
    }

    /// Answers once the store committed the registration.
    pub async fn register(&self, info: SystemInfo) -> Result<Registration, Error> {
        self.call(Register(info)).await?
    }

    /// Registers a system of the systems file unless the file registered it before;
    /// answers whether it did.
    pub async fn seed(&self, info: SystemInfo) -> Result<bool, Error> {
        self.call(Seed(info)).await?
    }

    /// Answers once the store committed the unregistration.
    pub async fn unregister(&self, system_id: &str) -> Result<SystemInfo, Error> {
        self.call(Unregister(system_id.to_owned())).await?
    }

    /// The nodes whose heartbeat is recent, ordered by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        self.call(ListNodes).await?
    }

    /// A system's status changes as every node recorded them, newest first.
    pub async fn status_history(
        &self,
        system_id: &str,
        limit: u32,
    ) -> Result<Vec<StatusChange>, Error> {
        let query = StatusHistory {
            system_id: system_id.to_owned(),
            limit,
        };
        self.call(query).await?
    }

    /// Removes this node's heartbeat row: it is shutting down.
    pub async fn leave(&self) -> Result<(), Error> {
        self.call(Leave).await
    }

    /// Runs a read-only question against the registry inside the actor.
    pub async fn query<R, F>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&Registry) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call(Query::new(f)).await
    }

    pub async fn set_status(
        &self,
        system_id: &str,
        status: IntegrationStatus,
        reason: impl Into<String>,
    ) -> Result<IntegrationStatus, Error> {
        let message = SetStatus {
            system_id: system_id.to_owned(),
            status,
            reason: reason.into(),
        };
        Ok(self.call(message).await??)
    }

    pub async fn apply_health_check(
        &self,
        result: HealthCheckResult,
    ) -> Result<IntegrationStatus, Error> {
        Ok(self.call(ApplyHealthCheck(result)).await??)
    }

    pub async fn subscribe(&self) -> Result<Subscription, Error> {
        self.call(Subscribe).await
    }

    /// The supervisor's view of a system's actor, `None` for an unknown system.
    pub async fn child(&self, system_id: &str) -> Result<Option<ChildState>, Error> {
        self.call(GetChild(system_id.to_owned())).await
    }

    /// Reports that a system's connection is broken: its actor ends and is restarted after
    /// a backoff, or the system is marked failed past the restart limit.
    pub async fn report_fault(
        &self,
        system_id: &str,
        reason: impl Into<String>,
    ) -> Result<(), Error> {
        let addr = self
            .child(system_id)
            .await?
            .and_then(|child| child.addr)
            .ok_or_else(|| Error::SystemActorDown(system_id.to_owned()))?;
        addr.send(Fault {
            reason: reason.into(),
        })
        .await
        .map_err(|_| Error::SystemActorDown(system_id.to_owned()))
    }
}

use actix::prelude::*;
use aimbus_core::{
    Config, HealthCheckResult, IntegrationStatus, Registration, Registry, SystemInfo,
};

use crate::Error;
use crate::registry_actor::{
    ApplyHealthCheck, ChildState, GetChild, Query, Register, RegistryActor, SetStatus, Subscribe,
    Subscription, Unregister,
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
    /// Starts the registry actor on the current actix arbiter; its system actors deliver
    /// through `transports`. It takes the whole `Config`, which only exists validated, so
    /// no unchecked setting (an event buffer of 0, say) ever reaches the actor.
    pub fn start(config: &Config, transports: TransportSet) -> RegistryHandle {
        let actor = RegistryActor::new(config.supervision(), transports);
        let directory = actor.directory();
        RegistryHandle {
            addr: actor.start(),
            directory,
        }
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

    pub async fn register(&self, info: SystemInfo) -> Result<Registration, Error> {
        Ok(self.call(Register(info)).await??)
    }

    pub async fn unregister(&self, system_id: &str) -> Result<SystemInfo, Error> {
        Ok(self.call(Unregister(system_id.to_owned())).await??)
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

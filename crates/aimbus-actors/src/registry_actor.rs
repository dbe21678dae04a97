//! The registry actor: owns the [`Registry`] state, starts one [`SystemActor`] per
//! registered system, restarts those that fail, and publishes every change.
//!
//! The registry is durable: a change is checked against memory, committed to the store,
//! and only then applied to memory and answered. Writes go one at a time through a queue
//! (reads are answered meanwhile, from memory); changes other nodes commit arrive as the
//! store's notices and go through the same queue, so a write is always checked against
//! everything committed before it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use aimbus_core::{
    Config, HealthCheckResult, IntegrationStatus, PerformanceMetrics, PlannedRegistration,
    Registration, Registry, RegistryEvent, SystemInfo, SystemMetadata,
};
use aimbus_store::{
    Change, NodeRecord, Notice, RegistryStore, Snapshot, StatusChange, StoredSystem,
};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::Error;
use crate::supervision::{RestartPolicy, RestartTracker, Verdict};
use crate::system_actor::{ChildExited, ExitReason, Shutdown, SystemActor, SystemDirectory};
use crate::transport::TransportSet;

/// How often a write checked against a registry another node has since changed is
/// checked again, after reading the changes, before it is refused as contended.
const STALE_RETRIES: u32 = 5;
/// After the store failed a write, further writes are refused at once for this long
/// rather than each waiting out the store's timeout.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Status changes waiting to be written to the store's history.
const STATUS_LOG_CAPACITY: usize = 4096;

/// This bus node, as the store and other nodes know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    /// The gateway's address, empty when it serves none.
    pub gateway: String,
    pub started_at: DateTime<Utc>,
}

impl NodeIdentity {
    /// This node's heartbeat row, seen now.
    pub(crate) fn heartbeat(&self) -> NodeRecord {
        NodeRecord {
            node_id: self.node_id.clone(),
            started_at: self.started_at,
            last_seen: Utc::now(),
            gateway: self.gateway.clone(),
        }
    }
}

pub struct RegistryActor {
    registry: Registry,
    children: HashMap<String, Child>,
    policy: RestartPolicy,
    mailbox_capacity: usize,
    events: broadcast::Sender<RegistryEvent>,
    transports: TransportSet,
    directory: SystemDirectory,
    store: Arc<dyn RegistryStore>,
    node: NodeIdentity,
    heartbeat_interval: Duration,
    node_expiry: Duration,
    /// The store revision memory holds.
    revision: i64,
    /// Ids the systems file has registered once: it does not register them again.
    seeded: BTreeSet<String>,
    writes: VecDeque<Write>,
    /// A write (or a read of the store's changes) is in progress.
    writing: bool,
    /// Until then, writes are refused without trying the store.
    store_retry_at: Option<Instant>,
    status_log: mpsc::Sender<StatusChange>,
}

/// One queued change, and who waits for its outcome.
struct Write {
    op: WriteOp,
    reply: Option<oneshot::Sender<Result<WriteOutcome, Error>>>,
    stale_retries: u32,
    /// A refusal that depends on what the registry holds (an unknown dependency, a
    /// duplicate) was found to be checked against the store's latest revision.
    checked_fresh: bool,
}

enum WriteOp {
    Register(SystemInfo),
    /// A system of the systems file: registered unless the registry holds it already.
    Seed(SystemInfo),
    Unregister(String),
    /// Another node committed a change to `system_id` at `revision`.
    Sync {
        system_id: String,
        revision: i64,
    },
    /// Read the whole registry again: changes may have been missed.
    Resync,
}

enum WriteOutcome {
    Registered(Registration),
    Unregistered(Box<SystemInfo>),
    Seeded,
}

/// The supervisor's record of one system's actor.
struct Child {
    /// `None` while waiting to restart, or after giving up.
    addr: Option<Addr<SystemActor>>,
    generation: u64,
    tracker: RestartTracker,
}

/// A running child as tests and operators see it.
#[derive(Debug, Clone)]
pub struct ChildState {
    pub addr: Option<Addr<SystemActor>>,
    pub generation: u64,
    /// Restarts within the current window.
    pub restarts: u32,
}

impl RegistryActor {
    /// The actor for the registry `snapshot` holds, writing through `store`.
    pub fn new(
        config: &Config,
        transports: TransportSet,
        store: Arc<dyn RegistryStore>,
        node: NodeIdentity,
        snapshot: Snapshot,
    ) -> RegistryActor {
        let supervision = config.supervision();
        let mut registry = Registry::new();
        for system in snapshot.systems {
            registry.restore(system.info, system.metadata, system.versions);
        }
        RegistryActor {
            registry,
            children: HashMap::new(),
            policy: RestartPolicy::from(supervision),
            mailbox_capacity: supervision.mailbox_capacity,
            events: broadcast::channel(supervision.event_buffer).0,
            transports,
            directory: SystemDirectory::default(),
            status_log: spawn_status_log(Arc::clone(&store)),
            store,
            node,
            heartbeat_interval: Duration::from_secs(config.cluster().heartbeat_interval_seconds),
            node_expiry: Duration::from_secs(config.cluster().node_expiry_seconds),
            revision: snapshot.revision,
            seeded: snapshot.seeded,
            writes: VecDeque::new(),
            writing: false,
            store_retry_at: None,
        }
    }

    /// Where the running system actors are found.
    pub fn directory(&self) -> SystemDirectory {
        self.directory.clone()
    }

    fn publish(&self, event: RegistryEvent) {
        // No subscriber is not an error: the event matters only to those listening.
        let _ = self.events.send(event);
    }

    fn spawn_child(
        &self,
        system_id: &str,
        generation: u64,
        ctx: &Context<Self>,
    ) -> Addr<SystemActor> {
        let system = self
            .registry
            .get(system_id)
            .cloned()
            .expect("children exist only for registered systems");
        let addr = SystemActor::new(
            Arc::new(system),
            generation,
            self.transports.clone(),
            self.mailbox_capacity,
            ctx.address().recipient(),
        )
        .start();
        self.directory.set(system_id, addr.clone());
        addr
    }

    fn change_status(&mut self, system_id: &str, status: IntegrationStatus, reason: String) {
        if let Ok(previous) = self.registry.set_status(system_id, status) {
            self.publish_status(system_id, previous, status, reason);
        }
    }

    fn publish_status(
        &self,
        system_id: &str,
        previous: IntegrationStatus,
        status: IntegrationStatus,
        reason: String,
    ) {
        if previous == status {
            return;
        }
        tracing::info!(system_id, %previous, %status, %reason, "system status changed");
        let at = Utc::now();
        let change = StatusChange {
            system_id: system_id.to_owned(),
            node_id: self.node.node_id.clone(),
            previous,
            status,
            reason: reason.clone(),
            at,
        };
        if self.status_log.try_send(change).is_err() {
            metrics::counter!(crate::metrics::STATUS_HISTORY_DROPPED).increment(1);
        }
        self.publish(RegistryEvent::StatusUpdate {
            system_id: system_id.to_owned(),
            previous,
            status,
            reason,
            at,
        });
    }

    /// Starts (or, for a new version, restarts) the actor of a system memory now holds.
    fn start_child(&mut self, system_id: &str, ctx: &Context<Self>) {
        // An upgrade is a new deployment: it gets a fresh actor and restart history.
        let generation = match self.children.remove(system_id) {
            Some(old) => {
                if let Some(addr) = old.addr {
                    addr.do_send(Shutdown);
                }
                old.generation + 1
            }
            None => 0,
        };
        let addr = self.spawn_child(system_id, generation, ctx);
        self.children.insert(
            system_id.to_owned(),
            Child {
                addr: Some(addr),
                generation,
                tracker: RestartTracker::new(Instant::now()),
            },
        );
    }

    fn stop_child(&mut self, system_id: &str) {
        if let Some(addr) = self.children.remove(system_id).and_then(|c| c.addr) {
            addr.do_send(Shutdown);
        }
        self.directory.remove(system_id);
    }

    /// Puts a committed registration into memory, starts its actor and publishes it.
    fn install(
        &mut self,
        info: SystemInfo,
        metadata: SystemMetadata,
        versions: Vec<String>,
        ctx: &Context<Self>,
    ) -> Registration {
        let system_id = info.system_id.clone();
        let previous_version = self.registry.get(&system_id).map(|s| s.version.clone());
        self.registry.restore(info.clone(), metadata, versions);
        self.start_child(&system_id, ctx);
        tracing::info!(%system_id, name = %info.name, version = %info.version, "system registered");
        match previous_version {
            None => {
                self.publish(RegistryEvent::SystemRegistered { system: info });
                Registration::Added
            }
            Some(previous_version) => {
                self.publish(RegistryEvent::SystemUpdated {
                    system: info,
                    previous_version: previous_version.clone(),
                });
                Registration::Upgraded { previous_version }
            }
        }
    }

    /// Takes a committed unregistration out of memory, stops its actor and publishes it.
    fn uninstall(&mut self, system_id: &str) -> Result<SystemInfo, aimbus_core::Error> {
        let info = self.registry.unregister(system_id)?;
        self.stop_child(system_id);
        tracing::info!(%system_id, "system unregistered");
        self.publish(RegistryEvent::SystemUnregistered {
            system_id: system_id.to_owned(),
        });
        Ok(info)
    }

    /// Makes memory what the store holds for one system (another node changed it).
    fn converge(&mut self, system_id: &str, stored: Option<StoredSystem>, ctx: &Context<Self>) {
        match stored {
            // The same write as memory holds: nothing to do (and no actor restart).
            Some(s) if self.registry.metadata(system_id) == Some(&s.metadata) => {}
            Some(s) => {
                self.install(s.info, s.metadata, s.versions, ctx);
            }
            None => {
                let _ = self.uninstall(system_id);
            }
        }
    }

    fn enqueue(
        &mut self,
        op: WriteOp,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<WriteOutcome, Error>> {
        let (reply, outcome) = oneshot::channel();
        self.writes.push_back(Write {
            op,
            reply: Some(reply),
            stale_retries: 0,
            checked_fresh: false,
        });
        self.pump(ctx);
        outcome
    }

    /// Starts the next queued write unless one is in progress. Reads of other nodes'
    /// changes run in the queue too, so no write is checked against a registry they are
    /// halfway through changing.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while !self.writing {
            let Some(write) = self.writes.pop_front() else {
                return;
            };
            match write.op {
                WriteOp::Sync {
                    system_id,
                    revision,
                } => self.sync(system_id, revision, ctx),
                WriteOp::Resync => self.resync(ctx),
                _ => self.start_write(write, ctx),
            }
        }
    }

    fn start_write(&mut self, mut write: Write, ctx: &mut Context<Self>) {
        let change = match self.plan(&write.op) {
            Ok(Some(change)) => change,
            Ok(None) => return write.answer(Ok(WriteOutcome::Seeded)),
            Err(error) if depends_on_state(&error) && !write.checked_fresh => {
                return self.check_fresh(write, error, ctx);
            }
            Err(error) => return write.answer(Err(error)),
        };
        if self.store_retry_at.is_some_and(|at| Instant::now() < at) {
            return write.answer(Err(Error::StoreUnavailable {
                retry_after: STORE_RETRY_AFTER,
            }));
        }
        self.writing = true;
        let store = Arc::clone(&self.store);
        let node_id = self.node.node_id.clone();
        let expected = self.revision;
        let commit = async move {
            let revision = store.write(expected, &node_id, &change).await;
            (revision, change)
        };
        ctx.spawn(
            commit
                .into_actor(self)
                .map(move |(revision, change), actor, ctx| {
                    actor.writing = false;
                    match revision {
                        Ok(revision) => {
                            actor.revision = revision;
                            actor.store_retry_at = None;
                            let outcome = actor.apply(change, ctx);
                            write.answer(outcome);
                        }
                        Err(aimbus_store::Error::Stale { .. })
                            if write.stale_retries < STALE_RETRIES =>
                        {
                            // Another node came first: read what it did, then check this
                            // write again, ahead of everything queued after it.
                            write.stale_retries += 1;
                            actor.writes.push_front(write);
                            actor.writes.push_front(Write::internal(WriteOp::Resync));
                        }
                        Err(error) => {
                            if matches!(error, aimbus_store::Error::Unavailable(_)) {
                                tracing::warn!(%error, "the registry store is unavailable; refusing writes");
                                actor.store_retry_at = Some(Instant::now() + STORE_RETRY_AFTER);
                            }
                            write.answer(Err(Error::store(error, STORE_RETRY_AFTER)));
                        }
                    }
                    actor.pump(ctx);
                }),
        );
    }

    /// A write refused for what memory holds: refused for good only if memory is the
    /// store's latest; otherwise read the changes (another node's, not yet announced)
    /// and check it again.
    fn check_fresh(&mut self, mut write: Write, refusal: Error, ctx: &mut Context<Self>) {
        self.writing = true;
        let store = Arc::clone(&self.store);
        let read = async move { store.revision().await };
        ctx.spawn(read.into_actor(self).map(move |latest, actor, ctx| {
            actor.writing = false;
            match latest {
                Ok(latest) if latest > actor.revision => {
                    write.checked_fresh = true;
                    actor.writes.push_front(write);
                    actor.writes.push_front(Write::internal(WriteOp::Resync));
                }
                // The store is the same, or cannot say: memory's answer stands.
                _ => write.answer(Err(refusal)),
            }
            actor.pump(ctx);
        }));
    }

    /// What a queued write will commit, checked against memory; `None` for a system of
    /// the systems file that was seeded before.
    fn plan(&self, op: &WriteOp) -> Result<Option<Change>, Error> {
        Ok(Some(match op {
            WriteOp::Register(info) => self.put(info.clone(), false)?,
            WriteOp::Seed(info) if self.seeded.contains(&info.system_id) => return Ok(None),
            WriteOp::Seed(info) if self.registry.contains(&info.system_id) => Change::MarkSeeded {
                system_id: info.system_id.clone(),
            },
            WriteOp::Seed(info) => self.put(info.clone(), true)?,
            WriteOp::Unregister(system_id) => {
                if !self.registry.contains(system_id) {
                    return Err(aimbus_core::Error::UnknownSystem(system_id.clone()).into());
                }
                Change::Delete {
                    system_id: system_id.clone(),
                }
            }
            WriteOp::Sync { .. } | WriteOp::Resync => unreachable!("reads are not planned"),
        }))
    }

    /// Applies a change the store committed to memory.
    fn apply(&mut self, change: Change, ctx: &Context<Self>) -> Result<WriteOutcome, Error> {
        match change {
            Change::Put { planned, seeded } => {
                let PlannedRegistration {
                    info,
                    metadata,
                    versions,
                    ..
                } = *planned;
                if seeded {
                    self.seeded.insert(info.system_id.clone());
                }
                Ok(WriteOutcome::Registered(
                    self.install(info, metadata, versions, ctx),
                ))
            }
            Change::Delete { system_id } => Ok(WriteOutcome::Unregistered(Box::new(
                self.uninstall(&system_id)?,
            ))),
            Change::MarkSeeded { system_id } => {
                self.seeded.insert(system_id);
                Ok(WriteOutcome::Seeded)
            }
        }
    }

    /// Another node committed a change to one system at `revision`: read that system, or
    /// everything when some change before it was missed.
    fn sync(&mut self, system_id: String, revision: i64, ctx: &mut Context<Self>) {
        if revision <= self.revision {
            return; // memory has it already (it may have read it in a resync)
        }
        if revision != self.revision + 1 {
            return self.resync(ctx);
        }
        self.writing = true;
        let store = Arc::clone(&self.store);
        let read = async move {
            let read = store.load_system(&system_id).await;
            (system_id, read)
        };
        ctx.spawn(read.into_actor(self).map(move |(system_id, read), actor, ctx| {
            actor.writing = false;
            match read {
                Ok((_, stored)) => {
                    actor.revision = actor.revision.max(revision);
                    actor.converge(&system_id, stored, ctx);
                }
                Err(error) => {
                    tracing::warn!(%error, %system_id, "cannot read another node's registry change; reading everything again");
                    actor.writes.push_front(Write::internal(WriteOp::Resync));
                }
            }
            actor.pump(ctx);
        }));
    }

    /// Reads the whole registry and makes memory what the store holds.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        self.writing = true;
        let store = Arc::clone(&self.store);
        let read = async move { store.load().await };
        ctx.spawn(read.into_actor(self).map(move |read, actor, ctx| {
            actor.writing = false;
            match read {
                Ok(snapshot) => actor.converge_all(snapshot, ctx),
                Err(error) => {
                    // Memory keeps serving; the read is tried again shortly.
                    tracing::warn!(%error, "cannot read the registry store to catch up");
                    actor.store_retry_at = Some(Instant::now() + STORE_RETRY_AFTER);
                    actor.fail_queued_writes();
                    ctx.run_later(STORE_RETRY_AFTER, |actor, ctx| {
                        actor.writes.push_back(Write::internal(WriteOp::Resync));
                        actor.pump(ctx);
                    });
                }
            }
            actor.pump(ctx);
        }));
    }

    fn converge_all(&mut self, snapshot: Snapshot, ctx: &Context<Self>) {
        let stored: BTreeSet<String> = snapshot
            .systems
            .iter()
            .map(|s| s.info.system_id.clone())
            .collect();
        let gone: Vec<String> = self
            .registry
            .systems()
            .map(|s| s.system_id.clone())
            .filter(|id| !stored.contains(id))
            .collect();
        for system_id in gone {
            self.converge(&system_id, None, ctx);
        }
        for system in snapshot.systems {
            let system_id = system.info.system_id.clone();
            self.converge(&system_id, Some(system), ctx);
        }
        self.revision = snapshot.revision;
        self.seeded = snapshot.seeded;
    }

    /// The store is away: the writes waiting behind a failed read cannot be checked
    /// against what it holds; refuse them now rather than let them wait.
    fn fail_queued_writes(&mut self) {
        for write in std::mem::take(&mut self.writes) {
            if write.reply.is_some() {
                write.answer(Err(Error::StoreUnavailable {
                    retry_after: STORE_RETRY_AFTER,
                }));
            } else {
                self.writes.push_back(write);
            }
        }
    }

    fn put(&self, info: SystemInfo, seeded: bool) -> Result<Change, Error> {
        let planned: PlannedRegistration = self.registry.plan_registration(info)?;
        Ok(Change::Put {
            planned: Box::new(planned),
            seeded,
        })
    }

    fn restart(&mut self, system_id: String, generation: u64, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get(&system_id) else {
            return; // unregistered while waiting
        };
        if child.generation + 1 != generation || child.addr.is_some() {
            return; // superseded by a re-registration
        }
        let addr = self.spawn_child(&system_id, generation, ctx);
        let child = self.children.get_mut(&system_id).expect("checked above");
        child.addr = Some(addr);
        child.generation = generation;
        child.tracker.on_started(Instant::now());
        tracing::info!(system_id, generation, "system actor restarted");
    }
}

impl Write {
    /// A read the actor queues for itself; nobody waits for it.
    fn internal(op: WriteOp) -> Write {
        Write {
            op,
            reply: None,
            stale_retries: 0,
            checked_fresh: false,
        }
    }

    fn answer(self, outcome: Result<WriteOutcome, Error>) {
        if let Some(reply) = self.reply {
            // The caller may have stopped waiting; the write stands either way.
            let _ = reply.send(outcome);
        }
    }
}

impl RegistryActor {
    /// Writes this node's heartbeat row; a missed beat is only logged (the next one
    /// follows within the interval).
    fn beat(&mut self, ctx: &mut Context<Self>) {
        let record = self.node.heartbeat();
        let store = Arc::clone(&self.store);
        ctx.spawn(
            async move {
                if let Err(error) = store.heartbeat(&record).await {
                    tracing::debug!(%error, "heartbeat not written");
                }
            }
            .into_actor(self),
        );
    }
}

/// Changes other nodes committed.
impl StreamHandler<Notice> for RegistryActor {
    fn handle(&mut self, notice: Notice, ctx: &mut Context<Self>) {
        let op = match notice {
            Notice::Changed { node_id, .. } if node_id == self.node.node_id => return,
            Notice::Changed {
                system_id,
                revision,
                ..
            } => WriteOp::Sync {
                system_id,
                revision,
            },
            Notice::Resync => WriteOp::Resync,
        };
        self.writes.push_back(Write::internal(op));
        self.pump(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The watch ends only with the store; the actor goes on serving from memory.
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        let restored: Vec<String> = self
            .registry
            .systems()
            .map(|s| s.system_id.clone())
            .collect();
        for system_id in restored {
            self.start_child(&system_id, ctx);
        }
        if let Some(notices) = self.store.watch() {
            ctx.add_stream(tokio_stream::wrappers::ReceiverStream::new(notices));
        }
        // The first beat was written before the actor started (`RegistryHandle::open`).
        ctx.run_interval(self.heartbeat_interval, |actor, ctx| actor.beat(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for child in self.children.values() {
            if let Some(addr) = &child.addr {
                addr.do_send(Shutdown);
            }
        }
    }
}

/// Registers a system (or upgrades it to a new version) and starts its actor, once the
/// store committed it.
#[derive(Debug, Message)]
#[rtype(result = "Result<Registration, Error>")]
pub struct Register(pub SystemInfo);

impl Handler<Register> for RegistryActor {
    type Result = ResponseFuture<Result<Registration, Error>>;

    fn handle(&mut self, Register(info): Register, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.enqueue(WriteOp::Register(info), ctx);
        Box::pin(async move {
            match outcome
                .await
                .map_err(|_| Error::ActorStopped("registry"))??
            {
                WriteOutcome::Registered(registration) => Ok(registration),
                _ => unreachable!("a registration ends registered"),
            }
        })
    }
}

/// Registers a system of the systems file unless the file has registered it before (see
/// `registry.systems_file`); answers whether it did.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, Error>")]
pub struct Seed(pub SystemInfo);

impl Handler<Seed> for RegistryActor {
    type Result = ResponseFuture<Result<bool, Error>>;

    fn handle(&mut self, Seed(info): Seed, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = self.enqueue(WriteOp::Seed(info), ctx);
        Box::pin(async move {
            let outcome = outcome
                .await
                .map_err(|_| Error::ActorStopped("registry"))??;
            Ok(matches!(outcome, WriteOutcome::Registered(_)))
        })
    }
}

/// Unregisters a system and stops its actor, once the store committed it.
#[derive(Debug, Message)]
#[rtype(result = "Result<SystemInfo, Error>")]
pub struct Unregister(pub String);

impl Handler<Unregister> for RegistryActor {
    type Result = ResponseFuture<Result<SystemInfo, Error>>;

    fn handle(
        &mut self,
        Unregister(system_id): Unregister,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let outcome = self.enqueue(WriteOp::Unregister(system_id), ctx);
        Box::pin(async move {
            match outcome
                .await
                .map_err(|_| Error::ActorStopped("registry"))??
            {
                WriteOutcome::Unregistered(info) => Ok(*info),
                _ => unreachable!("an unregistration ends unregistered"),
            }
        })
    }
}

/// The live nodes: those whose heartbeat is younger than `cluster.node_expiry_seconds`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NodeRecord>, Error>")]
pub struct ListNodes;

impl Handler<ListNodes> for RegistryActor {
    type Result = ResponseFuture<Result<Vec<NodeRecord>, Error>>;

    fn handle(&mut self, _: ListNodes, _: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.store);
        let since = Utc::now()
            - chrono::Duration::from_std(self.node_expiry).unwrap_or(chrono::Duration::MAX);
        Box::pin(async move {
            store
                .nodes(since)
                .await
                .map_err(|error| Error::store(error, STORE_RETRY_AFTER))
        })
    }
}

/// A system's status changes as every node recorded them, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<StatusChange>, Error>")]
pub struct StatusHistory {
    pub system_id: String,
    pub limit: u32,
}

impl Handler<StatusHistory> for RegistryActor {
    type Result = ResponseFuture<Result<Vec<StatusChange>, Error>>;

    fn handle(&mut self, query: StatusHistory, _: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            store
                .status_history(&query.system_id, query.limit)
                .await
                .map_err(|error| Error::store(error, STORE_RETRY_AFTER))
        })
    }
}

/// The node leaves: its heartbeat row is removed, so it is no longer listed as live.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for RegistryActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.store);
        let node_id = self.node.node_id.clone();
        Box::pin(async move {
            if let Err(error) = store.forget_node(&node_id).await {
                tracing::warn!(%error, "the node's heartbeat row was not removed");
            }
        })
    }
}

/// Reads the registry: `f` runs inside the actor against its state, so any read-only
/// question (a lookup, a chain, a summary) is one message without a type of its own.
pub struct Query<F, R> {
    f: F,
    result: PhantomData<fn() -> R>,
}

impl<F, R> Query<F, R>
where
    F: FnOnce(&Registry) -> R,
{
    pub fn new(f: F) -> Self {
        Query {
            f,
            result: PhantomData,
        }
    }
}

impl<F, R: 'static> Message for Query<F, R> {
    type Result = R;
}

impl<F, R> Handler<Query<F, R>> for RegistryActor
where
    F: FnOnce(&Registry) -> R,
    R: 'static,
{
    type Result = MessageResult<Query<F, R>>;

    fn handle(&mut self, query: Query<F, R>, _: &mut Context<Self>) -> Self::Result {
        MessageResult((query.f)(&self.registry))
    }
}

/// Sets a system's status (the health monitor and operators do), publishing the change.
#[derive(Debug, Message)]
#[rtype(result = "Result<IntegrationStatus, aimbus_core::Error>")]
pub struct SetStatus {
    pub system_id: String,
    pub status: IntegrationStatus,
    pub reason: String,
}

impl Handler<SetStatus> for RegistryActor {
    type Result = Result<IntegrationStatus, aimbus_core::Error>;

    fn handle(&mut self, msg: SetStatus, _: &mut Context<Self>) -> Self::Result {
        let previous = self.registry.set_status(&msg.system_id, msg.status)?;
        self.publish_status(&msg.system_id, previous, msg.status, msg.reason);
        Ok(previous)
    }
}

/// Records a health check: its status becomes the system's status.
#[derive(Debug, Message)]
#[rtype(result = "Result<IntegrationStatus, aimbus_core::Error>")]
pub struct ApplyHealthCheck(pub HealthCheckResult);

impl Handler<ApplyHealthCheck> for RegistryActor {
    type Result = Result<IntegrationStatus, aimbus_core::Error>;

    fn handle(
        &mut self,
        ApplyHealthCheck(result): ApplyHealthCheck,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let previous = self.registry.apply_health_check(&result)?;
        let reason = result.error_message.clone().unwrap_or_else(|| {
            format!("health check answered in {:.1} ms", result.response_time_ms)
        });
        self.publish_status(&result.system_id, previous, result.status, reason);
        Ok(previous)
    }
}

/// Replaces systems' performance metrics with what the router measured; systems that
/// left the registry meanwhile are skipped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetPerformanceMetrics(pub Vec<(String, PerformanceMetrics)>);

impl Handler<SetPerformanceMetrics> for RegistryActor {
    type Result = ();

    fn handle(&mut self, SetPerformanceMetrics(all): SetPerformanceMetrics, _: &mut Context<Self>) {
        for (system_id, metrics) in all {
            let _ = self.registry.set_performance_metrics(&system_id, metrics);
        }
    }
}

/// The registry as it is now, and every change after it, with nothing missed in between.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: Vec<SystemInfo>,
    /// Bounded: a subscriber that falls behind gets `RecvError::Lagged` and should
    /// subscribe again for a fresh snapshot.
    pub events: broadcast::Receiver<RegistryEvent>,
}

#[derive(Debug, Message)]
#[rtype(result = "Subscription")]
pub struct Subscribe;

impl Handler<Subscribe> for RegistryActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _: Subscribe, _: &mut Context<Self>) -> Self::Result {
        // One message, so no event can fall between the snapshot and the subscription.
        MessageResult(Subscription {
            snapshot: self.registry.systems().cloned().collect(),
            events: self.events.subscribe(),
        })
    }
}

/// The supervisor's view of a system's actor.
#[derive(Debug, Message)]
#[rtype(result = "Option<ChildState>")]
pub struct GetChild(pub String);

impl Handler<GetChild> for RegistryActor {
    type Result = Option<ChildState>;

    fn handle(&mut self, GetChild(system_id): GetChild, _: &mut Context<Self>) -> Self::Result {
        self.children.get(&system_id).map(|child| ChildState {
            addr: child.addr.clone(),
            generation: child.generation,
            restarts: child.tracker.restarts(),
        })
    }
}

impl Handler<ChildExited> for RegistryActor {
    type Result = ();

    fn handle(&mut self, exit: ChildExited, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get_mut(&exit.system_id) else {
            return; // unregistered: its actor was told to stop
        };
        if child.generation != exit.generation || child.addr.is_none() {
            return; // an older incarnation
        }
        let reason = match exit.reason {
            ExitReason::Requested => return,
            ExitReason::Fault(reason) => reason,
            ExitReason::Panicked => "system actor panicked".to_owned(),
        };
        child.addr = None;
        self.directory.remove(&exit.system_id);
        let verdict = child.tracker.on_failure(&self.policy, Instant::now());
        let restarts = child.tracker.restarts();
        let generation = child.generation;
        match verdict {
            Verdict::RestartAfter(delay) => {
                tracing::warn!(system_id = %exit.system_id, %reason, restarts, delay_ms = delay.as_millis() as u64, "system actor failed; restarting");
                // As the seed's handle_system_error: unhealthy until a health check
                // verifies the recovery.
                self.change_status(&exit.system_id, IntegrationStatus::Unhealthy, reason);
                let system_id = exit.system_id;
                ctx.run_later(delay, move |actor, ctx| {
                    actor.restart(system_id, generation + 1, ctx);
                });
            }
            Verdict::GiveUp => {
                tracing::error!(system_id = %exit.system_id, %reason, restarts, "system actor failed past the restart limit");
                self.change_status(
                    &exit.system_id,
                    IntegrationStatus::Failed,
                    format!("{reason}; gave up after {restarts} restarts"),
                );
            }
        }
    }
}

/// Whether a refusal comes from what the registry holds (and so may not hold on the
/// store's latest revision), rather than from the request itself.
fn depends_on_state(error: &Error) -> bool {
    matches!(
        error.as_registry_error(),
        Some(
            aimbus_core::Error::UnknownDependency { .. }
                | aimbus_core::Error::DependencyCycle { .. }
                | aimbus_core::Error::DuplicateSystem { .. }
                | aimbus_core::Error::UnknownSystem(_)
        )
    )
}

/// Writes status changes to the store's history in the background, in batches: the
/// history is a record, so a slow or absent store never holds up a status change. While
/// the store is away the batch is dropped (and counted), and that is logged once.
fn spawn_status_log(store: Arc<dyn RegistryStore>) -> mpsc::Sender<StatusChange> {
    const BATCH: usize = 256;
    let (sender, mut receiver) = mpsc::channel::<StatusChange>(STATUS_LOG_CAPACITY);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut failing = false;
        while receiver.recv_many(&mut batch, BATCH).await > 0 {
            match store.record_status(&batch).await {
                Ok(()) if failing => {
                    tracing::info!("status history is written to the store again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "status history not written to the store");
                        failing = true;
                    }
                    metrics::counter!(crate::metrics::STATUS_HISTORY_DROPPED)
                        .increment(batch.len() as u64);
                }
            }
            batch.clear();
        }
    });
    sender
}

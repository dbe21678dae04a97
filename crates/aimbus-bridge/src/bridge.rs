use std::sync::{Arc, Mutex};

use aimbus_actors::{RegistryHandle, RouterHandle};
use aimbus_core::{AmqpConfig, Backoff, Codec, Format, IntegrationMessage, SystemInfo, interface};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::{broadcast, watch};

use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::{
    DedupWindow, Error, INGRESS_ROUTING_KEY, Names, Publisher, ReplyInbox, topology,
};

use crate::security::BridgeSecurity;
use crate::transport::AmqpTransport;
use crate::{ingress, metrics};

/// The bus's link to RabbitMQ. Once started, it keeps itself connected: it connects
/// (waiting with backoff while the broker is away), declares the topology, attaches the
/// AMQP transport and starts the ingress consumer; when the connection drops it detaches
/// them and starts over. Nothing acknowledged is lost meanwhile: unacknowledged ingress
/// messages return to their queue, and failed deliveries are retried by the router.
pub struct Bridge {
    config: AmqpConfig,
    codec: Codec,
    security: BridgeSecurity,
    names: Names,
    transport: Arc<AmqpTransport>,
    connected: watch::Sender<bool>,
    /// Systems whose queues are declared at every (re)connect.
    systems: Mutex<Vec<SystemInfo>>,
    current: Mutex<Option<Arc<Connection>>>,
    /// Publishes registry events and enqueued messages while connected.
    publisher: Mutex<Option<Publisher>>,
    /// Ids the ingress already forwarded. The bridge's, not one connection's: a message
    /// forwarded just before the connection dropped, and redelivered on the next one
    /// because its ack was lost with it, must still be recognised.
    forwarded: Arc<Mutex<DedupWindow<()>>>,
    /// Set by [`Bridge::stop`]: drain, and connect no more.
    stopping: watch::Sender<bool>,
}

impl Bridge {
    /// A bridge that applies `security` to what crosses the broker.
    pub fn new(config: &AmqpConfig, codec: Codec, security: BridgeSecurity) -> Arc<Bridge> {
        let names = Names::new(&config.namespace);
        let priorities = topology::honours_priorities(config);
        Arc::new(Bridge {
            config: config.clone(),
            codec,
            transport: Arc::new(AmqpTransport::new(
                names.clone(),
                codec,
                priorities,
                config.persistent_requests,
                security.keyring.clone(),
            )),
            security,
            names,
            connected: watch::channel(false).0,
            systems: Mutex::default(),
            current: Mutex::default(),
            publisher: Mutex::default(),
            stopping: watch::channel(false).0,
            forwarded: Arc::new(Mutex::new(DedupWindow::new(
                config.dedup_window,
                config.dedup_window_bytes(),
            ))),
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The transport that carries traffic to systems over AMQP, whatever the connection.
    pub fn transport(&self) -> Arc<AmqpTransport> {
        Arc::clone(&self.transport)
    }

    /// Whether the bridge holds a connection to the broker now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Puts a message on the ingress queue, to be routed as any client's; returns once
    /// the broker has confirmed it, so the message survives whatever happens next.
    pub async fn enqueue(&self, message: &IntegrationMessage, format: Format) -> Result<(), Error> {
        let publisher = self.publisher.lock().expect("publisher lock").clone();
        let publisher = publisher.ok_or(Error::NotConnected)?;
        let (body, properties) =
            envelope::encode(&self.codec, format, message, &Routing::default())?;
        publisher
            .publish(
                &self.names.ingress(),
                INGRESS_ROUTING_KEY,
                &body,
                properties,
            )
            .await
    }

    /// Whether the bridge is connected, as it changes.
    pub fn watch_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Resolves once the bridge is connected (at once if it is).
    pub async fn wait_connected(&self) {
        let mut connected = self.connected.subscribe();
        let _ = connected.wait_for(|c| *c).await;
    }

    /// Declares the queue of every system with an `amqp` interface, now if connected and
    /// again after every reconnect, so messages sent before its worker starts are kept.
    pub async fn declare_systems<'s>(
        &self,
        systems: impl IntoIterator<Item = &'s SystemInfo>,
    ) -> Result<(), Error> {
        let added: Vec<SystemInfo> = systems
            .into_iter()
            .filter(|s| s.interfaces.contains_key(interface::AMQP))
            .cloned()
            .collect();
        {
            let mut remembered = self.systems.lock().expect("systems lock");
            // Declared again on every reconnect, so each system is remembered once.
            remembered.retain(|s| !added.iter().any(|a| a.system_id == s.system_id));
            remembered.extend(added.iter().cloned());
        }
        let connection = self.current.lock().expect("connection lock").clone();
        if let Some(connection) = connection {
            self.declare(&connection, &added).await?;
        }
        Ok(())
    }

    async fn declare(&self, connection: &Connection, systems: &[SystemInfo]) -> Result<(), Error> {
        let channel = connection.create_channel().await?;
        for system in systems {
            topology::declare_system_queue(&channel, &self.names, &self.config, system).await?;
        }
        Ok(())
    }

    /// Publishes every registry event to `<ns>.events` as JSON, with routing key
    /// `<kind>.<system_id>`. Events are news, not orders: one that finds the broker away
    /// is dropped (and counted), never queued without bound.
    pub fn publish_events(
        self: &Arc<Self>,
        registry: &RegistryHandle,
    ) -> tokio::task::JoinHandle<()> {
        let bridge = Arc::clone(self);
        let registry = registry.clone();
        tokio::spawn(async move {
            let Ok(subscription) = registry.subscribe().await else {
                return;
            };
            let mut events = subscription.events;
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        ::metrics::counter!(metrics::EVENTS_DROPPED).increment(missed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let publisher = bridge.publisher.lock().expect("publisher lock").clone();
                let Some(publisher) = publisher else {
                    ::metrics::counter!(metrics::EVENTS_DROPPED).increment(1);
                    continue;
                };
                let Ok(body) = serde_json::to_vec(&event) else {
                    continue;
                };
                let properties = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_type(event.kind().into())
                    .with_delivery_mode(2);
                match publisher
                    .publish_news(
                        &bridge.names.events(),
                        &event.routing_key(),
                        &body,
                        properties,
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::debug!(%error, "registry event dropped");
                        ::metrics::counter!(metrics::EVENTS_DROPPED).increment(1);
                    }
                }
            }
        })
    }

    /// Keeps the bridge connected, routing ingress messages through `router`, until
    /// [`Bridge::stop`] (then the task ends once the ingress has drained) or the task is
    /// dropped.
    pub fn start(self: &Arc<Self>, router: RouterHandle) -> tokio::task::JoinHandle<()> {
        let bridge = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Backoff::reconnect();
            let mut stopping = bridge.stopping.subscribe();
            while !*stopping.borrow() {
                match bridge.session(&router).await {
                    Ok(()) => backoff.reset(),
                    Err(error) => {
                        let wait = backoff.next_wait();
                        tracing::warn!(%error, url = %bridge.config.url, retry_in_ms = wait.as_millis() as u64, "broker unavailable");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            _ = stopping.wait_for(|stop| *stop) => {}
                        }
                    }
                }
            }
        })
    }

    /// Stops the bridge: the ingress takes no more deliveries, lets those in progress
    /// finish (for up to `amqp.shutdown_grace_seconds`), acknowledges them, and the
    /// connection closes, handing back whatever was not finished. The task
    /// [`Bridge::start`] returned ends then.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// One connection's life: set up, serve until it drops (or the bridge stops), tear
    /// down. All or nothing: whichever step fails, nothing stays attached to the
    /// connection.
    async fn session(&self, router: &RouterHandle) -> Result<(), Error> {
        let connection =
            Arc::new(Connection::connect(&self.config.url, ConnectionProperties::default()).await?);
        let served = self.serve_on(&connection, router).await;
        let _ = self.connected.send(false);
        self.transport.detach();
        *self.publisher.lock().expect("publisher lock") = None;
        *self.current.lock().expect("connection lock") = None;
        aimbus_amqp::close(&connection).await;
        if served.is_ok() && !*self.stopping.borrow() {
            tracing::warn!("lost the broker; reconnecting");
        }
        served
    }

    async fn serve_on(
        &self,
        connection: &Arc<Connection>,
        router: &RouterHandle,
    ) -> Result<(), Error> {
        let channel = connection.create_channel().await?;
        topology::declare_bus(&channel, &self.names, &self.config).await?;
        let systems = self.systems.lock().expect("systems lock").clone();
        self.declare(connection, &systems).await?;
        let publisher = Publisher::open(connection).await?;
        let inbox = ReplyInbox::start(connection, self.codec).await?;
        let events = Publisher::open(connection).await?;
        self.transport.attach(publisher, inbox);
        *self.publisher.lock().expect("publisher lock") = Some(events);
        let mut ingress = ingress::start(
            connection,
            self.codec,
            self.security.clone(),
            &self.config,
            router.clone(),
            Arc::clone(&self.forwarded),
            self.stopping.subscribe(),
        )
        .await?;
        *self.current.lock().expect("connection lock") = Some(Arc::clone(connection));
        let _ = self.connected.send(true);
        tracing::info!(url = %self.config.url, namespace = %self.config.namespace, "connected to the broker");
        // Systems reached over AMQP were unreachable while the broker was away: look again
        // now rather than at the next tick.
        router.health().do_send(aimbus_actors::router::CheckAll);
        tokio::select! {
            _ = &mut ingress => {}
            () = aimbus_amqp::until_lost(connection) => ingress.abort(),
        }
        Ok(())
    }
}

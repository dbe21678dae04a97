use std::sync::Arc;

use aimbus_actors::RouterHandle;
use aimbus_core::{AmqpConfig, Codec, QueueType, SystemInfo, interface};
use lapin::{Connection, ConnectionProperties};

use crate::names::Names;
use crate::publisher::Publisher;
use crate::replies::ReplyInbox;
use crate::transport::AmqpTransport;
use crate::{Error, ingress, topology};

/// The bus's connection to RabbitMQ: it declares the contract's topology and starts the
/// AMQP transport and the ingress consumer on it.
pub struct Bridge {
    connection: Connection,
    names: Names,
    config: AmqpConfig,
    codec: Codec,
}

impl Bridge {
    /// Connects and declares the bus's exchanges and queues.
    pub async fn connect(config: &AmqpConfig, codec: Codec) -> Result<Bridge, Error> {
        let connection = Connection::connect(&config.url, ConnectionProperties::default()).await?;
        let names = Names::new(&config.namespace);
        let channel = connection.create_channel().await?;
        topology::declare_bus(&channel, &names).await?;
        Ok(Bridge {
            connection,
            names,
            config: config.clone(),
            codec,
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Declares the queue of every system with an `amqp` interface, so messages sent
    /// before its worker starts are kept for it.
    pub async fn declare_systems<'s>(
        &self,
        systems: impl IntoIterator<Item = &'s SystemInfo>,
    ) -> Result<(), Error> {
        let channel = self.connection.create_channel().await?;
        for system in systems {
            if system.interfaces.contains_key(interface::AMQP) {
                topology::declare_system_queue(&channel, &self.names, &self.config, system).await?;
            }
        }
        Ok(())
    }

    /// The transport that carries traffic to systems over AMQP.
    pub async fn transport(&self) -> Result<Arc<AmqpTransport>, Error> {
        let publisher = Publisher::open(&self.connection).await?;
        let inbox = ReplyInbox::start(&self.connection, self.codec).await?;
        let priorities = self.config.queue_type == QueueType::Classic;
        Ok(Arc::new(AmqpTransport::new(
            publisher,
            inbox,
            self.names.clone(),
            self.codec,
            priorities,
        )))
    }

    /// Starts routing what arrives on the ingress queue.
    pub async fn start_ingress(
        &self,
        router: RouterHandle,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        ingress::start(
            &self.connection,
            self.names.clone(),
            self.codec,
            self.config.prefetch,
            router,
        )
        .await
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

use std::sync::Arc;
use std::time::Duration;

use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::{INGRESS_ROUTING_KEY, Names, Publisher, ReplyInbox, ReplyMessage};
use aimbus_core::{Codec, Format, IntegrationMessage};
use lapin::{Connection, ConnectionProperties};

use crate::Error;

/// Publishes messages to the bus's ingress, with publisher confirms, and awaits replies.
pub struct BusClient {
    _connection: Connection,
    publisher: Publisher,
    inbox: Arc<ReplyInbox>,
    names: Names,
    codec: Codec,
}

impl BusClient {
    pub async fn connect(url: &str, namespace: &str, codec: Codec) -> Result<BusClient, Error> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let publisher = Publisher::open(&connection).await?;
        let inbox = ReplyInbox::start(&connection, codec).await?;
        Ok(BusClient {
            _connection: connection,
            publisher,
            inbox,
            names: Names::new(namespace),
            codec,
        })
    }

    /// Publishes to the ingress; returns once the broker has the message in its queue.
    pub async fn send(&self, message: &IntegrationMessage, format: Format) -> Result<(), Error> {
        let (body, properties) =
            envelope::encode(&self.codec, format, message, &Routing::default())?;
        self.publisher
            .publish(
                &self.names.ingress(),
                INGRESS_ROUTING_KEY,
                &body,
                properties,
            )
            .await?;
        Ok(())
    }

    /// Sends a message with this client's reply queue as `reply_to` and waits for the
    /// routed reply (correlated by the message's id).
    pub async fn request(
        &self,
        mut message: IntegrationMessage,
        format: Format,
        timeout: Duration,
    ) -> Result<ReplyMessage, Error> {
        message.reply_to = Some(self.inbox.queue().to_owned());
        let pending = self.inbox.expect_correlation(message.message_id.clone());
        self.send(&message, format).await?;
        tokio::time::timeout(timeout, pending.wait())
            .await
            .ok()
            .flatten()
            .ok_or(Error::NoReply(timeout))
    }
}

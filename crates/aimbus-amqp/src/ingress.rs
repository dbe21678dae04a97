//! The ingress consumer: takes messages from `<ns>.ingress`, routes each through the
//! router, publishes the reply to its `reply_to`, and acknowledges only after every
//! publish it needed was confirmed. What cannot be routed is dead-lettered with the
//! reason, so the consumer never stalls on it and nothing is lost.

use aimbus_actors::{Error as RouteError, RouterHandle};
use aimbus_core::{Codec, IntegrationMessage};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_stream::StreamExt;

use crate::Error;
use crate::envelope::{self, Routing};
use crate::names::Names;
use crate::publisher::Publisher;

/// Starts consuming the ingress queue; the returned task ends with the connection.
pub async fn start(
    connection: &Connection,
    names: Names,
    codec: Codec,
    prefetch: u16,
    router: RouterHandle,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let channel = connection.create_channel().await?;
    // At most `prefetch` messages are in the bus's hands at once.
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            names.ingress().into(),
            "aimbus-ingress".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = Publisher::open(connection).await?;
    Ok(tokio::spawn(async move {
        let _channel = channel;
        while let Some(delivery) = consumer.next().await {
            match delivery {
                Ok(delivery) => {
                    let work = Work {
                        publisher: publisher.clone(),
                        names: names.clone(),
                        codec,
                        router: router.clone(),
                    };
                    tokio::spawn(work.handle(delivery));
                }
                Err(error) => {
                    tracing::error!(%error, "ingress consumer stopped");
                    break;
                }
            }
        }
    }))
}

struct Work {
    publisher: Publisher,
    names: Names,
    codec: Codec,
    router: RouterHandle,
}

impl Work {
    async fn handle(self, delivery: Delivery) {
        let done = match envelope::decode(&self.codec, &delivery) {
            Err(error) => {
                self.dead_letter(&delivery, &format!("decode: {error}"))
                    .await
            }
            Ok(message) => self.route(&delivery, message).await,
        };
        let acked = match done {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            // A publish we needed failed: hand the message back for another try.
            Err(error) => {
                tracing::warn!(%error, "ingress message returned to the queue");
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                delivery.nack(requeue).await
            }
        };
        if let Err(error) = acked {
            tracing::warn!(%error, "ingress acknowledgement failed; the broker will redeliver");
        }
    }

    async fn route(&self, delivery: &Delivery, message: IntegrationMessage) -> Result<(), Error> {
        let reply_to = message.reply_to.clone();
        let request = message.clone();
        match self.router.route(message).await {
            Ok(routed) => {
                let Some(reply_to) = reply_to else {
                    return Ok(());
                };
                let reply =
                    envelope::reply_to_request(&request, &routed.served_by, routed.reply.payload);
                let format = envelope::format_of(&delivery.properties)?;
                let (body, properties) =
                    envelope::encode(&self.codec, format, &reply, &Routing::default())?;
                self.publisher
                    .publish("", &reply_to, &body, properties)
                    .await
            }
            Err(error) => {
                let reason = format!("{}: {error}", reason_kind(&error));
                self.dead_letter(delivery, &reason).await
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.publisher
            .dead_letter(&self.names, delivery, reason)
            .await
    }
}

/// The first word of a dead letter's reason, a stable kind to filter on.
fn reason_kind(error: &RouteError) -> &'static str {
    match error {
        RouteError::Registry(_) => "invalid",
        RouteError::UnknownTarget(_) => "unknown_target",
        RouteError::Expired { .. } => "expired",
        RouteError::RateLimited { .. } => "rate_limited",
        RouteError::Overloaded { .. } => "overloaded",
        RouteError::Unavailable { .. } => "unavailable",
        RouteError::Timeout { .. } => "timeout",
        RouteError::Delivery { .. } => "delivery",
        _ => "failed",
    }
}

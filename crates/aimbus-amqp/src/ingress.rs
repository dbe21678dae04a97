//! The ingress consumer: takes messages from `<ns>.ingress`, routes each through the
//! router, publishes the reply to its `reply_to`, and acknowledges only after every
//! publish it needed was confirmed. What cannot be routed is dead-lettered with the
//! reason, so the consumer never stalls on it and nothing is lost.

use aimbus_actors::{Error as RouteError, RouterHandle};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimbus_core::{AmqpConfig, Codec, IntegrationMessage, Keyring};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_stream::StreamExt;
use tracing::Instrument;

use crate::Error;
use crate::acks::Acks;
use crate::bridge::BridgeSecurity;
use crate::dedup::DedupWindow;
use crate::envelope::{self, Routing};
use crate::metrics;
use crate::names::Names;
use crate::publisher::Publisher;
use crate::trace_context;

/// Starts consuming the ingress queue; the returned task ends with the connection.
pub async fn start(
    connection: &Connection,
    names: Names,
    codec: Codec,
    security: BridgeSecurity,
    config: &AmqpConfig,
    router: RouterHandle,
    forwarded: Arc<Mutex<DedupWindow<()>>>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let prefetch = config.prefetch;
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
    // Shared by every delivery's task: one reference count per message, no copies.
    let work = Arc::new(Work {
        publisher: Publisher::open(connection).await?,
        queue: names.ingress(),
        names,
        codec,
        security,
        router,
        forwarded,
        delivery_limit: config.delivery_limit,
        acks: Acks::start(channel.clone()),
    });
    Ok(tokio::spawn(async move {
        let _channel = channel;
        while let Some(delivery) = consumer.next().await {
            match delivery {
                Ok(delivery) => {
                    work.acks.delivered(delivery.delivery_tag);
                    let span = trace_context::process_span(&work.queue, &delivery);
                    tokio::spawn(Arc::clone(&work).handle(delivery).instrument(span));
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
    /// The ingress queue's name, which every delivery's process span carries: made once
    /// here rather than per delivery.
    queue: String,
    names: Names,
    codec: Codec,
    security: BridgeSecurity,
    router: RouterHandle,
    /// Ids of messages already forwarded to their system: a redelivery or a republished
    /// copy of one is acknowledged, not forwarded again. (A request is routed again, so
    /// its sender gets its answer again; a dead letter may be replayed.) Shared by every
    /// session of the bridge.
    forwarded: Arc<Mutex<DedupWindow<()>>>,
    delivery_limit: u32,
    acks: Acks,
}

/// What becomes of an ingress delivery.
enum Settle {
    /// Done with: answered, or dead-lettered.
    Ack,
    /// Done with: handed to its system's queue.
    Forwarded,
    /// Failed transiently, for the `failed`-th time: back to the queue after `pause`
    /// (waited out in the retry queue), for another delivery.
    Retry { pause: Duration, failed: u32 },
}

impl Work {
    async fn handle(self: Arc<Self>, delivery: Delivery) {
        if delivery.redelivered {
            ::metrics::counter!(metrics::REDELIVERIES).increment(1);
        }
        let mut forwarded_id = None;
        let settled = match envelope::decode(&self.codec, &delivery) {
            Err(error) => self
                .dead_letter(&delivery, &format!("decode: {error}"))
                .await
                .map(|()| Settle::Ack),
            Ok(message)
                if message.reply_to.is_none() && self.already_forwarded(&message.message_id) =>
            {
                ::metrics::counter!(metrics::INGRESS_DUPLICATES).increment(1);
                Ok(Settle::Ack)
            }
            Ok(message) => {
                forwarded_id = message
                    .reply_to
                    .is_none()
                    .then(|| message.message_id.clone());
                self.route(&delivery, message).await
            }
        };
        if let (Ok(Settle::Forwarded), Some(id)) = (&settled, &forwarded_id) {
            self.forwarded
                .lock()
                .expect("forwarded lock")
                .insert(id, (), 0);
        }
        let tag = delivery.delivery_tag;
        let returned = match settled {
            Ok(Settle::Ack | Settle::Forwarded) => {
                self.acks.ack(tag);
                return;
            }
            Ok(Settle::Retry { pause, failed }) => {
                // Parked in the broker for its pause rather than held here: a held message
                // would keep its prefetch slot, and a system that stays down would, with
                // enough of its messages, stall the ingress for every other system.
                let parked = self
                    .publisher
                    .park(&self.names, &delivery, failed, pause)
                    .await;
                match parked {
                    Ok(()) => {
                        self.acks.ack(tag);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ingress message returned to the queue uncounted");
                        self.acks.nack(tag, true).await
                    }
                }
            }
            // A publish we needed failed: hand the message back for another try.
            Err(error) => {
                tracing::warn!(%error, "ingress message returned to the queue");
                self.acks.nack(tag, true).await
            }
        };
        if let Err(error) = returned {
            tracing::warn!(%error, "ingress nack failed; the broker will redeliver");
        }
    }

    async fn route(
        &self,
        delivery: &Delivery,
        mut message: IntegrationMessage,
    ) -> Result<Settle, Error> {
        let signature = envelope::header(&delivery.properties, envelope::SIGNATURE_HEADER);
        if let Some(keys) = &self.security.signing_keys {
            let verified = keys.verify(
                &message,
                &delivery.data,
                signature.as_deref(),
                self.security.require_signed,
            );
            if let Err(error) = verified {
                let reason = format!("unauthorised: {error}");
                return self
                    .dead_letter(delivery, &reason)
                    .await
                    .map(|()| Settle::Ack);
            }
        }
        // A sealed payload is opened here (and the answer sealed for its sender); one that
        // does not open is never routed.
        let sealed = match &self.security.keyring {
            Some(keyring) if Keyring::is_sealed(&message.payload) => {
                if let Err(error) = keyring.open(&mut message) {
                    let reason = format!("unauthorised: {error}");
                    return self
                        .dead_letter(delivery, &reason)
                        .await
                        .map(|()| Settle::Ack);
                }
                Some(keyring)
            }
            _ => None,
        };
        let reply_to = message.reply_to.clone();
        let request = message.without_payload();
        // Without reply_to nobody waits for an answer: the message is forwarded (one
        // confirmed publish to the system's queue) and acknowledged then.
        let routed = match reply_to {
            Some(_) => self.router.route(message).await,
            None => self.router.forward(message).await,
        };
        match routed {
            Ok(routed) => {
                let Some(reply_to) = reply_to else {
                    return Ok(Settle::Forwarded);
                };
                let mut reply =
                    envelope::reply_to_request(&request, &routed.served_by, routed.reply.payload);
                if let Some(keyring) = sealed {
                    keyring.seal(&mut reply)?;
                }
                let format = envelope::format_of(&delivery.properties)?;
                let (body, properties) =
                    envelope::encode(&self.codec, format, &reply, &Routing::default())?;
                match self
                    .publisher
                    .publish("", &reply_to, &body, properties)
                    .await
                {
                    // The requester's reply queue is gone: nobody waits for the answer.
                    Ok(()) | Err(Error::Unroutable { .. }) => Ok(Settle::Ack),
                    Err(error) => Err(error),
                }
            }
            Err(error) if is_transient(&error) => {
                let failed = envelope::count_header(
                    &delivery.properties,
                    envelope::FAILED_DELIVERIES_HEADER,
                )
                .saturating_add(1);
                if failed < self.delivery_limit {
                    let pause = Duration::from_millis(250 << failed.min(6)).min(MAX_REQUEUE_PAUSE);
                    tracing::info!(message_id = %request.message_id, failed, %error, "ingress message will be retried");
                    ::metrics::counter!(metrics::INGRESS_RETRIES).increment(1);
                    return Ok(Settle::Retry { pause, failed });
                }
                let reason = format!(
                    "delivery_limit: {failed} deliveries failed (last: {}: {error})",
                    error.kind()
                );
                self.dead_letter(delivery, &reason)
                    .await
                    .map(|()| Settle::Ack)
            }
            Err(error) => {
                let reason = format!("{}: {error}", error.kind());
                self.dead_letter(delivery, &reason)
                    .await
                    .map(|()| Settle::Ack)
            }
        }
    }

    fn already_forwarded(&self, message_id: &str) -> bool {
        let forwarded = self.forwarded.lock().expect("forwarded lock");
        forwarded.get(message_id).is_some()
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.publisher
            .dead_letter(&self.names, delivery, reason)
            .await
    }
}

/// Longest a transiently failed message is held before it goes back to the queue.
const MAX_REQUEUE_PAUSE: Duration = Duration::from_secs(10);

/// Failures that another delivery later may cure (the system or the broker is away for
/// now), as opposed to what is wrong with the message itself.
fn is_transient(error: &RouteError) -> bool {
    error.is_retryable() || matches!(error, RouteError::Overloaded { .. })
}

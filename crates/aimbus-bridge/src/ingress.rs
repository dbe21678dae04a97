//! The ingress consumer: takes messages from `<ns>.ingress`, routes each through the
//! router, publishes the reply to its `reply_to`, and acknowledges only after every
//! publish it needed was confirmed. What cannot be routed is dead-lettered with the
//! reason, so the consumer never stalls on it and nothing is lost.

use aimbus_actors::{Error as RouteError, RouterHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aimbus_core::{AmqpConfig, Codec, IntegrationMessage, Keyring};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::task::TaskTracker;

use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::parking::{self, AfterFailure};
use aimbus_amqp::{Acks, Begin, DedupWindow, Error, Names, Publisher, trace_context};

use crate::metrics;
use crate::security::BridgeSecurity;

/// The ingress consumer's tag on its channel.
const CONSUMER_TAG: &str = "aimbus-ingress";

/// Starts consuming the ingress queue; the returned task ends with the connection, or,
/// once `stop` turns true, after draining: no more deliveries, those in progress finished
/// (for up to `amqp.shutdown_grace_seconds`) and acknowledged.
pub async fn start(
    connection: &Connection,
    codec: Codec,
    security: BridgeSecurity,
    config: &AmqpConfig,
    router: RouterHandle,
    forwarded: Arc<Mutex<DedupWindow<()>>>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let names = Names::new(&config.namespace);
    let prefetch = config.prefetch;
    let channel = connection.create_channel().await?;
    // At most `prefetch` messages are in the bus's hands at once.
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            names.ingress().into(),
            CONSUMER_TAG.into(),
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
        turns: Turns::default(),
        acks: Acks::start(channel.clone()),
    });
    let grace = config.shutdown_grace();
    Ok(tokio::spawn(async move {
        // Every delivery's task, so a shutdown can wait for those in progress.
        let deliveries = TaskTracker::new();
        loop {
            let delivery = tokio::select! {
                delivery = consumer.next() => delivery,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    work.acks.delivered(delivery.delivery_tag);
                    let trace = trace_context::process_trace(&work.queue, &delivery);
                    deliveries.spawn(trace.instrument(Arc::clone(&work).handle(delivery)));
                }
                Some(Err(error)) => {
                    tracing::error!(%error, "ingress consumer stopped");
                    return;
                }
                None => return,
            }
        }
        // Shutting down; the deliveries' tasks hold the rest of the work.
        let acks = work.acks.clone();
        drop(work);
        aimbus_amqp::drain(&channel, CONSUMER_TAG, deliveries, acks, grace).await;
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
    turns: Turns,
    acks: Acks,
}

/// Sources whose next turn is remembered at once; past it, turns already come are
/// forgotten first.
const MAX_PACED_SOURCES: usize = 10_000;

/// When each rate-limited source's next parked message may try again. Told only "retry
/// after 11 ms", every one of a flood's messages would come back together and all but one
/// be parked again; spaced by the source's pace, each comes back to about one token.
#[derive(Default)]
struct Turns(Mutex<HashMap<String, Instant>>);

impl Turns {
    /// How long a message from `source` waits for its turn: at least `retry_after`, and
    /// `pace` after the turn of the source's message parked before it.
    fn next(&self, source: &str, retry_after: Duration, pace: Duration) -> Duration {
        let now = Instant::now();
        let mut turns = self.0.lock().expect("turns lock");
        if turns.len() >= MAX_PACED_SOURCES {
            turns.retain(|_, turn| *turn > now);
        }
        let earliest = now + retry_after;
        let turn = match turns.get(source) {
            Some(last) => earliest.max(*last + pace),
            None => earliest,
        };
        turns.insert(source.to_owned(), turn);
        turn - now
    }
}

/// What becomes of an ingress delivery.
enum Settle {
    /// Done with: answered, or dead-lettered.
    Ack,
    /// Done with: handed to its system's queue.
    Forwarded,
    /// To be routed again at `until`, parked meanwhile: after a transient failure (then
    /// `failed` counts it), for its rate limit's turn, or for the rest of a wait.
    Park {
        until: SystemTime,
        failed: Option<u32>,
    },
}

impl Work {
    async fn handle(self: Arc<Self>, delivery: Delivery) {
        if delivery.redelivered {
            ::metrics::counter!(metrics::REDELIVERIES).increment(1);
        }
        let decoded = match parking::parked_until(&delivery.properties) {
            // Back from a delay level shorter than its wait: park the rest, undecoded.
            Some(until) => Err(until),
            None => Ok(envelope::decode(&self.codec, &delivery)),
        };
        let settled = match decoded {
            Err(until) => Ok(Settle::Park {
                until,
                failed: None,
            }),
            Ok(decoded) => self.settle(&delivery, decoded).await,
        };
        let tag = delivery.delivery_tag;
        let returned = match settled {
            Ok(Settle::Ack | Settle::Forwarded) => {
                self.acks.ack(tag);
                return;
            }
            Ok(Settle::Park { until, failed }) => {
                // Parked in the broker rather than held here: a held message would keep
                // its prefetch slot, and a system that stays down (or a source far over
                // its rate) would, with enough messages, stall the ingress for everyone.
                let parked = self
                    .publisher
                    .park(&self.names, &delivery, &self.queue, until, failed)
                    .await;
                self.acks.after_parking(tag, parked).await
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

    /// A decoded (or undecodable) delivery's fate. A forwarded message's id is
    /// remembered once forwarded, before its ack, so no copy of it is forwarded again.
    async fn settle(
        &self,
        delivery: &Delivery,
        decoded: Result<IntegrationMessage, aimbus_core::Error>,
    ) -> Result<Settle, Error> {
        let message = match decoded {
            Ok(message) => message,
            Err(error) => {
                return self
                    .dead_letter(delivery, &format!("decode: {error}"))
                    .await
                    .map(|()| Settle::Ack);
            }
        };
        // A request is routed again, so its sender gets its answer again.
        if message.reply_to.is_some() {
            return self.route(delivery, message).await;
        }
        match DedupWindow::begin(&self.forwarded, &message.message_id) {
            Begin::Answered(()) => {
                ::metrics::counter!(metrics::INGRESS_DUPLICATES).increment(1);
                Ok(Settle::Ack)
            }
            Begin::InFlight => Ok(Settle::Park {
                until: SystemTime::now() + parking::COPY_IN_FLIGHT_WAIT,
                failed: None,
            }),
            Begin::New(handling) => {
                let settled = self.route(delivery, message).await;
                handling.finish(matches!(settled, Ok(Settle::Forwarded)).then_some(((), 0)));
                settled
            }
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
                // As durable as the request it answers.
                let routing = Routing {
                    transient: envelope::is_transient(&delivery.properties),
                    ..Routing::default()
                };
                let (body, properties) = envelope::encode(&self.codec, format, &reply, &routing)?;
                match self
                    .publisher
                    .publish("", &reply_to, &body, properties)
                    .await
                {
                    Ok(()) => Ok(Settle::Ack),
                    // The requester's reply queue is gone (it reconnected or quit): nobody
                    // waits for the answer. Normal, so counted, and logged below a warning.
                    Err(Error::Unroutable { .. }) => {
                        ::metrics::counter!(metrics::REPLIES_DROPPED).increment(1);
                        tracing::debug!(message_id = %request.message_id, "reply dropped: its reply queue no longer exists");
                        Ok(Settle::Ack)
                    }
                    Err(error) => Err(error),
                }
            }
            // A confirmed message has been accepted: its rate limit delays it, never drops
            // it. Its turn comes after those of the source's messages parked before it.
            Err(RouteError::RateLimited {
                source_system,
                retry_after,
                pace,
            }) => {
                let wait = self.turns.next(&source_system, retry_after, pace);
                ::metrics::counter!(metrics::INGRESS_RATE_LIMITED).increment(1);
                tracing::debug!(message_id = %request.message_id, wait_ms = wait.as_millis() as u64, "rate-limited ingress message parked for its turn");
                Ok(Settle::Park {
                    until: SystemTime::now() + wait,
                    failed: None,
                })
            }
            Err(error) if is_transient(&error) => {
                let next = parking::after_failure(
                    &delivery.properties,
                    self.delivery_limit,
                    format_args!("{}: {error}", error.kind()),
                );
                match next {
                    AfterFailure::Retry { until, failed } => {
                        tracing::info!(message_id = %request.message_id, failed, %error, "ingress message will be retried");
                        ::metrics::counter!(metrics::INGRESS_RETRIES).increment(1);
                        Ok(Settle::Park {
                            until,
                            failed: Some(failed),
                        })
                    }
                    AfterFailure::GiveUp { reason } => self
                        .dead_letter(delivery, &reason)
                        .await
                        .map(|()| Settle::Ack),
                }
            }
            Err(error) => {
                let reason = format!("{}: {error}", error.kind());
                self.dead_letter(delivery, &reason)
                    .await
                    .map(|()| Settle::Ack)
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.publisher
            .dead_letter(&self.names, delivery, reason)
            .await
    }
}

/// Failures that another delivery later may cure (the system or the broker is away for
/// now), as opposed to what is wrong with the message itself.
fn is_transient(error: &RouteError) -> bool {
    error.is_retryable() || matches!(error, RouteError::Overloaded { .. })
}

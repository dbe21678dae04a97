use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aimbus_amqp::envelope::{self, OUTCOME_HEADER, Routing};
use aimbus_amqp::parking::{self, AfterFailure};
use aimbus_amqp::{Acks, Begin, DedupWindow, Names, Publisher, topology, trace_context};
use aimbus_core::{AmqpConfig, Backoff, Codec, IntegrationMessage, Keyring, SystemInfo};
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::task::TaskTracker;

use crate::Error;

/// Why a handler did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Something went wrong; another attempt may succeed.
    Failed(String),
    /// The message is wrong; another attempt would fail the same way.
    Rejected(String),
}

/// How a worker consumes.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The broker's contract (URL, namespace, queue type); the bus's `[amqp]` section.
    pub amqp: AmqpConfig,
    /// Messages handled at once.
    pub prefetch: u16,
    /// The bus's keyring, when it seals payloads (`security.enable_encryption`): sealed
    /// payloads are opened before the handler sees them, and their replies sealed.
    pub keyring: Option<Arc<Keyring>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            amqp: AmqpConfig::default(),
            prefetch: 32,
            keyring: None,
        }
    }
}

/// An AIM-OS system served over AMQP: it consumes the system's queue, hands each message
/// to an async handler, replies to `reply_to`, and acknowledges only once the handler
/// finished and the reply was confirmed. Redelivered messages (same `message_id`) are
/// answered again from memory, not handled again; `health_check` is answered for you.
/// When the broker goes away the worker reconnects with backoff and resumes; what it had
/// not acknowledged is redelivered to it.
pub struct SystemWorker {
    connection: Option<Connection>,
    system: SystemInfo,
    options: WorkerOptions,
    codec: Codec,
    stats: Arc<WorkerStats>,
}

/// What a worker did so far.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Messages handed to the handler.
    pub handled: AtomicU64,
    /// Redeliveries answered from memory instead.
    pub duplicates: AtomicU64,
    /// Replies not delivered because the requester's reply queue was gone (normal: it
    /// reconnected or quit).
    pub replies_dropped: AtomicU64,
}

/// What was answered to a message, kept to answer its redeliveries.
#[derive(Clone)]
struct Answer {
    reply: Arc<IntegrationMessage>,
    outcome: &'static str,
}

/// What an answer holds in memory besides its payload (ids, names, times), as the
/// dedup window counts it.
const ANSWER_ENVELOPE_BYTES: usize = 512;

impl Answer {
    /// What a redelivery needs of this answer, and the bytes it takes. A forwarded
    /// message answers nobody, so the handler's payload, of any size, is not kept for it:
    /// only the outcome (and a refusal's reason, which is the whole payload then).
    fn to_remember(&self, forwarded: bool) -> (Answer, usize) {
        let kept = if forwarded && self.outcome == "ok" {
            Answer {
                reply: Arc::new(self.reply.without_payload()),
                outcome: self.outcome,
            }
        } else {
            self.clone()
        };
        let size = ANSWER_ENVELOPE_BYTES + aimbus_core::json_len(&kept.reply.payload);
        (kept, size)
    }
}

/// What becomes of a delivery once handled.
enum Settle {
    Ack,
    /// Back to the system's queue at `until`, parked meanwhile: a forwarded message whose
    /// handler failed (then `failed` counts it), a copy of one being handled, or the rest
    /// of a wait.
    Park {
        until: SystemTime,
        failed: Option<u32>,
    },
}

impl SystemWorker {
    /// Connects once, so a wrong URL or a missing broker shows at once.
    pub async fn connect(
        system: SystemInfo,
        options: WorkerOptions,
        codec: Codec,
    ) -> Result<SystemWorker, Error> {
        let connection =
            Connection::connect(&options.amqp.url, ConnectionProperties::default()).await?;
        Ok(SystemWorker {
            connection: Some(connection),
            system,
            options,
            codec,
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Serves for as long as the process runs, reconnecting whenever the broker goes away.
    pub async fn serve<F, Fut>(self, handler: F) -> Result<(), Error>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
    {
        let (_never, stop) = watch::channel(false);
        self.serve_until(handler, stop).await
    }

    /// Serves until `stop` turns true, then drains: takes no more messages, lets those in
    /// progress finish (for up to `amqp.shutdown_grace_seconds`), acknowledges them, and
    /// hands the rest back to the broker as the connection closes.
    pub async fn serve_until<F, Fut>(
        mut self,
        handler: F,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Error>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
    {
        let names = Names::new(&self.options.amqp.namespace);
        let shared = Arc::new(Shared {
            handler,
            queue: names.queue_of(&self.system),
            names,
            codec: self.codec,
            system_id: self.system.system_id.clone(),
            delivery_limit: self.options.amqp.delivery_limit,
            answered: Mutex::new(DedupWindow::new(
                self.options.amqp.dedup_window,
                self.options.amqp.dedup_window_bytes(),
            )),
            keyring: self.options.keyring.clone(),
            stats: Arc::clone(&self.stats),
        });
        let mut backoff = Backoff::reconnect();
        while !*stop.borrow() {
            let connection = match self.connection.take() {
                Some(connection) => Ok(connection),
                None => {
                    Connection::connect(&self.options.amqp.url, ConnectionProperties::default())
                        .await
                        .map_err(Error::from)
                }
            };
            let outcome = match connection {
                Ok(connection) => self.session(&connection, &shared, &mut stop).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) if *stop.borrow() => {}
                Ok(()) => {
                    backoff.reset();
                    tracing::warn!(system_id = %self.system.system_id, "lost the broker; reconnecting");
                }
                Err(error) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(system_id = %self.system.system_id, %error, retry_in_ms = wait.as_millis() as u64, "broker unavailable");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|stop| *stop) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Consumes the system's queue on one connection until it drops, or until `stop`
    /// (then drains).
    async fn session<F, Fut>(
        &self,
        connection: &Connection,
        shared: &Arc<Shared<F>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Error>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
    {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.options.prefetch, BasicQosOptions::default())
            .await?;
        let queue = topology::declare_system_queue(
            &channel,
            &shared.names,
            &self.options.amqp,
            &self.system,
        )
        .await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.system.system_id.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publisher = Publisher::open(connection).await?;
        tracing::info!(system_id = %self.system.system_id, %queue, "system worker serving");
        let acks = Acks::start(channel.clone());
        // Every delivery's task, so a shutdown can wait for those in progress.
        let deliveries = TaskTracker::new();
        let consume = async {
            loop {
                let delivery = tokio::select! {
                    delivery = consumer.next() => delivery,
                    _ = stop.wait_for(|stop| *stop) => return true,
                };
                let Some(Ok(delivery)) = delivery else {
                    return false;
                };
                acks.delivered(delivery.delivery_tag);
                let (shared, publisher, acks) =
                    (Arc::clone(shared), publisher.clone(), acks.clone());
                // The handler runs in this span: its own spans, and the reply's publish,
                // are children of the bus's publish that brought the message.
                let trace = trace_context::process_trace(&queue, &delivery);
                let work = async move {
                    let tag = delivery.delivery_tag;
                    let returned = match shared.handle(&publisher, &delivery).await {
                        Ok(Settle::Ack) => {
                            acks.ack(tag);
                            return;
                        }
                        // Parked in the broker, not held here: a held message would keep
                        // its prefetch slot through the pause.
                        Ok(Settle::Park { until, failed }) => {
                            let parked = publisher
                                .park(&shared.names, &delivery, &shared.queue, until, failed)
                                .await;
                            acks.after_parking(tag, parked).await
                        }
                        // The requester's reply queue is gone (it reconnected or quit):
                        // the work is done and nobody waits for its answer.
                        Err(Error::Amqp(aimbus_amqp::Error::Unroutable { .. })) => {
                            shared.stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("reply dropped: its reply queue no longer exists");
                            acks.ack(tag);
                            return;
                        }
                        // Anything else is the broker's trouble: hand it back, so the
                        // prefetch slot is freed and the message comes round again.
                        Err(error) => {
                            tracing::warn!(%error, "message returned to the queue");
                            acks.nack(tag, true).await
                        }
                    };
                    if let Err(error) = returned {
                        tracing::warn!(%error, "nack failed; the broker will redeliver");
                    }
                };
                deliveries.spawn(trace.instrument(work));
            }
        };
        let stopped = tokio::select! {
            stopped = consume => stopped,
            () = aimbus_amqp::until_lost(connection) => false,
        };
        if stopped {
            let (tag, grace) = (&self.system.system_id, self.options.amqp.shutdown_grace());
            aimbus_amqp::drain(&channel, tag, deliveries, acks, grace).await;
        }
        aimbus_amqp::close(connection).await;
        Ok(())
    }
}

struct Shared<F> {
    handler: F,
    names: Names,
    codec: Codec,
    system_id: String,
    /// The system's queue, where its parked messages come back.
    queue: String,
    /// Deliveries of a forwarded message that may fail before it is dead-lettered.
    delivery_limit: u32,
    answered: Mutex<DedupWindow<Answer>>,
    keyring: Option<Arc<Keyring>>,
    stats: Arc<WorkerStats>,
}

impl<F, Fut> Shared<F>
where
    F: Fn(IntegrationMessage) -> Fut,
    Fut: Future<Output = Result<Map<String, Value>, HandlerError>>,
{
    async fn handle(&self, publisher: &Publisher, delivery: &Delivery) -> Result<Settle, Error> {
        // Back from a delay level shorter than its wait: park the rest, undecoded.
        if let Some(until) = parking::parked_until(&delivery.properties) {
            return Ok(Settle::Park {
                until,
                failed: None,
            });
        }
        let message = match envelope::decode(&self.codec, delivery) {
            Ok(message) => message,
            Err(error) => {
                let reason = format!("decode: {error}");
                publisher
                    .dead_letter(&self.names, delivery, &reason)
                    .await?;
                return Ok(Settle::Ack);
            }
        };
        let forwarded = delivery.properties.reply_to().is_none();
        let answer = match DedupWindow::begin(&self.answered, &message.message_id) {
            Begin::Answered(answer) => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                answer
            }
            Begin::InFlight => {
                return Ok(Settle::Park {
                    until: SystemTime::now() + parking::COPY_IN_FLIGHT_WAIT,
                    failed: None,
                });
            }
            Begin::New(handling) => {
                let answer = self.answer(message).await;
                // A failure may succeed next time, so only settled answers are kept.
                handling
                    .finish((answer.outcome != "failed").then(|| answer.to_remember(forwarded)));
                answer
            }
        };
        let Some(reply_to) = delivery.properties.reply_to() else {
            // Forwarded: nobody waits for an answer, so the queue itself keeps the promise.
            let reason = answer.reply.payload.get("error").and_then(Value::as_str);
            let reason = reason.unwrap_or("no reason given");
            return match answer.outcome {
                "ok" => Ok(Settle::Ack),
                "failed" => self.after_failure(publisher, delivery, reason).await,
                _ => {
                    let reason = format!("rejected: {reason}");
                    publisher
                        .dead_letter(&self.names, delivery, &reason)
                        .await?;
                    Ok(Settle::Ack)
                }
            };
        };
        let correlation_id = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned());
        let routing = Routing {
            correlation_id: correlation_id.as_deref(),
            headers: vec![(OUTCOME_HEADER, answer.outcome.to_owned())],
            // As durable as the request: a transient one's caller retries if either is lost.
            transient: envelope::is_transient(&delivery.properties),
            ..Routing::default()
        };
        let format = envelope::format_of(&delivery.properties)?;
        let (body, properties) = envelope::encode(&self.codec, format, &answer.reply, &routing)?;
        publisher
            .publish("", reply_to.as_str(), &body, properties)
            .await?;
        Ok(Settle::Ack)
    }

    /// A forwarded message whose handler failed: parked for a pause that grows with each
    /// failed delivery (counted in a header that travels with it), and dead-lettered
    /// with the reason once `delivery_limit` deliveries failed, as at the bus's ingress.
    async fn after_failure(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<Settle, Error> {
        let next = parking::after_failure(
            &delivery.properties,
            self.delivery_limit,
            format_args!("failed: {reason}"),
        );
        match next {
            AfterFailure::Retry { until, failed } => {
                tracing::info!(system_id = %self.system_id, failed, "message will be retried");
                Ok(Settle::Park {
                    until,
                    failed: Some(failed),
                })
            }
            AfterFailure::GiveUp { reason } => {
                publisher
                    .dead_letter(&self.names, delivery, &reason)
                    .await?;
                Ok(Settle::Ack)
            }
        }
    }

    /// The handler's answer to `message`, opened first and sealed after when it came
    /// sealed.
    async fn answer(&self, mut message: IntegrationMessage) -> Answer {
        // The envelope the reply is made from; the payload goes to the handler, uncopied.
        let request = message.without_payload();
        let sealed = Keyring::is_sealed(&message.payload);
        match (&self.keyring, sealed) {
            (Some(keyring), true) => {
                if let Err(error) = keyring.open(&mut message) {
                    // Refused like a handler's rejection: another attempt would fail too.
                    return self.refuse(&request, format!("unauthorised: {error}"));
                }
            }
            (None, true) => {
                let reason = "unauthorised: a sealed payload, and this worker has no keyring";
                return self.refuse(&request, reason.to_owned());
            }
            _ => {}
        }
        let mut answer = self.answer_plain(&request, message).await;
        if let (Some(keyring), true) = (&self.keyring, sealed) {
            if let Err(error) = keyring.seal(Arc::make_mut(&mut answer.reply)) {
                return self.refuse(&request, format!("cannot seal the reply: {error}"));
            }
        }
        answer
    }

    fn refuse(&self, request: &IntegrationMessage, reason: String) -> Answer {
        self.reply(request, error_payload(reason), "rejected")
    }

    fn reply(
        &self,
        request: &IntegrationMessage,
        payload: Map<String, Value>,
        outcome: &'static str,
    ) -> Answer {
        let reply = envelope::reply_to_request(request, &self.system_id, payload);
        Answer {
            reply: Arc::new(reply),
            outcome,
        }
    }

    async fn answer_plain(
        &self,
        request: &IntegrationMessage,
        message: IntegrationMessage,
    ) -> Answer {
        let result = if message.message_type == aimbus_core::HEALTH_CHECK {
            Ok(health_payload(&self.system_id))
        } else {
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
            (self.handler)(message).await
        };
        match result {
            Ok(payload) => self.reply(request, payload, "ok"),
            Err(HandlerError::Failed(reason)) => {
                self.reply(request, error_payload(reason), "failed")
            }
            Err(HandlerError::Rejected(reason)) => self.refuse(request, reason),
        }
    }
}

/// What a system answers a `health_check` with, whichever transport carried it.
pub(crate) fn health_payload(system_id: &str) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("status".into(), json!("healthy"));
    payload.insert("system_id".into(), json!(system_id));
    payload
}

fn error_payload(reason: String) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("error".into(), json!(reason));
    payload
}

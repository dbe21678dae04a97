use std::future::Future;
use std::sync::{Arc, Mutex};

use aimbus_amqp::envelope::{self, OUTCOME_HEADER, Routing};
use aimbus_amqp::{DedupWindow, Names, Publisher, topology};
use aimbus_core::{AmqpConfig, Codec, IntegrationMessage, SystemInfo};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Map, Value, json};
use tokio_stream::StreamExt;

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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            amqp: AmqpConfig::default(),
            prefetch: 32,
        }
    }
}

/// An AIM-OS system served over AMQP: it consumes the system's queue, hands each message
/// to an async handler, replies to `reply_to`, and acknowledges only once the handler
/// finished and the reply was confirmed. Redelivered messages (same `message_id`) are
/// answered again from memory, not handled again; `health_check` is answered for you.
pub struct SystemWorker {
    connection: Connection,
    system: SystemInfo,
    options: WorkerOptions,
    codec: Codec,
}

/// What was answered to a message, kept to answer its redeliveries.
#[derive(Clone)]
struct Answer {
    reply: IntegrationMessage,
    outcome: &'static str,
}

impl SystemWorker {
    pub async fn connect(
        system: SystemInfo,
        options: WorkerOptions,
        codec: Codec,
    ) -> Result<SystemWorker, Error> {
        let connection =
            Connection::connect(&options.amqp.url, ConnectionProperties::default()).await?;
        Ok(SystemWorker {
            connection,
            system,
            options,
            codec,
        })
    }

    /// Serves until the connection ends.
    pub async fn serve<F, Fut>(self, handler: F) -> Result<(), Error>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
    {
        let names = Names::new(&self.options.amqp.namespace);
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(self.options.prefetch, BasicQosOptions::default())
            .await?;
        let queue =
            topology::declare_system_queue(&channel, &names, &self.options.amqp, &self.system)
                .await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.system.system_id.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publisher = Publisher::open(&self.connection).await?;
        let shared = Arc::new(Shared {
            handler,
            publisher,
            names,
            codec: self.codec,
            system_id: self.system.system_id.clone(),
            answered: Mutex::new(DedupWindow::new(self.options.amqp.dedup_window)),
        });
        tracing::info!(system_id = %self.system.system_id, %queue, "system worker serving");
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                if let Err(error) = shared.handle(&delivery).await {
                    // Not acknowledged: the broker redelivers it.
                    tracing::warn!(%error, "message left for redelivery");
                    return;
                }
                if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%error, "acknowledgement failed; the broker will redeliver");
                }
            });
        }
        Ok(())
    }
}

struct Shared<F> {
    handler: F,
    publisher: Publisher,
    names: Names,
    codec: Codec,
    system_id: String,
    answered: Mutex<DedupWindow<Answer>>,
}

impl<F, Fut> Shared<F>
where
    F: Fn(IntegrationMessage) -> Fut,
    Fut: Future<Output = Result<Map<String, Value>, HandlerError>>,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), Error> {
        let message = match envelope::decode(&self.codec, delivery) {
            Ok(message) => message,
            Err(error) => {
                return self
                    .dead_letter(delivery, &format!("decode: {error}"))
                    .await;
            }
        };
        let remembered = self
            .answered
            .lock()
            .expect("dedup lock")
            .get(&message.message_id);
        let answer = match remembered {
            Some(answer) => answer,
            None => {
                let answer = self.answer(&message).await;
                // A failure may succeed next time, so only settled answers are kept.
                if answer.outcome != "failed" {
                    self.answered
                        .lock()
                        .expect("dedup lock")
                        .insert(&message.message_id, answer.clone());
                }
                answer
            }
        };
        let Some(reply_to) = delivery.properties.reply_to() else {
            return Ok(());
        };
        let correlation_id = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned());
        let routing = Routing {
            correlation_id: correlation_id.as_deref(),
            headers: vec![(OUTCOME_HEADER, answer.outcome.to_owned())],
            ..Routing::default()
        };
        let format = envelope::format_of(&delivery.properties)?;
        let (body, properties) = envelope::encode(&self.codec, format, &answer.reply, &routing)?;
        self.publisher
            .publish("", reply_to.as_str(), &body, properties)
            .await?;
        Ok(())
    }

    async fn answer(&self, message: &IntegrationMessage) -> Answer {
        let result = if message.message_type == "health_check" {
            let mut payload = Map::new();
            payload.insert("status".into(), json!("healthy"));
            payload.insert("system_id".into(), json!(self.system_id));
            Ok(payload)
        } else {
            (self.handler)(message.clone()).await
        };
        let (payload, outcome) = match result {
            Ok(payload) => (payload, "ok"),
            Err(HandlerError::Failed(reason)) => (error_payload(reason), "failed"),
            Err(HandlerError::Rejected(reason)) => (error_payload(reason), "rejected"),
        };
        Answer {
            reply: envelope::reply_to_request(message, &self.system_id, payload),
            outcome,
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        Ok(self
            .publisher
            .dead_letter(&self.names, delivery, reason)
            .await?)
    }
}

fn error_payload(reason: String) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("error".into(), json!(reason));
    payload
}

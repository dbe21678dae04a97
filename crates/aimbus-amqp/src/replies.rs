//! Request/reply over AMQP: an exclusive reply queue per connection and a table of
//! requests waiting for their reply, matched by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aimbus_core::{Codec, IntegrationMessage};
use lapin::Connection;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

use crate::envelope::{self, OUTCOME_HEADER};
use crate::{Error, link};

/// A reply as it came back: the message, and what the system said of its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyMessage {
    pub message: IntegrationMessage,
    /// `ok`, `failed` or `rejected` (`ok` when the header is absent).
    pub outcome: String,
}

/// The requests waiting for their reply, and whether any reply can still come.
#[derive(Default)]
struct Table {
    senders: HashMap<String, oneshot::Sender<ReplyMessage>>,
    /// The reply consumer has ended (its connection is gone): nothing more will be
    /// answered here.
    closed: bool,
}

type Waiting = Arc<Mutex<Table>>;

pub struct ReplyInbox {
    queue: String,
    waiting: Waiting,
    sequence: AtomicU64,
}

/// A request waiting for its reply; dropping it (a timeout) forgets the request, so a
/// late reply is discarded rather than kept.
pub struct PendingReply {
    correlation_id: String,
    waiting: Waiting,
    receiver: Option<oneshot::Receiver<ReplyMessage>>,
}

impl PendingReply {
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The reply; `None` as soon as the inbox lost its connection (or had lost it before
    /// the request was registered): the reply can never come, so the caller asks again
    /// on a new connection instead of waiting out its timeout.
    pub async fn wait(mut self) -> Option<ReplyMessage> {
        self.receiver.take()?.await.ok()
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .expect("reply table lock")
            .senders
            .remove(&self.correlation_id);
    }
}

impl ReplyInbox {
    /// Declares a server-named exclusive queue and consumes it until the connection ends;
    /// then every request still waiting is failed at once.
    pub async fn start(connection: &Connection, codec: Codec) -> Result<Arc<ReplyInbox>, Error> {
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), options, FieldTable::default())
            .await?;
        let queue = queue.name().as_str().to_owned();
        // Replies are transient and matched at once: no acks needed.
        let consume = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "aimbus-replies".into(),
                consume,
                FieldTable::default(),
            )
            .await?;
        let inbox = Arc::new(ReplyInbox {
            queue,
            waiting: Arc::default(),
            sequence: AtomicU64::new(0),
        });
        let waiting = Arc::clone(&inbox.waiting);
        // The consumer does not always end with its connection: watch the connection too.
        let lost = link::until_channel_lost(connection, channel.clone());
        tokio::spawn(async move {
            // Keeps the channel open for as long as the consumer runs.
            let _channel = channel;
            tokio::pin!(lost);
            loop {
                let delivery = tokio::select! {
                    delivery = consumer.next() => delivery,
                    () = &mut lost => None,
                };
                let Some(Ok(delivery)) = delivery else {
                    break;
                };
                let Some(correlation_id) = delivery.properties.correlation_id().clone() else {
                    continue;
                };
                let sender = waiting
                    .lock()
                    .expect("reply table lock")
                    .senders
                    .remove(correlation_id.as_str());
                let Some(sender) = sender else {
                    tracing::debug!(
                        correlation_id = correlation_id.as_str(),
                        "late reply discarded"
                    );
                    continue;
                };
                match envelope::decode(&codec, &delivery) {
                    Ok(message) => {
                        let outcome = envelope::header(&delivery.properties, OUTCOME_HEADER)
                            .unwrap_or_else(|| "ok".to_owned());
                        let _ = sender.send(ReplyMessage { message, outcome });
                    }
                    Err(error) => tracing::warn!(%error, "undecodable reply discarded"),
                }
            }
            // Dropping the senders wakes every waiting request with `None`.
            let mut table = waiting.lock().expect("reply table lock");
            table.closed = true;
            let failed = std::mem::take(&mut table.senders).len();
            drop(table);
            if failed > 0 {
                tracing::debug!(failed, "reply queue lost; waiting requests failed");
            }
        });
        Ok(inbox)
    }

    /// The queue replies must be sent to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Registers a request under a fresh correlation id (unique per attempt, so a late
    /// reply to an earlier attempt cannot answer a later one).
    pub fn expect(&self, message_id: &str) -> PendingReply {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        self.expect_correlation(format!("{message_id}#{n}"))
    }

    /// Registers a request whose reply will carry exactly `correlation_id` (the bus
    /// answers an ingress request with its `message_id`).
    pub fn expect_correlation(&self, correlation_id: String) -> PendingReply {
        let (sender, receiver) = oneshot::channel();
        let mut table = self.waiting.lock().expect("reply table lock");
        // A closed inbox drops the sender here, so the request fails at once.
        if !table.closed {
            table.senders.insert(correlation_id.clone(), sender);
        }
        drop(table);
        PendingReply {
            correlation_id,
            waiting: Arc::clone(&self.waiting),
            receiver: Some(receiver),
        }
    }
}

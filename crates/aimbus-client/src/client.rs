use std::sync::Arc;
use std::time::{Duration, Instant};

use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::{INGRESS_ROUTING_KEY, Names, Publisher, ReplyInbox, ReplyMessage};
use aimbus_core::{Backoff, Codec, Format, IntegrationMessage};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::Error;

/// How long `send` keeps trying through broker outages before it gives up.
const SEND_PATIENCE: Duration = Duration::from_secs(30);

/// Publishes messages to the bus's ingress, with publisher confirms, and awaits replies.
/// It rides out broker outages: a publish that failed, or whose confirm never came, is
/// sent again on a new connection (the bus drops copies of what it already has), and a
/// request whose reply queue went away is sent again with the same id.
pub struct BusClient {
    url: String,
    names: Names,
    codec: Codec,
    session: Mutex<Option<Session>>,
}

#[derive(Clone)]
struct Session {
    connection: Arc<Connection>,
    publisher: Publisher,
    inbox: Arc<ReplyInbox>,
}

impl BusClient {
    pub async fn connect(url: &str, namespace: &str, codec: Codec) -> Result<BusClient, Error> {
        let client = BusClient {
            url: url.to_owned(),
            names: Names::new(namespace),
            codec,
            session: Mutex::new(None),
        };
        client.session().await?;
        Ok(client)
    }

    /// The current session, or a new one.
    async fn session(&self) -> Result<Session, Error> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            if session.connection.status().connected() {
                return Ok(session.clone());
            }
        }
        let connection =
            Arc::new(Connection::connect(&self.url, ConnectionProperties::default()).await?);
        let session = Session {
            publisher: Publisher::open(&connection).await?,
            inbox: ReplyInbox::start(&connection, self.codec).await?,
            connection,
        };
        *current = Some(session.clone());
        Ok(session)
    }

    /// Drops `failed` as the current session, unless another caller replaced it already
    /// (many requests fail together when a connection goes; one new session serves them).
    async fn forget(&self, failed: &Session) {
        let mut current = self.session.lock().await;
        if current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.connection, &failed.connection))
        {
            *current = None;
        }
    }

    /// Publishes to the ingress, persistent; returns once the broker has the message in
    /// its queue.
    pub async fn send(&self, message: &IntegrationMessage, format: Format) -> Result<(), Error> {
        self.publish(message, format, &Routing::default()).await
    }

    async fn publish(
        &self,
        message: &IntegrationMessage,
        format: Format,
        routing: &Routing<'_>,
    ) -> Result<(), Error> {
        let (body, properties) = envelope::encode(&self.codec, format, message, routing)?;
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let (session, sent) = match self.session().await {
                Ok(session) => {
                    let sent = session
                        .publisher
                        .publish(
                            &self.names.ingress(),
                            INGRESS_ROUTING_KEY,
                            &body,
                            properties.clone(),
                        )
                        .await
                        .map_err(Error::from);
                    (Some(session), sent)
                }
                Err(error) => (None, Err(error)),
            };
            match sent {
                Ok(()) => return Ok(()),
                // Not the broker's trouble: no ingress to route to.
                Err(error @ Error::Amqp(aimbus_amqp::Error::Unroutable { .. })) => {
                    return Err(error);
                }
                Err(error) if started.elapsed() > SEND_PATIENCE => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, "send failed; trying again on a new connection");
                    if let Some(session) = &session {
                        self.forget(session).await;
                    }
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    /// Sends a message with this client's reply queue as `reply_to` and waits for the
    /// routed reply (correlated by the message's id). Sent transient: a request lost
    /// with the broker goes with this client's reply queue, and is sent again.
    pub async fn request(
        &self,
        mut message: IntegrationMessage,
        format: Format,
        timeout: Duration,
    ) -> Result<ReplyMessage, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            // The broker may be away (restarting): keep trying until the deadline.
            let session = match self.session().await {
                Ok(session) => session,
                Err(error) => {
                    let wait = backoff.next_wait();
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(%error, "request waits for the broker");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            message.reply_to = Some(session.inbox.queue().to_owned());
            let pending = session.inbox.expect_correlation(message.message_id.clone());
            let transient = Routing {
                transient: true,
                ..Routing::default()
            };
            self.publish(&message, format, &transient).await?;
            match tokio::time::timeout_at(deadline, pending.wait()).await {
                Ok(Some(reply)) => return Ok(reply),
                // The reply queue went with its connection: ask again on a new one.
                Ok(None) => self.forget(&session).await,
                Err(_) => return Err(Error::NoReply(timeout)),
            }
        }
    }
}

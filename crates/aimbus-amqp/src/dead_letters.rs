//! Reading and replaying the dead-letter queue: what `aimbus dlq list` and
//! `aimbus dlq replay` do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::{Channel, Connection};

use crate::Error;
use crate::envelope::{self, ERROR_HEADER, FAILED_DELIVERIES_HEADER};
use crate::names::{INGRESS_ROUTING_KEY, Names};
use crate::publisher::Publisher;

/// One dead letter, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// Why it was dead-lettered (`x-aimbus-error`).
    pub reason: String,
    pub message_type: Option<String>,
    /// The sending system (`app_id`).
    pub source: Option<String>,
    /// Time since the message was created, if it carries a timestamp.
    pub age: Option<Duration>,
    pub bytes: usize,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

pub struct DeadLetters {
    channel: Channel,
    publisher: Publisher,
    names: Names,
}

impl DeadLetters {
    pub async fn open(connection: &Connection, names: Names) -> Result<DeadLetters, Error> {
        Ok(DeadLetters {
            channel: connection.create_channel().await?,
            publisher: Publisher::open(connection).await?,
            names,
        })
    }

    /// Takes up to `limit` messages off the queue, unacknowledged; they go back when
    /// released.
    async fn take(&self, limit: usize) -> Result<Vec<BasicGetMessage>, Error> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let queue = self.names.dead_letter_queue();
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await?
            {
                Some(message) => taken.push(message),
                None => break,
            }
        }
        Ok(taken)
    }

    async fn release(message: &BasicGetMessage) -> Result<(), Error> {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        message.delivery.nack(requeue).await?;
        Ok(())
    }

    /// Up to `limit` dead letters, oldest first, left in the queue.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let taken = self.take(limit).await?;
        let listed = taken.iter().map(describe).collect();
        for message in &taken {
            Self::release(message).await?;
        }
        Ok(listed)
    }

    /// Publishes the selected dead letters back to the ingress, as they came in (their
    /// reason header removed), and removes them from the queue once the broker confirmed
    /// each. Returns how many were replayed.
    pub async fn replay(&self, selection: &Selection, limit: usize) -> Result<usize, Error> {
        let taken = self.take(limit).await?;
        let mut replayed = 0;
        for message in &taken {
            let delivery = &message.delivery;
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str());
            let chosen = match selection {
                Selection::All => true,
                Selection::Ids(ids) => id.is_some_and(|id| ids.iter().any(|wanted| wanted == id)),
            };
            if !chosen {
                Self::release(message).await?;
                continue;
            }
            let mut properties = delivery.properties.clone();
            if let Some(headers) = properties.headers().clone() {
                let kept = headers
                    .inner()
                    .iter()
                    // A replayed message starts afresh: no reason, no failures counted.
                    .filter(|(name, _)| {
                        ![ERROR_HEADER, FAILED_DELIVERIES_HEADER].contains(&name.as_str())
                    })
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>();
                properties = properties.with_headers(kept.into());
            }
            let published = self
                .publisher
                .publish(
                    &self.names.ingress(),
                    INGRESS_ROUTING_KEY,
                    &delivery.data,
                    properties,
                )
                .await;
            match published {
                Ok(()) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    replayed += 1;
                }
                Err(error) => {
                    Self::release(message).await?;
                    return Err(error);
                }
            }
        }
        Ok(replayed)
    }
}

fn describe(message: &BasicGetMessage) -> DeadLetter {
    let properties = &message.delivery.properties;
    let text =
        |value: &Option<lapin::types::ShortString>| value.as_ref().map(|v| v.as_str().to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DeadLetter {
        message_id: text(properties.message_id()),
        reason: envelope::header(properties, ERROR_HEADER)
            .unwrap_or_else(|| "(no reason given)".into()),
        message_type: text(properties.kind()),
        source: text(properties.app_id()),
        age: properties
            .timestamp()
            .map(|sent| Duration::from_secs(now.saturating_sub(sent))),
        bytes: message.delivery.data.len(),
    }
}

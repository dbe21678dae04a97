//! Declares the AMQP contract's exchanges, queues and bindings. Every declaration is
//! idempotent, so it runs at every start and after every reconnect.

use aimbus_core::{AmqpConfig, QueueType, SystemInfo};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::names::{INGRESS_ROUTING_KEY, Names};
use crate::{Error, parking};

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// The bus's exchanges and their kinds.
fn bus_exchanges(names: &Names) -> [(String, ExchangeKind); 6] {
    [
        (names.ingress(), ExchangeKind::Direct),
        (names.deliver(), ExchangeKind::Topic),
        (names.dead(), ExchangeKind::Fanout),
        (names.events(), ExchangeKind::Topic),
        (names.delay(), ExchangeKind::Topic),
        (names.returns(), ExchangeKind::Topic),
    ]
}

/// The key a queue that parks messages is bound with on the returns exchange: any
/// level, this queue.
fn returns_key(queue: &str) -> String {
    format!("*.{queue}")
}

/// The bus's own exchanges and queues: ingress, deliver, dead letters, events, and the
/// delay queues where parked messages wait (see [`crate::parking`]). With
/// `amqp.queue_type = "quorum"` every queue is a quorum queue, replicated across a
/// RabbitMQ cluster, so no node's loss takes a queue or its messages with it.
pub async fn declare_bus(
    channel: &Channel,
    names: &Names,
    config: &AmqpConfig,
) -> Result<(), Error> {
    let exchanges = bus_exchanges(names);
    for (name, kind) in exchanges {
        channel
            .exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await?;
    }
    let mut ingress = FieldTable::default();
    let mut dead_letters = FieldTable::default();
    if config.queue_type == QueueType::Quorum {
        ingress = limited_quorum(config, names);
        dead_letters.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    for (queue, arguments) in [
        (names.ingress(), ingress),
        (names.dead_letter_queue(), dead_letters),
    ] {
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), arguments)
            .await?;
    }
    let bindings = [
        (
            names.ingress(),
            names.ingress(),
            INGRESS_ROUTING_KEY.to_owned(),
        ),
        (
            names.ingress(),
            names.returns(),
            returns_key(&names.ingress()),
        ),
        (names.dead_letter_queue(), names.dead(), String::new()),
    ];
    for (queue, exchange, key) in bindings {
        bind(channel, &queue, &exchange, &key).await?;
    }
    // What expires in a delay queue goes back, by its key, to the queue it was parked from.
    let mut returns = FieldTable::default();
    if config.queue_type == QueueType::Quorum {
        returns = at_least_once_quorum();
    }
    returns.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.returns().into()),
    );
    for level in parking::levels() {
        let queue = names.delay_queue(level);
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), returns.clone())
            .await?;
        let key = format!("{}.#", level.as_millis());
        bind(channel, &queue, &names.delay(), &key).await?;
    }
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// A system's queue, bound on the deliver exchange with `<system_type>.<system_id>`.
pub async fn declare_system_queue(
    channel: &Channel,
    names: &Names,
    config: &AmqpConfig,
    system: &SystemInfo,
) -> Result<String, Error> {
    let queue = names.queue_of(system);
    channel
        .queue_declare(
            queue.as_str().into(),
            durable_queue(),
            system_queue_arguments(config, names),
        )
        .await?;
    bind(
        channel,
        &queue,
        &names.deliver(),
        &Names::system_routing_key(system),
    )
    .await?;
    // Where the system's own parked messages come back (see aimbus-client's worker).
    bind(channel, &queue, &names.returns(), &returns_key(&queue)).await?;
    Ok(queue)
}

/// How a system's queue is declared: classic with priorities (unless `max_priority` is
/// 0), or quorum with a delivery limit.
pub fn system_queue_arguments(config: &AmqpConfig, names: &Names) -> FieldTable {
    match config.queue_type {
        QueueType::Classic => {
            let mut arguments = FieldTable::default();
            if config.max_priority > 0 {
                arguments.insert(
                    "x-max-priority".into(),
                    AMQPValue::ShortShortUInt(config.max_priority),
                );
            }
            arguments
        }
        QueueType::Quorum => limited_quorum(config, names),
    }
}

/// Whether the system queues `config` declares honour message priorities.
pub fn honours_priorities(config: &AmqpConfig) -> bool {
    config.queue_type == QueueType::Classic && config.max_priority > 0
}

/// A quorum queue whose messages dead-letter with at-least-once safety: the broker keeps
/// a message until the dead-letter target confirmed it (which needs `reject-publish`),
/// so a node lost mid-way loses nothing.
fn at_least_once_quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    arguments
}

/// A quorum queue that hands a message redelivered `amqp.delivery_limit` times (a
/// consumer crashing on it, again and again) to the dead letters rather than forever
/// round: the bus and the SDK count failures themselves, so only crashes reach this.
fn limited_quorum(config: &AmqpConfig, names: &Names) -> FieldTable {
    let mut arguments = at_least_once_quorum();
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead().into()),
    );
    arguments
}

/// Deletes a namespace: the bus's queues, `other_queues` (systems' and clients'), and
/// the bus's exchanges. What is already gone is skipped. Stop the bridge first, or its
/// next reconnect declares the namespace again.
pub async fn delete_namespace(
    channel: &Channel,
    names: &Names,
    other_queues: impl IntoIterator<Item = String>,
) -> Result<(), Error> {
    let queues = [names.ingress(), names.dead_letter_queue()];
    let delay_queues = parking::levels().map(|level| names.delay_queue(level));
    for queue in queues.into_iter().chain(delay_queues).chain(other_queues) {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for (exchange, _) in bus_exchanges(names) {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(queue_type: QueueType, max_priority: u8) -> FieldTable {
        let config = AmqpConfig {
            queue_type,
            max_priority,
            ..AmqpConfig::default()
        };
        system_queue_arguments(&config, &Names::new("aimbus"))
    }

    #[test]
    fn classic_system_queues_have_the_configured_priorities_or_none() {
        let ten = arguments(QueueType::Classic, 10);
        assert_eq!(
            ten.inner().get("x-max-priority"),
            Some(&AMQPValue::ShortShortUInt(10))
        );
        let none = arguments(QueueType::Classic, 0);
        assert!(none.inner().is_empty(), "{none:?}");
        let quorum = arguments(QueueType::Quorum, 10);
        assert!(quorum.inner().get("x-max-priority").is_none());
        assert_eq!(
            quorum.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }
}

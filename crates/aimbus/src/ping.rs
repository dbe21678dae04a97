//! `aimbus systems ping`: a `health_check` published straight to each system's queue,
//! answered by its worker or not. It checks the workers themselves, not the bus: the
//! healthcheck of a container that runs systems.

use std::time::Duration;

use aimbus_actors::Transport;
use aimbus_amqp::{Names, Publisher, ReplyInbox};
use aimbus_bridge::AmqpTransport;
use aimbus_core::{Config, IntegrationMessage, QueueType, SystemsFile, interface};
use anyhow::Context;
use lapin::{Connection, ConnectionProperties};

use crate::cli::PingArgs;

pub fn run(config: &Config, systems: &SystemsFile, args: &PingArgs) -> anyhow::Result<()> {
    let chosen = crate::systems::selected(systems, &args.systems)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let amqp = config.amqp();
    tokio::runtime::Runtime::new()?.block_on(async move {
        let connection = Connection::connect(&amqp.url, ConnectionProperties::default())
            .await
            .with_context(|| format!("cannot reach the broker at {}", amqp.url))?;
        let transport = AmqpTransport::new(
            Names::new(&amqp.namespace),
            config.codec(),
            amqp.queue_type == QueueType::Classic,
            amqp.persistent_requests,
            crate::keyring::load(config)?,
        );
        transport.attach(
            Publisher::open(&connection).await?,
            ReplyInbox::start(&connection, config.codec()).await?,
        );
        let mut unhealthy = 0;
        for system in &chosen {
            if !system.interfaces.contains_key(interface::AMQP) {
                println!("{} skipped: no amqp interface", system.system_id);
                continue;
            }
            let mut check = IntegrationMessage::new(
                "aimbus",
                system.system_id.clone(),
                aimbus_core::HEALTH_CHECK,
                serde_json::Map::new(),
            );
            check.ttl_ms = Some(args.timeout_ms);
            let deadline = tokio::time::Instant::now() + timeout;
            let delivery = transport.deliver(system, check.into(), deadline);
            let answer = tokio::time::timeout_at(deadline, delivery);
            match answer.await {
                Ok(Ok(_)) => println!("{} ok", system.system_id),
                Ok(Err(failure)) => {
                    unhealthy += 1;
                    println!("{} {failure}", system.system_id);
                }
                Err(_) => {
                    unhealthy += 1;
                    println!("{} no answer within {timeout:?}", system.system_id);
                }
            }
        }
        aimbus_amqp::close(&connection).await;
        anyhow::ensure!(unhealthy == 0, "{unhealthy} systems did not answer healthy");
        Ok(())
    })
}

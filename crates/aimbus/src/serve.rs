//! `aimbus serve`: the actor system, the router and (unless disabled) the RabbitMQ
//! bridge, until a shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use aimbus_actors::{InProcessTransport, RouterHandle, TransportSet, start_registry};
use aimbus_amqp::Bridge;
use aimbus_core::{Codec, Config, SystemsFile, interface};

use crate::signals::ShutdownSignals;

pub fn run(config: &Config, systems: &SystemsFile) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        // Installed before anything else, so a signal sent from then on is always
        // handled rather than killing the process.
        let mut shutdown = ShutdownSignals::install()?;
        let codec = Codec::new(config.decode_limits());
        let mut transports = TransportSet::new(Arc::new(InProcessTransport::new()));
        let bridge = if config.amqp().enabled {
            let connecting = connect(config, codec);
            let bridge = tokio::select! {
                bridge = connecting => bridge?,
                signal = shutdown.recv() => {
                    tracing::info!(signal, "shutting down before the broker answered");
                    return Ok(());
                }
            };
            bridge.declare_systems(systems.systems()).await?;
            let amqp = bridge.transport().await?;
            for kind in &config.amqp().interface_preference {
                // The REST transport joins with the gateway.
                if kind == interface::AMQP {
                    transports = transports.with_interface(kind, amqp.clone());
                }
            }
            Some(bridge)
        } else {
            None
        };
        let registry = start_registry(config.supervision(), transports, systems).await?;
        let router = RouterHandle::start(Arc::new(config.clone()), registry.clone()).await?;
        if let Some(bridge) = &bridge {
            bridge.start_ingress(router.clone()).await?;
        }
        let summary = registry.query(|r| r.summary()).await?;
        tracing::info!(
            systems = summary.total_systems,
            dependencies = summary.total_dependencies,
            systems_file = %config.systems_file().display(),
            amqp = bridge.is_some(),
            "aimbus is serving"
        );
        // The registry actor logs every registration and status change itself.
        let signal = shutdown.recv().await;
        tracing::info!(signal, "shutting down");
        actix::System::current().stop();
        Ok(())
    })
}

/// Connects to the broker, waiting for it with backoff: a bus started before its broker
/// comes up once the broker does.
async fn connect(config: &Config, codec: Codec) -> anyhow::Result<Bridge> {
    let mut wait = Duration::from_millis(500);
    loop {
        match Bridge::connect(config.amqp(), codec).await {
            Ok(bridge) => return Ok(bridge),
            Err(error) => {
                tracing::warn!(%error, url = %config.amqp().url, retry_in_ms = wait.as_millis() as u64, "cannot reach the broker");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

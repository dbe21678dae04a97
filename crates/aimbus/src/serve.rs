//! `aimbus serve`: the actor system, the router and (unless disabled) the RabbitMQ
//! bridge, until a shutdown signal.

use std::sync::Arc;

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
            let bridge = Bridge::new(config.amqp(), codec);
            bridge.declare_systems(systems.systems()).await?;
            for kind in &config.amqp().interface_preference {
                // The REST transport joins with the gateway.
                if kind == interface::AMQP {
                    transports = transports.with_interface(kind, bridge.transport());
                }
            }
            Some(bridge)
        } else {
            None
        };
        let registry = start_registry(config.supervision(), transports, systems).await?;
        let router = RouterHandle::start(Arc::new(config.clone()), registry.clone()).await?;
        // Connects, and reconnects whenever the broker goes away, in the background.
        let _link = bridge.as_ref().map(|bridge| bridge.start(router.clone()));
        let _events = bridge
            .as_ref()
            .map(|bridge| bridge.publish_events(&registry));
        if let Some(bridge) = &bridge {
            tokio::select! {
                () = bridge.wait_connected() => {}
                signal = shutdown.recv() => {
                    tracing::info!(signal, "shutting down before the broker answered");
                    return Ok(());
                }
            }
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

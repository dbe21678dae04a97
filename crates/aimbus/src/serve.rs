//! `aimbus serve`: the actor system, until a shutdown signal.

use std::sync::Arc;

use aimbus_actors::{RouterHandle, TransportSet, start_registry};
use aimbus_core::{Config, SystemsFile};

pub fn run(config: &Config, systems: &SystemsFile) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        // Installed before the bus says it serves, so a signal sent from then on is
        // always handled rather than killing the process.
        let mut shutdown = ShutdownSignals::install()?;
        let registry =
            start_registry(config.supervision(), TransportSet::default(), systems).await?;
        // Routing and health checks; the transports that reach real systems (AMQP, REST)
        // join with the broker bridge and the gateway.
        let _router = RouterHandle::start(Arc::new(config.clone()), registry.clone()).await?;
        let summary = registry.query(|r| r.summary()).await?;
        tracing::info!(
            systems = summary.total_systems,
            dependencies = summary.total_dependencies,
            systems_file = %config.systems_file().display(),
            "aimbus is serving"
        );
        // The registry actor logs every registration and status change itself.
        let signal = shutdown.recv().await;
        tracing::info!(signal, "shutting down");
        actix::System::current().stop();
        Ok(())
    })
}

/// SIGINT (Ctrl-C) and SIGTERM (what `docker stop` sends).
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

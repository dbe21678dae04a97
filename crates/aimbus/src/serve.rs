//! `aimbus serve`: the actor system, until a shutdown signal.

use aimbus_actors::start_registry;
use aimbus_core::{Config, SystemsFile};
use tokio::sync::broadcast::error::RecvError;

pub fn run(config: &Config, systems: &SystemsFile) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        let registry = start_registry(config.supervision(), systems).await?;
        let mut events = registry.subscribe().await?.events;
        let summary = registry.query(|r| r.summary()).await?;
        tracing::info!(
            systems = summary.total_systems,
            dependencies = summary.total_dependencies,
            systems_file = %config.systems_file().display(),
            "aimbus is serving"
        );
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                signal = &mut shutdown => {
                    tracing::info!(signal = signal?, "shutting down");
                    break;
                }
                event = events.recv() => match event {
                    Ok(event) => tracing::info!(kind = event.kind(), system_id = event.system_id(), "registry event"),
                    Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "registry event log fell behind"),
                    Err(RecvError::Closed) => anyhow::bail!("the registry actor stopped"),
                },
            }
        }
        actix::System::current().stop();
        Ok(())
    })
}

/// Resolves on Ctrl-C, or on SIGTERM (what `docker stop` sends).
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        Ok(tokio::select! {
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT")?,
            _ = terminate.recv() => "SIGTERM",
        })
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("ctrl-c")
    }
}

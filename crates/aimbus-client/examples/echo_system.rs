//! Serves `hhni_001` from the configured systems as an echo over RabbitMQ:
//! `cargo run -p aimbus-client --example echo_system` (with `aimbus serve` running).

use aimbus_client::{SystemWorker, WorkerOptions};
use aimbus_core::{Config, SystemsFile};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load("configs/aimbus.toml".as_ref(), std::env::vars())?;
    let systems = SystemsFile::load(&config.systems_file())?;
    let system = systems
        .registry()
        .get("hhni_001")
        .cloned()
        .ok_or("hhni_001 is not configured")?;
    let options = WorkerOptions {
        amqp: config.amqp().clone(),
        ..WorkerOptions::default()
    };
    let worker = SystemWorker::connect(system, options, config.codec()).await?;
    worker
        .serve(|message| async move { Ok(message.payload) })
        .await?;
    Ok(())
}

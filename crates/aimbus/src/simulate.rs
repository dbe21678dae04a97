//! `aimbus systems simulate`: configured AIM-OS systems served by SDK workers that answer
//! each message type plausibly, after a set latency and with a set failure rate, so the
//! whole bus can be exercised locally.

use std::time::Duration;

use aimbus_client::{GrpcSystem, HandlerError, SystemWorker, WorkerOptions};
use aimbus_core::{Config, IntegrationMessage, SystemsFile, interface};
use anyhow::{Context, ensure};
use serde_json::{Map, Value, json};

use crate::cli::{SimulateArgs, SimulatedTransport};
use crate::signals::ShutdownSignals;

pub fn run(config: &Config, systems: &SystemsFile, args: &SimulateArgs) -> anyhow::Result<()> {
    ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate {} is out of range: give a share from 0.0 to 1.0",
        args.failure_rate
    );
    let chosen = crate::systems::selected(systems, &args.systems)?;
    if args.transport == SimulatedTransport::Grpc {
        for system in &chosen {
            ensure!(
                system.interfaces.contains_key(interface::GRPC),
                "{} has no grpc interface to serve on: give it one in the systems file, or leave --transport at amqp",
                system.system_id
            );
        }
    }
    let options = WorkerOptions {
        amqp: config.amqp().clone(),
        keyring: crate::keyring::load(config)?,
        ..WorkerOptions::default()
    };
    let codec = config.codec();
    let latency = Duration::from_millis(args.latency_ms);
    let failure_rate = args.failure_rate;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut shutdown = ShutdownSignals::install()?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut workers = Vec::new();
        for system in chosen {
            let system_id = system.system_id.clone();
            let id = system_id.clone();
            let handler = move |message| simulated(id.clone(), message, latency, failure_rate);
            let mut stopping = stopping.clone();
            let served = match args.transport {
                SimulatedTransport::Amqp => {
                    let worker = SystemWorker::connect(system, options.clone(), codec).await?;
                    tokio::spawn(async move { worker.serve_until(handler, stopping).await })
                }
                SimulatedTransport::Grpc => {
                    let address = &system.interfaces[interface::GRPC];
                    let listener = tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("cannot serve {system_id} on {address}"))?;
                    tracing::info!(%system_id, %address, "serving over gRPC");
                    let server = GrpcSystem::new(system_id.clone(), config.decode_limits());
                    let stopped = async move {
                        let _ = stopping.wait_for(|stop| *stop).await;
                    };
                    tokio::spawn(server.serve(listener, handler, stopped))
                }
            };
            workers.push(tokio::spawn(async move {
                if let Ok(Err(error)) = served.await {
                    tracing::error!(%system_id, %error, "simulated system stopped");
                }
            }));
        }
        tracing::info!(
            latency_ms = latency.as_millis() as u64,
            failure_rate,
            "simulated systems serving"
        );
        let signal = shutdown.recv().await;
        tracing::info!(signal, "simulation stopping: draining the workers");
        // Each worker finishes what it is handling and acknowledges it before it goes.
        stop.send_replace(true);
        let patience = config.amqp().shutdown_grace() * 2 + Duration::from_secs(2);
        let all_drained = async {
            for worker in workers {
                let _ = worker.await;
            }
        };
        let drained = tokio::time::timeout(patience, all_drained).await;
        if drained.is_err() {
            tracing::warn!("workers did not drain in time");
        }
        tracing::info!(signal, "simulation stopped");
        Ok(())
    })
}

/// What a simulated system answers: something shaped like its message type.
async fn simulated(
    system_id: String,
    message: IntegrationMessage,
    latency: Duration,
    failure_rate: f64,
) -> Result<Map<String, Value>, HandlerError> {
    tokio::time::sleep(latency).await;
    if failure_rate > 0.0 && rand_share() < failure_rate {
        return Err(HandlerError::Failed(format!(
            "{system_id} failed on purpose (simulation)"
        )));
    }
    let answer = match message.message_type.as_str() {
        "data_request" => {
            json!({"status": "success", "system": system_id, "data": message.payload})
        }
        "status_update" => json!({"status": "success", "system": system_id, "acknowledged": true}),
        "configuration_update" => {
            json!({"status": "success", "system": system_id, "applied": message.payload})
        }
        "error_notification" => json!({"status": "success", "system": system_id, "received": true}),
        _ => json!({"status": "success", "system": system_id, "echo": message.payload}),
    };
    Ok(answer.as_object().cloned().unwrap_or_default())
}

/// A share in [0, 1) from the clock's nanoseconds: enough to fail "about this often".
fn rand_share() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

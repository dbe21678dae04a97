//! `aimbus serve`: the actor system, the router, and (unless disabled) the RabbitMQ
//! bridge and the HTTP gateway, until a shutdown signal.

use std::sync::Arc;

use aimbus_actors::{
    InProcessTransport, NodeIdentity, RegistryHandle, RouterHandle, TransportSet, seed_registry,
};
use aimbus_bridge::{Bridge, BridgeSecurity};
use aimbus_core::{Config, SystemsFile, interface};
use aimbus_gateway::{Authenticator, Gateway, GrpcServer, GrpcTransport, RestTransport};
use anyhow::Context;

use crate::signals::ShutdownSignals;

pub fn run(
    config: &Config,
    systems: &SystemsFile,
    authenticator: Authenticator,
) -> anyhow::Result<()> {
    actix::System::new().block_on(async move {
        // Installed before anything else, so a signal sent from then on is always
        // handled rather than killing the process.
        let mut shutdown = ShutdownSignals::install()?;
        // Before any actor starts: metric handles made earlier would record nowhere.
        let metrics = if config.monitoring().enable_metrics {
            Some(aimbus_gateway::install_recorder(&config.cluster().node_id)?)
        } else {
            None
        };
        let codec = config.codec();
        let keyring = crate::keyring::load(config)?;
        let bridge = if config.amqp().enabled {
            let security = BridgeSecurity {
                keyring: keyring.clone(),
                signing_keys: crate::keyring::signing_keys(config)?,
                require_signed: config.security().require_signed_ingress,
            };
            let bridge = Bridge::new(config.amqp(), codec, security);
            bridge.declare_systems(systems.systems()).await?;
            Some(bridge)
        } else {
            None
        };
        let rest: Arc<RestTransport> = Arc::new(RestTransport::new(config.performance())?);
        let grpc = Arc::new(GrpcTransport::new(config));
        let mut transports = TransportSet::new(Arc::new(InProcessTransport::new()));
        // In the configured order of preference, each interface a transport serves here.
        for kind in &config.transports().interface_preference {
            match (kind.as_str(), &bridge) {
                (interface::AMQP, Some(bridge)) => {
                    transports = transports.with_interface(kind, bridge.transport());
                }
                (interface::REST_API, _) => {
                    transports = transports.with_interface(kind, rest.clone());
                }
                (interface::GRPC, _) => {
                    transports = transports.with_interface(kind, grpc.clone());
                }
                _ => {}
            }
        }
        // Bound first, so the node's heartbeat row can say where its gateway is.
        let listener = if config.gateway().enabled {
            let listen = &config.gateway().listen;
            let listener = std::net::TcpListener::bind(listen)
                .with_context(|| format!("cannot listen on {listen} (gateway.listen)"))?;
            Some(listener)
        } else {
            None
        };
        let grpc_listen = &config.gateway().grpc_listen;
        let grpc_listener = if grpc_listen.is_empty() {
            None
        } else {
            let listener = std::net::TcpListener::bind(grpc_listen)
                .with_context(|| format!("cannot listen on {grpc_listen} (gateway.grpc_listen)"))?;
            Some(listener)
        };
        let node = NodeIdentity {
            node_id: config.cluster().node_id.clone(),
            gateway: match &listener {
                Some(listener) => listener.local_addr()?.to_string(),
                None => String::new(),
            },
            started_at: chrono::Utc::now(),
        };
        let registry = open_registry(config, transports, node).await?;
        seed_registry(&registry, systems).await?;
        let router = RouterHandle::start(Arc::new(config.clone()), registry.clone()).await?;
        // Connects, and reconnects whenever the broker goes away, in the background.
        let link = bridge.as_ref().map(|bridge| bridge.start(router.clone()));
        let _events = bridge
            .as_ref()
            .map(|bridge| bridge.publish_events(&registry));
        let mut gateway = Gateway::new(config, router.clone(), registry.clone(), authenticator);
        if let Some(bridge) = &bridge {
            gateway = gateway.with_bridge(Arc::clone(bridge));
        }
        if let Some(keyring) = &keyring {
            gateway = gateway.with_keyring(Arc::clone(keyring));
        }
        if let Some(metrics) = metrics.clone() {
            gateway = gateway.with_metrics(metrics);
        }
        let gateway = Arc::new(gateway);
        // Up before the broker answers, so /healthz and /readyz tell what is going on.
        let http = if let Some(listener) = listener {
            tracing::info!(address = %listener.local_addr()?, "gateway listening");
            let server = aimbus_gateway::run(listener, Arc::clone(&gateway))?;
            let handle = server.handle();
            actix_rt::spawn(server);
            Some(handle)
        } else {
            None
        };
        let grpc = match grpc_listener {
            Some(listener) => {
                tracing::info!(address = %listener.local_addr()?, "gRPC API listening");
                Some(GrpcServer::start(listener, Arc::clone(&gateway))?)
            }
            None => None,
        };
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
            node_id = %config.cluster().node_id,
            systems = summary.total_systems,
            dependencies = summary.total_dependencies,
            systems_file = %config.systems_file().display(),
            amqp = bridge.is_some(),
            "aimbus is serving"
        );
        // The registry actor logs every registration and status change itself.
        let signal = shutdown.recv().await;
        tracing::info!(signal, "shutting down");
        if let Some(grpc) = grpc {
            // Calls in flight are answered before the actors stop, as HTTP requests are.
            match tokio::time::timeout(config.amqp().shutdown_grace(), grpc.stop()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the gRPC API did not stop cleanly"),
                Err(_) => tracing::warn!("calls to the gRPC API did not end in time"),
            }
        }
        if let Some(http) = http {
            http.stop(true).await;
        }
        if let (Some(bridge), Some(link)) = (&bridge, link) {
            // The ingress drains: deliveries in progress finish and are acknowledged, the
            // rest go back to the broker, before the router they need stops.
            bridge.stop();
            let patience = config.amqp().shutdown_grace() * 2 + std::time::Duration::from_secs(2);
            if tokio::time::timeout(patience, link).await.is_err() {
                tracing::warn!("the bridge did not drain in time");
            }
        }
        if let Err(error) = registry.leave().await {
            tracing::warn!(%error, "the node did not leave the store's node list");
        }
        actix::System::current().stop();
        Ok(())
    })
}

/// The registry on the store `registry.database_url` names (SQLite in the data directory
/// by default), read back whole before anything is routed.
async fn open_registry(
    config: &Config,
    transports: TransportSet,
    node: NodeIdentity,
) -> anyhow::Result<RegistryHandle> {
    let url = config.registry_database_url();
    let pool = aimbus_store::PoolOptions {
        max_connections: config.registry().max_connections,
        acquire_timeout: std::time::Duration::from_secs(config.registry().store_timeout_seconds),
    };
    let store = aimbus_store::open(&url, pool).await.with_context(|| {
        format!(
            "cannot open the registry store (registry.database_url, registry.data_dir: {})",
            redact(&url)
        )
    })?;
    Ok(RegistryHandle::open(config, transports, store, node).await?)
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

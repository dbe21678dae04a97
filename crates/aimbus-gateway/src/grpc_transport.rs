//! Delivery to systems with a `grpc` interface: `aimbus.v1.System/Deliver` with the
//! message in the contract's form, the attempt's deadline as the call's, and W3C trace
//! context in the metadata; health checks are the standard `grpc.health.v1.Health/Check`,
//! so any service with the standard health service is monitored as it is. Connections
//! are pooled per endpoint, so the router's breakers, retries and timeouts see gRPC
//! systems as any other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimbus_actors::{DeliveryFailure, DeliveryFuture, Reply, Transport};
use aimbus_core::{HEALTH_CHECK, IntegrationMessage, SystemInfo, interface};
use aimbus_grpc::pb::system_client::SystemClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

use aimbus_grpc::trace::{client_span, record_status, request};

/// Calls one connection carries before the pool opens another: the least that HTTP/2
/// (RFC 9113, 6.5.2) recommends a server allow at once, so a call never waits for a
/// stream a server would refuse.
const CALLS_PER_CONNECTION: usize = 100;

pub struct GrpcTransport {
    settings: Settings,
    /// By endpoint (`host:port`).
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    pooling: bool,
    max_connections: usize,
    idle_timeout: Duration,
    max_message_bytes: usize,
    max_depth: usize,
}

impl GrpcTransport {
    /// At most `performance.max_connections_per_host` connections per endpoint, opened as
    /// calls need them and closed after `keepalive_timeout_seconds` unused (a connection
    /// per call when pooling is off); messages up to `limits.max_message_bytes` each way,
    /// replies nested no deeper than `limits.max_nesting_depth`.
    pub fn new(config: &aimbus_core::Config) -> GrpcTransport {
        let performance = config.performance();
        GrpcTransport {
            settings: Settings {
                pooling: performance.enable_connection_pooling,
                max_connections: performance.max_connections_per_host as usize,
                idle_timeout: Duration::from_secs(performance.keepalive_timeout_seconds),
                max_message_bytes: config.decode_limits().max_bytes,
                max_depth: config.decode_limits().max_depth,
            },
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `address` and the claim on it that this call holds.
    fn connection(&self, address: &str) -> Result<(Channel, Claim), DeliveryFailure> {
        if !self.settings.pooling {
            let endpoint = endpoint(address, self.settings)?;
            return Ok((endpoint.connect_lazy(), Claim::default()));
        }
        // Looked up by reference: the endpoint is parsed and its key copied once, on the
        // first call to it, not on every call.
        let known = self
            .pools
            .lock()
            .expect("gRPC pools lock")
            .get(address)
            .cloned();
        let pool = match known {
            Some(pool) => pool,
            None => {
                let pool = Arc::new(Pool {
                    endpoint: endpoint(address, self.settings)?,
                    connections: Mutex::new(Vec::new()),
                });
                let mut pools = self.pools.lock().expect("gRPC pools lock");
                Arc::clone(pools.entry(address.to_owned()).or_insert(pool))
            }
        };
        Ok(pool.claim(self.settings))
    }
}

fn endpoint(address: &str, settings: Settings) -> Result<Endpoint, DeliveryFailure> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
        DeliveryFailure::Unreachable(format!("`{address}` is no gRPC endpoint: {e}"))
    })?;
    Ok(endpoint
        .tcp_nodelay(true)
        // Pings while calls are open find a peer that vanished without closing.
        .http2_keep_alive_interval(settings.idle_timeout)
        .keep_alive_timeout(Duration::from_secs(20)))
}

/// One endpoint's connections.
struct Pool {
    endpoint: Endpoint,
    connections: Mutex<Vec<Pooled>>,
}

struct Pooled {
    channel: Channel,
    calls: Arc<AtomicUsize>,
    last_used: Instant,
}

impl Pool {
    /// The connection with the fewest calls, a new one when all carry their share and
    /// the pool has room; connections unused for the idle timeout are closed first.
    fn claim(&self, settings: Settings) -> (Channel, Claim) {
        let now = Instant::now();
        let mut connections = self.connections.lock().expect("gRPC pool lock");
        connections.retain(|c| {
            c.calls.load(Ordering::Relaxed) > 0 || now - c.last_used < settings.idle_timeout
        });
        let least =
            (0..connections.len()).min_by_key(|&i| connections[i].calls.load(Ordering::Relaxed));
        let index = match least {
            // The least busy, below its share; or, when every connection carries its
            // share and no more may open, one more call for it (HTTP/2 queues it if the
            // server's limit is reached).
            Some(i)
                if connections[i].calls.load(Ordering::Relaxed) < CALLS_PER_CONNECTION
                    || connections.len() >= settings.max_connections =>
            {
                i
            }
            _ => {
                connections.push(Pooled {
                    channel: self.endpoint.connect_lazy(),
                    calls: Arc::default(),
                    last_used: now,
                });
                connections.len() - 1
            }
        };
        let chosen = &mut connections[index];
        chosen.last_used = now;
        chosen.calls.fetch_add(1, Ordering::Relaxed);
        (
            chosen.channel.clone(),
            Claim(Some(Arc::clone(&chosen.calls))),
        )
    }
}

/// A call's share of a pooled connection, given back when the call ends.
#[derive(Default)]
struct Claim(Option<Arc<AtomicUsize>>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(calls) = &self.0 {
            calls.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Transport for GrpcTransport {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn reaches(&self, system: &SystemInfo) -> bool {
        system.interfaces.contains_key(interface::GRPC)
    }

    fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        deadline: Instant,
    ) -> DeliveryFuture {
        let Some(address) = system.interfaces.get(interface::GRPC) else {
            return Box::pin(async { Err(DeliveryFailure::Unreachable("no grpc".into())) });
        };
        let address = address.clone();
        let connection = self.connection(&address);
        let max_bytes = self.settings.max_message_bytes;
        let max_depth = self.settings.max_depth;
        Box::pin(async move {
            let (channel, _claim) = connection?;
            let health = message.message_type == HEALTH_CHECK;
            let span = client_span(
                if health {
                    HEALTH_SERVICE
                } else {
                    aimbus_grpc::SYSTEM_SERVICE
                },
                if health { "Check" } else { "Deliver" },
                &address,
            );
            let timeout = deadline.saturating_duration_since(Instant::now());
            let answer = if health {
                let check = HealthCheckRequest {
                    service: String::new(),
                };
                let request = span.in_scope(|| request(check, Some(timeout)));
                let mut client = HealthClient::new(channel);
                client
                    .check(request)
                    .instrument(span.clone())
                    .await
                    .map(|response| health_reply(response.into_inner().status()))
            } else {
                let request =
                    span.in_scope(|| request(aimbus_grpc::to_proto(&message), Some(timeout)));
                let mut client = SystemClient::new(channel)
                    .max_decoding_message_size(max_bytes)
                    .max_encoding_message_size(max_bytes);
                client
                    .deliver(request)
                    .instrument(span.clone())
                    .await
                    .map(|response| system_reply(response.into_inner(), max_depth))
            };
            let code = answer
                .as_ref()
                .err()
                .map_or(tonic::Code::Ok, tonic::Status::code);
            let result = answer.unwrap_or_else(|status| Err(failure(&address, &status)));
            // An answer the bus cannot use (a health service not serving, a reply JSON
            // cannot hold) fails the call as a failing status does.
            let error = match (&result, code) {
                (Ok(_), _) => None,
                (Err(_), tonic::Code::Ok) => Some("unusable_answer"),
                (Err(_), code) => Some(aimbus_grpc::code_name(code)),
            };
            record_status(&span, code, error);
            result
        })
    }
}

/// The standard health service, as spans name it.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

fn system_reply(
    reply: aimbus_grpc::pb::IntegrationMessage,
    max_depth: usize,
) -> Result<Reply, DeliveryFailure> {
    let payload = match reply.payload {
        None => serde_json::Map::new(),
        Some(payload) => aimbus_grpc::payload_of(payload, max_depth)
            .map_err(|e| DeliveryFailure::Failed(format!("the system's reply: {e}")))?,
    };
    Ok(Reply::new(payload))
}

fn health_reply(status: ServingStatus) -> Result<Reply, DeliveryFailure> {
    if status != ServingStatus::Serving {
        return Err(DeliveryFailure::Failed(format!(
            "the health service answered {}",
            status.as_str_name()
        )));
    }
    let mut payload = serde_json::Map::new();
    payload.insert("status".into(), status.as_str_name().into());
    Ok(Reply::new(payload))
}

/// What a status says about the attempt. A status the client made itself (it carries
/// the connection's error as its source: refused, reset, closed mid-call, whatever code
/// that became) means no answer came; of those a system sent, one that cannot take the
/// call now, ran out of time or of resources may take it later, and any other is a
/// refusal that a retry would only repeat.
fn failure(address: &str, status: &tonic::Status) -> DeliveryFailure {
    if let Some(cause) = std::error::Error::source(status) {
        return DeliveryFailure::Unreachable(format!("{address}: {}: {cause}", status.message()));
    }
    let detail = format!(
        "{address} answered {}: {}",
        aimbus_grpc::code_name(status.code()),
        status.message()
    );
    match status.code() {
        // Also what a connection refused or reset becomes.
        tonic::Code::Unavailable => DeliveryFailure::Unreachable(detail),
        tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted => {
            DeliveryFailure::Failed(detail)
        }
        _ => DeliveryFailure::Rejected(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::ResourceExhausted,
        ] {
            let failure = failure("h:1", &tonic::Status::new(code, "x"));
            assert!(failure.is_retryable(), "{code:?}");
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::PermissionDenied,
            tonic::Code::Unimplemented,
            tonic::Code::Internal,
            tonic::Code::Unknown,
        ] {
            let failure = failure("h:1", &tonic::Status::new(code, "x"));
            assert!(!failure.is_retryable(), "{code:?}");
        }
        // A connection closed mid-call is no refusal, whatever code the client gave it.
        let closed = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(matches!(
            failure("h:1", &closed),
            DeliveryFailure::Unreachable(_)
        ));
    }
}

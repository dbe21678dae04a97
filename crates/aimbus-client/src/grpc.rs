//! An AIM-OS system served over gRPC: `aimbus.v1.System/Deliver` hands each message to
//! the same handler a [`crate::SystemWorker`] takes over AMQP, and the standard
//! `grpc.health.v1` service answers the bus's health checks.

use std::sync::Arc;

use aimbus_amqp::envelope;
use aimbus_core::{DecodeLimits, IntegrationMessage};
use aimbus_grpc::pb;
use aimbus_grpc::trace::{server_trace, traced};
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use crate::{Error, HandlerError};

/// Serves one system's messages over gRPC.
pub struct GrpcSystem {
    system_id: String,
    limits: DecodeLimits,
}

impl GrpcSystem {
    /// Serves `system_id`, taking messages within `limits` (the bus's
    /// `limits.max_message_bytes` and `max_nesting_depth`).
    pub fn new(system_id: impl Into<String>, limits: DecodeLimits) -> GrpcSystem {
        GrpcSystem {
            system_id: system_id.into(),
            limits,
        }
    }

    /// Serves on `listener` until `shutdown` completes, then lets the calls in progress
    /// finish. A handler's [`HandlerError::Failed`] answers `UNAVAILABLE`, which the bus
    /// retries; [`HandlerError::Rejected`] answers `INVALID_ARGUMENT`, which it does not.
    pub async fn serve<F, Fut>(
        self,
        listener: tokio::net::TcpListener,
        handler: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error>
    where
        F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::system_server::SystemServer<Served<F>>>()
            .await;
        // The whole server, as the bus asks (`service` empty).
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let max_bytes = self.limits.max_bytes;
        let served = Served {
            system_id: Arc::from(self.system_id),
            max_depth: self.limits.max_depth,
            handler,
        };
        let system = pb::system_server::SystemServer::new(served)
            .max_decoding_message_size(max_bytes)
            .max_encoding_message_size(max_bytes);
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(system)
            .serve_with_incoming_shutdown(aimbus_grpc::incoming(listener), shutdown)
            .await
            .map_err(Error::GrpcServer)
    }
}

struct Served<F> {
    system_id: Arc<str>,
    max_depth: usize,
    handler: F,
}

#[tonic::async_trait]
impl<F, Fut> pb::system_server::System for Served<F>
where
    F: Fn(IntegrationMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
{
    async fn deliver(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Response<pb::IntegrationMessage>, Status> {
        let trace = server_trace(aimbus_grpc::SYSTEM_SERVICE, "Deliver", request.metadata());
        traced(trace, async {
            let message = aimbus_grpc::from_proto(request.into_inner(), self.max_depth)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            message
                .validate()
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let request_envelope = message.without_payload();
            let payload = if message.message_type == aimbus_core::HEALTH_CHECK {
                crate::worker::health_payload(&self.system_id)
            } else {
                (self.handler)(message).await.map_err(|error| match error {
                    HandlerError::Failed(reason) => Status::unavailable(reason),
                    HandlerError::Rejected(reason) => Status::invalid_argument(reason),
                })?
            };
            let reply = envelope::reply_to_request(&request_envelope, &self.system_id, payload);
            Ok(Response::new(aimbus_grpc::to_proto(&reply)))
        })
        .await
    }
}

//! The gRPC API (`aimbus.v1.Bus`, `gateway.grpc_listen`): `Send` and `Request` take a
//! message exactly as `POST /api/v1/messages` does (the same token in the `authorization`
//! metadata, roles, no impersonation, size and depth limits, errors), and `Watch` streams
//! the registry's changes. Every error is a status whose details (`google.rpc.ErrorInfo`,
//! `RetryInfo`) carry what the HTTP problem would: its type, title and retry delay.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use aimbus_core::{Format, RegistryEvent};
use aimbus_grpc::pb;
use aimbus_grpc::trace::{server_trace, traced};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::Gateway;
use crate::auth::{Caller, Role};
use crate::metrics::{GRPC_DURATION, GRPC_REQUESTS};
use crate::problem::Problem;
use crate::routes::messages::{Accepted, ENQUEUED, accept};

/// The gRPC API serving on threads of its own: a multi-threaded runtime with a worker per
/// core, as actix-web gives the HTTP API workers of their own, so calls spread over the
/// machine instead of queueing on the thread that runs the actors.
pub struct GrpcServer {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<Result<(), crate::Error>>,
}

impl GrpcServer {
    /// Serves `aimbus.v1.Bus` and the standard health service on `listener`.
    pub fn start(
        listener: std::net::TcpListener,
        gateway: Arc<Gateway>,
    ) -> Result<GrpcServer, crate::Error> {
        let address = listener
            .local_addr()
            .map_err(|source| crate::Error::Listen {
                address: "the gRPC listener".to_owned(),
                source,
            })?;
        let listen_error = move |source| crate::Error::Listen {
            address: address.to_string(),
            source,
        };
        listener.set_nonblocking(true).map_err(listen_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("aimbus-grpc")
            .enable_all()
            .build()
            .map_err(listen_error)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("aimbus-grpc".to_owned())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    serve_grpc(listener, gateway, shutdown).await
                });
                let _ = finished.send(served);
            })
            .map_err(listen_error)?;
        Ok(GrpcServer { stop, done })
    }

    /// Stops taking calls, answers those in flight, and says how serving ended.
    pub async fn stop(self) -> Result<(), crate::Error> {
        let _ = self.stop.send(());
        self.done.await.unwrap_or(Ok(()))
    }
}

/// Serves `aimbus.v1.Bus` and the standard health service on `listener` until `shutdown`
/// completes, then lets the calls in progress finish.
async fn serve_grpc(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), crate::Error> {
    let max_bytes = gateway.max_body_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::bus_server::BusServer<BusApi>>()
        .await;
    // A graceful stop waits for every call to end, and a watch would never end by
    // itself: told the server is stopping, each watch ends.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let bus = pb::bus_server::BusServer::new(BusApi { gateway, stopped })
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(bus)
        .serve_with_incoming_shutdown(aimbus_grpc::incoming(listener), shutdown)
        .await
        .map_err(crate::Error::GrpcServer)
}

pub struct BusApi {
    gateway: Arc<Gateway>,
    /// Turns true when the server begins to stop.
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl BusApi {
    /// The caller the call's `authorization` metadata names, its rate limit charged, if
    /// it holds `role`.
    fn caller(&self, metadata: &MetadataMap, role: Role) -> Result<Caller, Status> {
        let authorization = metadata.get("authorization").map(|v| v.as_bytes());
        let caller = self.gateway.caller_of(authorization).map_err(status)?;
        caller.require(role).map_err(status)?;
        Ok(caller)
    }

    /// The call's message, from a caller who may publish it.
    async fn accept(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Accepted<'_>, Status> {
        let caller = self.caller(request.metadata(), Role::Publisher)?;
        let max_depth = self.gateway.codec.limits().max_depth;
        let message = aimbus_grpc::from_proto(request.into_inner(), max_depth)
            .map_err(|e| status(Problem::bad_request(e.to_string())))?;
        accept(&self.gateway, &caller, message)
            .await
            .map_err(status)
    }

    /// Sets a watch up: the snapshot, then the changes, until the watcher goes, lags, or
    /// the server stops.
    async fn watching(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Events>, Status> {
        self.caller(request.metadata(), Role::Readonly)?;
        let wanted = request.into_inner().system_ids;
        let subscription = self
            .gateway
            .registry
            .subscribe()
            .await
            .map_err(|e| status(e.into()))?;
        let (events, stream) = tokio::sync::mpsc::channel(64);
        let farewell = events.clone();
        let mut stopped = self.stopped.clone();
        let watching = async move {
            let wanted = |id: &str| wanted.is_empty() || wanted.iter().any(|w| w == id);
            // What is registered now, then each change: a watcher needs no second call to
            // learn the state the changes apply to.
            let snapshot = subscription
                .snapshot
                .into_iter()
                .map(|system| RegistryEvent::SystemRegistered { system });
            for event in snapshot.filter(|e| wanted(e.system_id())) {
                if events.send(Ok(event_of(&event))).await.is_err() {
                    return;
                }
            }
            let mut changes = subscription.events;
            loop {
                let next = match changes.recv().await {
                    Ok(event) if !wanted(event.system_id()) => continue,
                    Ok(event) => Ok(event_of(&event)),
                    Err(RecvError::Closed) => return,
                    Err(RecvError::Lagged(missed)) => Err(Status::aborted(format!(
                        "the watch fell {missed} events behind; watch again for a fresh snapshot"
                    ))),
                };
                let lagged = next.is_err();
                if events.send(next).await.is_err() || lagged {
                    return;
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                () = watching => {}
                _ = stopped.wait_for(|stopped| *stopped) => {
                    let _ = farewell.try_send(Err(Status::unavailable(
                        "the bus is stopping; watch again on another node or once it is back",
                    )));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

/// The service's name, as spans give it.
const BUS: &str = "aimbus.v1.Bus";

type Events = Pin<Box<dyn Stream<Item = Result<pb::RegistryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::bus_server::Bus for BusApi {
    async fn send(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let trace = server_trace(BUS, "Send", request.metadata());
        counted(
            "Send",
            traced(trace, async {
                let accepted = self.accept(request).await?;
                // As MessagePack, the AMQP contract's default body.
                let message_id = accepted
                    .enqueue(&self.gateway, Format::MessagePack)
                    .await
                    .map_err(status)?;
                Ok(Response::new(pb::Receipt {
                    message_id,
                    status: ENQUEUED.to_owned(),
                }))
            }),
        )
        .await
    }

    async fn request(
        &self,
        request: Request<pb::IntegrationMessage>,
    ) -> Result<Response<pb::IntegrationMessage>, Status> {
        let trace = server_trace(BUS, "Request", request.metadata());
        counted(
            "Request",
            traced(trace, async {
                let accepted = self.accept(request).await?;
                let (reply, served_by) = accepted.route(&self.gateway).await.map_err(status)?;
                let mut response = Response::new(aimbus_grpc::to_proto(&reply));
                if let Ok(served_by) = served_by.parse() {
                    response.metadata_mut().insert("x-served-by", served_by);
                }
                Ok(response)
            }),
        )
        .await
    }

    type WatchStream = Events;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        counted("Watch", self.watching(request)).await
    }
}

/// Runs a call, counting it by method and status code and timing it. The labels are
/// static strings: nothing is allocated per call for them.
async fn counted<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = std::time::Instant::now();
    let result = call.await;
    let code = result.as_ref().err().map_or(Code::Ok, Status::code);
    let code = aimbus_grpc::code_name(code);
    metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code).increment(1);
    metrics::histogram!(GRPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
    result
}

fn event_of(event: &RegistryEvent) -> pb::RegistryEvent {
    let json = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    pb::RegistryEvent {
        kind: event.kind().to_owned(),
        system_id: event.system_id().to_owned(),
        event: Some(aimbus_grpc::struct_of(&json)),
    }
}

/// A problem as the status a gRPC caller gets: the code nearest its HTTP status, its
/// detail as the message, and its type, title and retry delay as standard details.
pub(crate) fn status(problem: Problem) -> Status {
    let code = match problem.status.as_u16() {
        400 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        413 | 429 => Code::ResourceExhausted,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        500 => Code::Internal,
        _ => Code::Unknown,
    };
    let metadata = HashMap::from([
        ("type".to_owned(), problem.type_uri()),
        ("title".to_owned(), problem.title.to_owned()),
        (
            "http_status".to_owned(),
            problem.status.as_u16().to_string(),
        ),
    ]);
    let mut details = ErrorDetails::with_error_info(
        problem.kind.replace('-', "_").to_uppercase(),
        "aimbus",
        metadata,
    );
    if problem.retry_after.is_some() {
        details.set_retry_info(problem.retry_after);
    }
    Status::with_error_details(code, problem.detail, details)
}

//! A real OTLP trace receiver, over gRPC and over HTTP/protobuf (`POST /v1/traces`) on
//! one port, that keeps what it is sent in memory: tests assert on the spans a bus
//! really exported, and benches give the exporter somewhere to send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// One span as received, with ids in lowercase hex as `traceparent` writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that exported it.
    pub service_name: String,
    /// Every attribute of that resource, as text (`service.instance.id`, `host.name`, …).
    pub resource: BTreeMap<String, String>,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub trace_state: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer` or `consumer`.
    pub kind: &'static str,
    /// Every attribute's value, as text.
    pub attributes: BTreeMap<String, String>,
    /// The attributes exported as integers (in `attributes` too, as text): the
    /// conventions type some, and a collector sorts and filters by the type.
    pub integers: BTreeMap<String, i64>,
    /// Whether the span's status is error.
    pub failed: bool,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn int_attribute(&self, key: &str) -> Option<i64> {
        self.integers.get(key).copied()
    }
}

/// Export requests as they came: turned into [`ReceivedSpan`]s only when read, so a
/// bench's receiver costs the machine little more than a collector's decoding.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// Listens on `127.0.0.1:<free port>` until dropped.
pub struct Receiver {
    address: SocketAddr,
    spans: Received,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Binds and serves on a thread of its own, independent of the caller's runtime.
    pub fn start() -> std::io::Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let spans = Received::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let grpc = TraceServiceServer::new(Collector(Arc::clone(&spans)));
        let http = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export_over_http))
            .with_state(Collector(Arc::clone(&spans)));
        let routes = tonic::service::Routes::new(grpc)
            .into_axum_router()
            .merge(http);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a listener from a bound std socket");
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let served = tonic::transport::Server::builder()
                        .accept_http1(true)
                        .add_routes(routes.into())
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "the otlp receiver stopped");
                    }
                });
            })?;
        Ok(Receiver {
            address,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL an OTLP exporter sends to, over gRPC or (at `/v1/traces`) HTTP.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let requests = self.spans.lock().expect("receiver lock");
        requests.iter().flat_map(received_spans).collect()
    }

    pub fn span_count(&self) -> usize {
        let requests = self.spans.lock().expect("receiver lock");
        requests
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum()
    }

    /// Waits until `done` holds for the spans received, or `timeout` passes; returns
    /// the spans either way, so the caller's assertion shows what did arrive.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone)]
struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// OTLP/HTTP with a protobuf body; the answer is an empty protobuf response.
async fn export_over_http(
    axum::extract::State(collector): axum::extract::State<Collector>,
    body: axum::body::Bytes,
) -> Result<([(&'static str, &'static str); 1], Vec<u8>), axum::http::StatusCode> {
    use prost::Message;
    let request =
        ExportTraceServiceRequest::decode(body).map_err(|_| axum::http::StatusCode::BAD_REQUEST)?;
    collector.keep(request);
    let response = ExportTraceServiceResponse {
        partial_success: None,
    };
    Ok((
        [("content-type", "application/x-protobuf")],
        response.encode_to_vec(),
    ))
}

impl Collector {
    fn keep(&self, request: ExportTraceServiceRequest) {
        self.0.lock().expect("receiver lock").push(request);
    }
}

fn received_spans(request: &ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource: BTreeMap<String, String> = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .map(|attribute| (attribute.key.clone(), text(attribute.value.as_ref())))
            .collect();
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| &scope.spans)
        {
            received.push(ReceivedSpan {
                service_name: service_name.clone(),
                resource: resource.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                trace_state: span.trace_state.clone(),
                name: span.name.clone(),
                kind: kind(span.kind),
                attributes: span.attributes.iter().map(attribute).collect(),
                integers: span.attributes.iter().filter_map(integer).collect(),
                failed: span.status.as_ref().is_some_and(|status| status.code == 2),
            });
        }
    }
    received
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(kind: i32) -> &'static str {
    match kind {
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "internal",
    }
}

fn attribute(attribute: &KeyValue) -> (String, String) {
    (attribute.key.clone(), text(attribute.value.as_ref()))
}

fn integer(attribute: &KeyValue) -> Option<(String, i64)> {
    match attribute.value.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => Some((attribute.key.clone(), *i)),
        _ => None,
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

//! A real gateway on 127.0.0.1:0 over a real registry and router, with in-process
//! systems, and a real HTTP client.
// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod tokens;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use aimbus_actors::{
    DeliveryFailure, InProcessTransport, RegistryHandle, Reply, RouterHandle, TransportSet,
};
use aimbus_core::{Config, IntegrationMessage, Keyring, SystemInfo};
use aimbus_gateway::{Authenticator, Gateway, Role, TokenRequest};
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

pub struct TestGateway {
    pub base: String,
    pub http: reqwest::Client,
    pub auth: Authenticator,
    pub systems: Arc<InProcessTransport>,
    /// The gRPC API on the same gateway: `http://127.0.0.1:<port>`.
    pub grpc: String,
    server: actix_web::dev::ServerHandle,
    grpc_server: aimbus_gateway::GrpcServer,
}

pub fn system(id: &str, system_type: &str) -> SystemInfo {
    serde_json::from_value(json!({
        "system_id": id, "system_type": system_type, "name": id, "version": "1.0.0",
        "capabilities": ["search"],
        "interfaces": {"rest_api": "http://localhost:1"},
    }))
    .unwrap()
}

pub async fn echo(message: Arc<IntegrationMessage>) -> Result<Reply, DeliveryFailure> {
    let mut payload = message.payload.clone();
    payload.insert("served_type".into(), json!(message.message_type));
    Ok(Reply::new(payload))
}

/// A gateway with the shipped defaults, `extra` TOML on top, over cmc_001 and hhni_001.
pub async fn start(extra: &str) -> TestGateway {
    start_with_keys(extra, std::path::Path::new(".")).await
}

pub async fn start_with_keys(extra: &str, base_dir: &std::path::Path) -> TestGateway {
    start_with(extra, base_dir, None).await
}

/// A gateway as `start` makes it, opening sealed payloads with `keyring`.
pub async fn start_sealed(keyring: Arc<Keyring>) -> TestGateway {
    start_with("", std::path::Path::new("."), Some(keyring)).await
}

pub async fn start_with(
    extra: &str,
    base_dir: &std::path::Path,
    keyring: Option<Arc<Keyring>>,
) -> TestGateway {
    let toml = format!(
        "[monitoring]\nhealth_check_interval_seconds = 3600\n[amqp]\nenabled = false\n{extra}"
    );
    let config = Config::from_toml_str("test", &toml, Vec::new(), base_dir.into()).unwrap();
    // Before the router: the handles it makes per system bind to the recorder there is.
    let metrics = aimbus_gateway::install_recorder("").unwrap();
    let systems = Arc::new(InProcessTransport::new());
    let registry = RegistryHandle::in_memory(&config, TransportSet::new(Arc::clone(&systems)))
        .await
        .unwrap();
    for info in [system("cmc_001", "cmc"), system("hhni_001", "hhni")] {
        systems.register(&info.system_id, echo);
        registry.register(info).await.unwrap();
    }
    let router = RouterHandle::start(Arc::new(config.clone()), registry.clone())
        .await
        .unwrap();
    let auth = Authenticator::new(
        config.security(),
        Some(SECRET.as_bytes().to_vec()),
        base_dir,
    )
    .unwrap();
    let minting = auth.clone();
    let mut gateway = Gateway::new(&config, router, registry.clone(), auth).with_metrics(metrics);
    if let Some(keyring) = keyring {
        gateway = gateway.with_keyring(keyring);
    }
    let gateway = Arc::new(gateway);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = aimbus_gateway::run(listener, Arc::clone(&gateway)).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    let grpc_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = format!("http://{}", grpc_listener.local_addr().unwrap());
    let grpc_server = aimbus_gateway::GrpcServer::start(grpc_listener, gateway).unwrap();
    TestGateway {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        auth: minting,
        systems,
        grpc,
        server: handle,
        grpc_server,
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.auth
            .mint(&TokenRequest {
                subject: subject.into(),
                roles: roles.to_vec(),
                ttl: Duration::from_secs(600),
            })
            .unwrap()
    }

    /// A JSON message from `source` to `target`, posted with a publisher token for `subject`.
    pub async fn post_message(&self, subject: &str, message: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/messages"))
            .bearer_auth(self.token(subject, &[Role::Publisher]))
            .json(message)
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.grpc_server.stop().await.unwrap();
        self.server.stop(false).await;
    }

    /// A client of the gateway's gRPC API.
    pub async fn bus(&self) -> aimbus_grpc::pb::bus_client::BusClient<tonic::transport::Channel> {
        aimbus_grpc::pb::bus_client::BusClient::connect(self.grpc.clone())
            .await
            .unwrap()
    }
}

pub fn message(source: &str, target: &str, message_type: &str) -> Value {
    json!({
        "message_id": uuid_like(),
        "source_system": source,
        "target_system": target,
        "message_type": message_type,
        "payload": {"q": "x"},
    })
}

fn uuid_like() -> String {
    format!("m-{:032x}", rand::random::<u128>())
}

/// Asserts a problem+json answer with `status` and `kind`, and returns its detail.
pub async fn assert_problem(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "{:?}", response);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], format!("urn:aimbus:problem:{kind}"), "{body}");
    assert_eq!(body["status"], status);
    body["detail"].as_str().unwrap().to_owned()
}

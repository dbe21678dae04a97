//! How a message reaches a system. The router never knows which transport carries it:
//! the system's actor asks the [`TransportSet`] for one by the system's interfaces, so the
//! AMQP and REST transports slot in beside the in-process one without touching routing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use aimbus_core::{IntegrationMessage, SystemInfo};
use tokio::time::Instant;

/// What a system answered: the reply's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl Reply {
    pub fn new(payload: serde_json::Map<String, serde_json::Value>) -> Reply {
        Reply { payload }
    }

    /// The encoded size, which the response cache counts against its byte budget:
    /// counted as it is serialized, with no copy made.
    pub fn weight(&self) -> usize {
        aimbus_core::json_len(&self.payload)
    }
}

/// Why a delivery failed, which decides whether it is worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// The system could not be reached at all (no connection, no handler).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The system took the message and failed on it; another attempt may succeed.
    #[error("failed: {0}")]
    Failed(String),
    /// The system refused the message as invalid; another attempt would be refused too.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The bus's own link to the system went away before the answer came (a broker
    /// connection lost mid-request): no mark against the system, and worth another try.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl DeliveryFailure {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DeliveryFailure::Rejected(_))
    }

    /// Whether the failure was the bus's, not the system's. A lost link fails every
    /// request in flight on it at once, exactly when a retry budget would refuse most of
    /// them, and retrying them adds nothing to a failing system's load: such retries are
    /// not drawn from the budget (the policy's attempts still bound them).
    pub fn is_interruption(&self) -> bool {
        matches!(self, DeliveryFailure::Interrupted(_))
    }
}

pub type DeliveryFuture = Pin<Box<dyn Future<Output = Result<Reply, DeliveryFailure>> + Send>>;

/// Whether the sender waits for the system's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Deliver and bring back the system's reply.
    Request,
    /// Hand the message to the system's transport durably and return; the system answers
    /// nobody. Over AMQP this is one confirmed publish to the system's queue.
    Forward,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Request => "request",
            DeliveryMode::Forward => "forward",
        }
    }
}

/// Carries one message to one system and brings back its reply.
pub trait Transport: Send + Sync + 'static {
    /// For logs and metrics: `in_process`, `amqp`, `rest_api`.
    fn name(&self) -> &'static str;

    /// Whether this transport can reach `system` at all.
    fn reaches(&self, system: &SystemInfo) -> bool;

    /// `message` is shared with the router, which keeps it while a retry may follow.
    /// `deadline` ends the attempt: the router drops the delivery then, and a transport
    /// whose protocol carries a deadline (gRPC's) tells the system, so it stops too.
    fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        deadline: Instant,
    ) -> DeliveryFuture;

    /// Hands a message over without waiting for an answer; by default a delivery whose
    /// reply is dropped.
    fn forward(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        deadline: Instant,
    ) -> DeliveryFuture {
        self.deliver(system, message, deadline)
    }
}

type Handler = Arc<dyn Fn(Arc<IntegrationMessage>) -> DeliveryFuture + Send + Sync>;

/// Systems that run inside this process: a handler function per system id.
#[derive(Default)]
pub struct InProcessTransport {
    handlers: RwLock<crate::FastMap<Handler>>,
}

impl InProcessTransport {
    pub fn new() -> InProcessTransport {
        InProcessTransport::default()
    }

    /// Serves `system_id` with `handler` from now on, replacing any earlier one. The
    /// handler shares the message with the router (which keeps it while a retry may
    /// follow), so reading it costs no copy; `Arc::unwrap_or_clone` takes ownership.
    pub fn register<F, Fut>(&self, system_id: &str, handler: F)
    where
        F: Fn(Arc<IntegrationMessage>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply, DeliveryFailure>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |message| Box::pin(handler(message)));
        self.handlers
            .write()
            .expect("handler table lock")
            .insert(system_id.to_owned(), handler);
    }

    pub fn unregister(&self, system_id: &str) {
        self.handlers
            .write()
            .expect("handler table lock")
            .remove(system_id);
    }

    fn handler(&self, system_id: &str) -> Option<Handler> {
        self.handlers
            .read()
            .expect("handler table lock")
            .get(system_id)
            .cloned()
    }
}

impl Transport for InProcessTransport {
    fn name(&self) -> &'static str {
        "in_process"
    }

    fn reaches(&self, system: &SystemInfo) -> bool {
        self.handler(&system.system_id).is_some()
    }

    fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        _: Instant,
    ) -> DeliveryFuture {
        match self.handler(&system.system_id) {
            Some(handler) => handler(message),
            None => {
                let reason = format!("no in-process handler for `{}`", system.system_id);
                Box::pin(async move { Err(DeliveryFailure::Unreachable(reason)) })
            }
        }
    }
}

/// The transports a bus instance has, and the order in which a system's interfaces are
/// preferred. An in-process handler, where one is registered, wins over any interface.
#[derive(Clone, Default)]
pub struct TransportSet {
    in_process: Arc<InProcessTransport>,
    /// Interface kind → transport, tried in this order.
    by_interface: Vec<(String, Arc<dyn Transport>)>,
}

impl TransportSet {
    pub fn new(in_process: Arc<InProcessTransport>) -> TransportSet {
        TransportSet {
            in_process,
            by_interface: Vec::new(),
        }
    }

    /// Adds a transport for an interface kind, after those added before it.
    pub fn with_interface(mut self, kind: &str, transport: Arc<dyn Transport>) -> TransportSet {
        self.by_interface.push((kind.to_owned(), transport));
        self
    }

    /// Delivers through the transport that carries `system`'s traffic: its in-process
    /// handler if it has one, else the first preferred interface a transport reaches.
    pub fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        mode: DeliveryMode,
        deadline: Instant,
    ) -> DeliveryFuture {
        if let Some(handler) = self.in_process.handler(&system.system_id) {
            return handler(message);
        }
        let transport = self.by_interface.iter().find(|(kind, transport)| {
            system.interfaces.contains_key(kind) && transport.reaches(system)
        });
        match (transport, mode) {
            (Some((_, transport)), DeliveryMode::Request) => {
                transport.deliver(system, message, deadline)
            }
            (Some((_, transport)), DeliveryMode::Forward) => {
                transport.forward(system, message, deadline)
            }
            (None, _) => {
                let kinds: Vec<&str> = system.interfaces.keys().map(String::as_str).collect();
                let reason = format!(
                    "no transport reaches `{}` (interfaces: {})",
                    system.system_id,
                    kinds.join(", ")
                );
                Box::pin(async move { Err(DeliveryFailure::Unreachable(reason)) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A transport for one interface kind that answers with its own name.
    struct Named(&'static str);

    impl Transport for Named {
        fn name(&self) -> &'static str {
            self.0
        }

        fn reaches(&self, _: &SystemInfo) -> bool {
            true
        }

        fn deliver(
            &self,
            _: &SystemInfo,
            _: Arc<IntegrationMessage>,
            _: Instant,
        ) -> DeliveryFuture {
            let mut payload = serde_json::Map::new();
            payload.insert("via".into(), json!(self.0));
            Box::pin(async move { Ok(Reply::new(payload)) })
        }
    }

    fn system(interfaces: serde_json::Value) -> SystemInfo {
        serde_json::from_value(json!({
            "system_id": "hhni_001", "system_type": "hhni", "name": "HHNI", "version": "1",
            "interfaces": interfaces,
        }))
        .unwrap()
    }

    async fn via(set: &TransportSet, system: &SystemInfo) -> Result<String, DeliveryFailure> {
        let mut payload = serde_json::Map::new();
        payload.insert("q".into(), json!(1));
        let message = Arc::new(IntegrationMessage::new(
            "cmc_001",
            "hhni_001",
            "data_request",
            payload,
        ));
        let reply = set
            .deliver(system, message, DeliveryMode::Request, Instant::now())
            .await?;
        let via = reply.payload.get("via").and_then(serde_json::Value::as_str);
        Ok(via.unwrap_or("in_process").to_owned())
    }

    #[actix_rt::test]
    async fn interfaces_are_tried_in_preference_order_and_in_process_handlers_win() {
        let in_process = Arc::new(InProcessTransport::new());
        let set = TransportSet::new(Arc::clone(&in_process))
            .with_interface("amqp", Arc::new(Named("amqp")))
            .with_interface("rest_api", Arc::new(Named("rest_api")));
        let both =
            system(json!({"rest_api": "http://localhost:8003", "amqp": "aimbus.system.hhni_001"}));
        let rest_only = system(json!({"rest_api": "http://localhost:8003"}));
        let grpc_only = system(json!({"grpc": "localhost:8004"}));
        assert_eq!(via(&set, &both).await.unwrap(), "amqp");
        assert_eq!(via(&set, &rest_only).await.unwrap(), "rest_api");
        let err = via(&set, &grpc_only).await.unwrap_err();
        assert!(
            matches!(&err, DeliveryFailure::Unreachable(reason) if reason.contains("interfaces: grpc")),
            "{err:?}"
        );

        in_process.register("hhni_001", |_m: Arc<IntegrationMessage>| async {
            Ok(Reply::new(serde_json::Map::new()))
        });
        assert_eq!(via(&set, &grpc_only).await.unwrap(), "in_process");
        assert_eq!(via(&set, &both).await.unwrap(), "in_process");
    }
}

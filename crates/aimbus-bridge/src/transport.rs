use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aimbus_actors::{DeliveryFailure, DeliveryFuture, Reply, Transport};
use aimbus_core::{Codec, Format, IntegrationMessage, Keyring, SystemInfo, interface};
use tokio::time::Instant;

use aimbus_amqp::envelope::{self, Routing};
use aimbus_amqp::{Error, Names, Publisher, ReplyInbox, ReplyMessage};

/// Routing keys kept at most (one per system delivered to).
const MAX_CACHED_KEYS: usize = 10_000;

/// Delivers to systems with an `amqp` interface: publishes to the deliver exchange with
/// the system's routing key and waits for its reply on the bus's reply queue, so the
/// router's timeouts, retries, breakers and health checks apply as to any system.
/// While the bridge has no connection, deliveries fail as unreachable (retryable).
pub struct AmqpTransport {
    live: RwLock<Option<Live>>,
    /// The deliver exchange's name, made once rather than per publish.
    exchange: Arc<str>,
    /// Each system's routing key by system id, made on its first delivery.
    routing_keys: RwLock<HashMap<String, Arc<str>>>,
    codec: Codec,
    priorities: bool,
    /// Whether requests (whose caller waits and retries) are written to disk.
    persistent_requests: bool,
    /// Seals payloads to systems and opens their sealed replies, when encryption is on.
    keyring: Option<Arc<Keyring>>,
}

/// What a connection gives the transport; replaced at every reconnect.
#[derive(Clone)]
struct Live {
    publisher: Publisher,
    inbox: Arc<ReplyInbox>,
}

impl AmqpTransport {
    /// A transport with no connection yet.
    pub fn new(
        names: Names,
        codec: Codec,
        priorities: bool,
        persistent_requests: bool,
        keyring: Option<Arc<Keyring>>,
    ) -> AmqpTransport {
        AmqpTransport {
            live: RwLock::new(None),
            exchange: names.deliver().into(),
            routing_keys: RwLock::default(),
            codec,
            priorities,
            persistent_requests,
            keyring,
        }
    }

    /// Starts delivering over a (new) connection.
    pub fn attach(&self, publisher: Publisher, inbox: Arc<ReplyInbox>) {
        *self.live.write().expect("transport lock") = Some(Live { publisher, inbox });
    }

    /// Stops delivering: the connection is gone.
    pub fn detach(&self) {
        *self.live.write().expect("transport lock") = None;
    }
}

impl Transport for AmqpTransport {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn reaches(&self, system: &SystemInfo) -> bool {
        system.interfaces.contains_key(interface::AMQP)
    }

    fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        _: Instant,
    ) -> DeliveryFuture {
        let Some(Live { publisher, inbox }) = self.live() else {
            return disconnected();
        };
        let pending = inbox.expect(&message.message_id);
        let routing = Routing {
            reply_to: Some(inbox.queue()),
            correlation_id: Some(pending.correlation_id()),
            priorities: self.priorities,
            headers: Vec::new(),
            transient: !self.persistent_requests,
        };
        let sent = self.send(publisher, system, &message, &routing);
        let keyring = self.keyring.clone();
        Box::pin(async move {
            sent.await?;
            let reply = pending.wait().await.ok_or_else(|| {
                DeliveryFailure::Interrupted(
                    "the connection to the broker was lost before the reply came".into(),
                )
            })?;
            let error = |reply: &ReplyMessage| {
                reply
                    .message
                    .payload
                    .get("error")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no reason given")
                    .to_owned()
            };
            let mut reply = reply;
            if let Some(keyring) = &keyring {
                keyring
                    .open(&mut reply.message)
                    .map_err(|e| DeliveryFailure::Rejected(format!("unauthorised reply: {e}")))?;
            }
            match reply.outcome.as_str() {
                "rejected" => Err(DeliveryFailure::Rejected(error(&reply))),
                "failed" => Err(DeliveryFailure::Failed(error(&reply))),
                _ => Ok(Reply::new(reply.message.payload)),
            }
        })
    }

    /// One confirmed publish to the system's queue, with no `reply_to`: the system
    /// acknowledges it once handled, and nobody waits for an answer.
    fn forward(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        _: Instant,
    ) -> DeliveryFuture {
        let Some(Live { publisher, .. }) = self.live() else {
            return disconnected();
        };
        let routing = Routing {
            priorities: self.priorities,
            ..Routing::default()
        };
        // Forwarded messages answer nobody, whatever reply_to the body carries (copied
        // only in that rare case).
        let sent = if message.reply_to.is_some() {
            let mut forwarded = (*message).clone();
            forwarded.reply_to = None;
            self.send(publisher, system, &forwarded, &routing)
        } else {
            self.send(publisher, system, &message, &routing)
        };
        Box::pin(async move {
            sent.await?;
            Ok(Reply::new(serde_json::Map::new()))
        })
    }
}

impl AmqpTransport {
    /// The message as it travels: sealed on a copy when encryption is on (the router
    /// keeps the plain message for retries), the plain payload never copied.
    fn encode(
        &self,
        message: &IntegrationMessage,
        routing: &Routing<'_>,
    ) -> Result<(Vec<u8>, lapin::BasicProperties), Error> {
        match &self.keyring {
            Some(keyring) => {
                let sealed = keyring.sealed_copy(message)?;
                envelope::encode(&self.codec, Format::MessagePack, &sealed, routing)
            }
            None => envelope::encode(&self.codec, Format::MessagePack, message, routing),
        }
    }

    /// `<type>.<id>`, formatted once per system: a re-registration under another type
    /// is seen, and its key made again.
    fn routing_key(&self, system: &SystemInfo) -> Arc<str> {
        let (id, kind) = (system.system_id.as_str(), system.system_type.as_str());
        let current = |key: &str| key.len() == kind.len() + 1 + id.len() && key.starts_with(kind);
        if let Some(key) = self.routing_keys.read().expect("keys lock").get(id) {
            if current(key) {
                return Arc::clone(key);
            }
        }
        let key: Arc<str> = Names::system_routing_key(system).into();
        let mut keys = self.routing_keys.write().expect("keys lock");
        // Systems come and go: past this many ids, start over rather than keep the gone.
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(id.to_owned(), Arc::clone(&key));
        key
    }

    fn live(&self) -> Option<Live> {
        self.live.read().expect("transport lock").clone()
    }

    /// Encodes and publishes to the deliver exchange with the system's routing key; an
    /// unroutable message means no queue is there for the system.
    fn send(
        &self,
        publisher: Publisher,
        system: &SystemInfo,
        message: &IntegrationMessage,
        routing: &Routing<'_>,
    ) -> impl Future<Output = Result<(), DeliveryFailure>> + Send + 'static {
        let encoded = self.encode(message, routing);
        let exchange = Arc::clone(&self.exchange);
        let routing_key = self.routing_key(system);
        async move {
            let (body, properties) =
                encoded.map_err(|e| DeliveryFailure::Rejected(e.to_string()))?;
            publisher
                .publish(&exchange, &routing_key, &body, properties)
                .await
                .map_err(|error| match error {
                    Error::Unroutable { .. } => DeliveryFailure::Unreachable(error.to_string()),
                    other => DeliveryFailure::Failed(other.to_string()),
                })
        }
    }
}

/// The bus's own link is down, not the system: an interruption (retried outside the
/// budget, no mark against the system's breaker; its health check says disconnected).
fn disconnected() -> DeliveryFuture {
    Box::pin(async {
        Err(DeliveryFailure::Interrupted(
            "not connected to the broker".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimbus_core::{Config, SystemType};

    fn system(id: &str, kind: SystemType) -> SystemInfo {
        serde_json::from_value(serde_json::json!({
            "system_id": id, "system_type": kind.as_str(), "name": id, "version": "1",
            "interfaces": {"amqp": "{namespace}.system.x"},
        }))
        .unwrap()
    }

    #[test]
    fn routing_keys_are_made_once_per_system_and_again_when_its_type_changes() {
        let config = Config::from_toml_str("test", "", std::iter::empty(), ".".into()).unwrap();
        let transport = AmqpTransport::new(Names::new("ns"), config.codec(), true, false, None);
        assert_eq!(&*transport.exchange, "ns.deliver");
        let first = transport.routing_key(&system("hhni_001", SystemType::Hhni));
        let again = transport.routing_key(&system("hhni_001", SystemType::Hhni));
        assert_eq!(&*first, "hhni.hhni_001");
        assert!(Arc::ptr_eq(&first, &again), "formatted again");
        let retyped = transport.routing_key(&system("hhni_001", SystemType::Cmc));
        assert_eq!(&*retyped, "cmc.hhni_001");
    }
}

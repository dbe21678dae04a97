use std::sync::Arc;

use aimbus_actors::{DeliveryFailure, DeliveryFuture, Reply, Transport};
use aimbus_core::{Codec, Format, IntegrationMessage, SystemInfo, interface};

use crate::Error;
use crate::envelope::{self, Routing};
use crate::names::Names;
use crate::publisher::Publisher;
use crate::replies::ReplyInbox;

/// Delivers to systems with an `amqp` interface: publishes to the deliver exchange with
/// the system's routing key and waits for its reply on the bus's reply queue, so the
/// router's timeouts, retries, breakers and health checks apply as to any system.
pub struct AmqpTransport {
    publisher: Publisher,
    inbox: Arc<ReplyInbox>,
    names: Names,
    codec: Codec,
    priorities: bool,
}

impl AmqpTransport {
    pub fn new(
        publisher: Publisher,
        inbox: Arc<ReplyInbox>,
        names: Names,
        codec: Codec,
        priorities: bool,
    ) -> AmqpTransport {
        AmqpTransport {
            publisher,
            inbox,
            names,
            codec,
            priorities,
        }
    }
}

impl Transport for AmqpTransport {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn reaches(&self, system: &SystemInfo) -> bool {
        system.interfaces.contains_key(interface::AMQP)
    }

    fn deliver(&self, system: &SystemInfo, message: Arc<IntegrationMessage>) -> DeliveryFuture {
        let pending = self.inbox.expect(&message.message_id);
        let routing = Routing {
            reply_to: Some(self.inbox.queue()),
            correlation_id: Some(pending.correlation_id()),
            priorities: self.priorities,
            headers: Vec::new(),
        };
        let encoded = envelope::encode(&self.codec, Format::MessagePack, &message, &routing);
        let publisher = self.publisher.clone();
        let exchange = self.names.deliver();
        let routing_key = Names::system_routing_key(system);
        Box::pin(async move {
            let (body, properties) =
                encoded.map_err(|e| DeliveryFailure::Rejected(e.to_string()))?;
            match publisher
                .publish(&exchange, &routing_key, &body, properties)
                .await
            {
                Ok(()) => {}
                Err(error @ Error::Unroutable { .. }) => {
                    return Err(DeliveryFailure::Unreachable(error.to_string()));
                }
                Err(error) => return Err(DeliveryFailure::Failed(error.to_string())),
            }
            let reply = pending
                .wait()
                .await
                .ok_or_else(|| DeliveryFailure::Unreachable("the reply queue closed".into()))?;
            let error = || {
                reply
                    .message
                    .payload
                    .get("error")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no reason given")
                    .to_owned()
            };
            match reply.outcome.as_str() {
                "rejected" => Err(DeliveryFailure::Rejected(error())),
                "failed" => Err(DeliveryFailure::Failed(error())),
                _ => Ok(Reply::new(reply.message.payload)),
            }
        })
    }
}

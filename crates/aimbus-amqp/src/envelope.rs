//! An `IntegrationMessage` as an AMQP message: the body is the message itself (MessagePack
//! map with named fields, or JSON), and the properties mirror its envelope, so a client in
//! any language can route, reply and expire without decoding the body.

use aimbus_core::{Codec, Format, IntegrationMessage};
use chrono::Utc;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::Error;

/// Why a message was dead-lettered.
pub const ERROR_HEADER: &str = "x-aimbus-error";
/// On a system's reply: `ok`, `failed` (another attempt may succeed) or `rejected`.
pub const OUTCOME_HEADER: &str = "x-aimbus-outcome";
/// An ingress message's signature: `v1=<hex HMAC-SHA256>` (see `aimbus_core::SigningKeys`).
pub const SIGNATURE_HEADER: &str = "x-aimbus-signature";
/// Which attempt this delivery is, from 1.
pub const ATTEMPT_HEADER: &str = "x-aimbus-attempt";
/// On an ingress message: how many of its deliveries failed transiently so far. It
/// travels with the message (a classic queue counts nothing itself), so the count
/// survives a restart of the bus.
pub const FAILED_DELIVERIES_HEADER: &str = "x-aimbus-failed-deliveries";
/// On a parked message: the instant (milliseconds since the Unix epoch) it may be
/// handled again; see [`crate::parking`].
pub const NOT_BEFORE_HEADER: &str = "x-aimbus-not-before";

/// AMQP's `delivery_mode` for messages that survive a broker restart.
const PERSISTENT: u8 = 2;
const TRANSIENT: u8 = 1;

/// What a message's AMQP properties carry besides its envelope.
#[derive(Debug, Default, Clone)]
pub struct Routing<'a> {
    /// Overrides the message's `reply_to`.
    pub reply_to: Option<&'a str>,
    /// Overrides the message's `correlation_id`.
    pub correlation_id: Option<&'a str>,
    /// Whether the destination queue honours priorities.
    pub priorities: bool,
    /// Extra headers, such as the outcome of a reply.
    pub headers: Vec<(&'static str, String)>,
    /// Sent without being written to disk: a request whose caller waits (and retries),
    /// or the reply to one (see `amqp.persistent_requests`).
    pub transient: bool,
}

/// Whether a delivery was sent transient, so its reply can be sent alike.
pub fn is_transient(properties: &BasicProperties) -> bool {
    properties
        .delivery_mode()
        .is_some_and(|mode| mode != PERSISTENT)
}

/// Encodes a message and its properties.
pub fn encode(
    codec: &Codec,
    format: Format,
    message: &IntegrationMessage,
    routing: &Routing<'_>,
) -> Result<(Vec<u8>, BasicProperties), Error> {
    let (body, content_encoding) = codec.compress(codec.encode(format, message)?)?;
    let mut headers = FieldTable::default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongUInt(message.retry_count.saturating_add(1)),
    );
    for (name, value) in &routing.headers {
        headers.insert((*name).into(), AMQPValue::LongString(value.as_str().into()));
    }
    let mut properties = BasicProperties::default()
        .with_message_id(message.message_id.as_str().into())
        .with_type(message.message_type.as_str().into())
        .with_app_id(message.source_system.as_str().into())
        .with_timestamp(u64::try_from(message.timestamp.timestamp()).unwrap_or_default())
        .with_delivery_mode(if routing.transient {
            TRANSIENT
        } else {
            PERSISTENT
        })
        .with_content_type(format.content_type().into())
        .with_headers(headers);
    if let Some(encoding) = content_encoding {
        properties = properties.with_content_encoding(encoding.into());
    }
    if routing.priorities {
        properties = properties.with_priority(message.priority);
    }
    let reply_to = routing.reply_to.or(message.reply_to.as_deref());
    if let Some(reply_to) = reply_to {
        properties = properties.with_reply_to(reply_to.into());
    }
    let correlation_id = routing.correlation_id.or(message.correlation_id.as_deref());
    if let Some(correlation_id) = correlation_id {
        properties = properties.with_correlation_id(correlation_id.into());
    }
    if let Some(deadline) = message.deadline() {
        // What is left of the ttl; the broker drops the message when it runs out.
        let left = (deadline - Utc::now()).num_milliseconds().max(1);
        properties = properties.with_expiration(left.to_string().into());
    }
    Ok((body, properties))
}

/// The format a delivery's content type names; JSON when it names none.
pub fn format_of(properties: &BasicProperties) -> Result<Format, aimbus_core::Error> {
    match properties.content_type() {
        Some(content_type) => Format::from_content_type(content_type.as_str()),
        None => Ok(Format::Json),
    }
}

/// Decodes a delivery's message. Properties fill what the body leaves out (`reply_to`,
/// `correlation_id`), so a client may set them either way.
pub fn decode(
    codec: &Codec,
    delivery: &Delivery,
) -> Result<IntegrationMessage, aimbus_core::Error> {
    let format = format_of(&delivery.properties)?;
    let encoding = delivery.properties.content_encoding().as_ref();
    let body = codec.decompress(&delivery.data, encoding.map(|e| e.as_str()))?;
    let mut message: IntegrationMessage = codec.decode(format, &body)?;
    let text = |value: &Option<ShortString>| value.as_ref().map(|v| v.as_str().to_owned());
    if message.reply_to.is_none() {
        message.reply_to = text(delivery.properties.reply_to());
    }
    if message.correlation_id.is_none() {
        message.correlation_id = text(delivery.properties.correlation_id());
    }
    Ok(message)
}

/// A header's value as text.
pub fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    let value = properties.headers().as_ref()?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => Some(format!("{other:?}")),
    }
}

/// A header's value as a count; 0 when absent or not a count.
pub fn count_header(properties: &BasicProperties, name: &str) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(name).cloned());
    match value {
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u32::from(n),
        Some(AMQPValue::ShortShortUInt(n)) => u32::from(n),
        _ => 0,
    }
}

/// The message type of a reply: `data_request` → `data_response`, anything else gets
/// `_response` appended.
pub fn response_type(request_type: &str) -> String {
    format!(
        "{}_response",
        request_type
            .strip_suffix("_request")
            .unwrap_or(request_type)
    )
}

/// The reply to `request` carrying `payload`, from `served_by`.
pub fn reply_to_request(
    request: &IntegrationMessage,
    served_by: &str,
    payload: serde_json::Map<String, serde_json::Value>,
) -> IntegrationMessage {
    let mut reply = IntegrationMessage::new(
        served_by,
        request.source_system.clone(),
        response_type(&request.message_type),
        payload,
    );
    reply.correlation_id = Some(request.message_id.clone());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimbus_core::DecodeLimits;
    use serde_json::json;

    #[test]
    fn properties_mirror_the_envelope() {
        let codec = Codec::new(DecodeLimits {
            max_bytes: 1 << 20,
            max_depth: 16,
        });
        let payload = json!({"q": 1}).as_object().unwrap().clone();
        let mut message = IntegrationMessage::new("cmc_001", "hhni", "data_request", payload);
        message.priority = 7;
        message.ttl_ms = Some(60_000);
        message.retry_count = 2;
        let routing = Routing {
            reply_to: Some("replies"),
            priorities: true,
            ..Routing::default()
        };
        let (body, p) = encode(&codec, Format::MessagePack, &message, &routing).unwrap();
        assert_eq!(
            p.message_id().as_ref().unwrap().as_str(),
            message.message_id
        );
        assert_eq!(p.kind().as_ref().unwrap().as_str(), "data_request");
        assert_eq!(p.app_id().as_ref().unwrap().as_str(), "cmc_001");
        assert_eq!(p.reply_to().as_ref().unwrap().as_str(), "replies");
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/msgpack"
        );
        assert_eq!(*p.priority(), Some(7));
        assert_eq!(*p.delivery_mode(), Some(2));
        let expiration: i64 = p.expiration().as_ref().unwrap().as_str().parse().unwrap();
        assert!((59_000..=60_000).contains(&expiration));
        assert_eq!(header(&p, ATTEMPT_HEADER).as_deref(), Some("LongUInt(3)"));
        let back: IntegrationMessage = codec.decode(Format::MessagePack, &body).unwrap();
        assert_eq!(back, message);
        assert!(!is_transient(&p));
        let transient = Routing {
            transient: true,
            ..routing
        };
        let (_, p) = encode(&codec, Format::MessagePack, &message, &transient).unwrap();
        assert_eq!(*p.delivery_mode(), Some(1));
        assert!(is_transient(&p));
    }

    #[test]
    fn reply_types() {
        assert_eq!(response_type("data_request"), "data_response");
        assert_eq!(response_type("health_check"), "health_check_response");
    }
}

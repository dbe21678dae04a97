use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, validate};

/// The message type of the bus's health checks; a transport with a health protocol of
/// its own (REST's `GET /health`, gRPC's `grpc.health.v1`) speaks that instead.
pub const HEALTH_CHECK: &str = "health_check";

/// The default number of delivery attempts, as in the seed.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A message between AIM-OS systems: the envelope the bus routes and the payload it carries.
/// The same named fields travel as JSON and as a MessagePack map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationMessage {
    pub message_id: String,
    /// The sending system: a system id, or a system type.
    pub source_system: String,
    /// Where to deliver: a system id (that instance), or a system type (any instance of it).
    pub target_system: String,
    pub message_type: String,
    pub payload: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "Utc::now")]
    pub timestamp: DateTime<Utc>,
    /// 0 (lowest) to 9.
    #[serde(default)]
    pub priority: u8,
    #[serde(default)]
    pub retry_count: u32,
    /// Total delivery attempts allowed.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// A queue to publish the reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Time to live in milliseconds from `timestamp`; past it the message is expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

impl IntegrationMessage {
    /// A new message with a fresh UUID, stamped now, with the seed's defaults.
    pub fn new(
        source_system: impl Into<String>,
        target_system: impl Into<String>,
        message_type: impl Into<String>,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        IntegrationMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            source_system: source_system.into(),
            target_system: target_system.into(),
            message_type: message_type.into(),
            payload,
            timestamp: Utc::now(),
            priority: 0,
            retry_count: 0,
            max_retries: DEFAULT_MAX_RETRIES,
            correlation_id: None,
            reply_to: None,
            ttl_ms: None,
        }
    }

    /// The seed's `_validate_message` (id, source, target, type and payload present), plus
    /// safe identifiers, the priority range and a usable reply queue and ttl.
    pub fn validate(&self) -> Result<(), Error> {
        validate::identifier("message_id", &self.message_id)?;
        validate::identifier("source_system", &self.source_system)?;
        validate::identifier("target_system", &self.target_system)?;
        validate::identifier("message_type", &self.message_type)?;
        if self.payload.is_empty() {
            return Err(Error::invalid(
                "payload",
                "is required and must not be empty",
            ));
        }
        validate::priority(self.priority)?;
        if self.max_retries == 0 {
            return Err(Error::invalid(
                "max_retries",
                "is 0; a message needs at least one attempt",
            ));
        }
        if let Some(id) = &self.correlation_id {
            validate::identifier("correlation_id", id)?;
        }
        if let Some(queue) = &self.reply_to {
            validate::queue_name("reply_to", queue)?;
        }
        if self.ttl_ms == Some(0) {
            return Err(Error::invalid(
                "ttl_ms",
                "is 0; leave it out for no expiry, or give milliseconds > 0",
            ));
        }
        Ok(())
    }

    /// A copy of the envelope with an empty payload: what answering a message needs,
    /// without copying what it carries.
    pub fn without_payload(&self) -> IntegrationMessage {
        IntegrationMessage {
            message_id: self.message_id.clone(),
            source_system: self.source_system.clone(),
            target_system: self.target_system.clone(),
            message_type: self.message_type.clone(),
            payload: serde_json::Map::new(),
            timestamp: self.timestamp,
            priority: self.priority,
            retry_count: self.retry_count,
            max_retries: self.max_retries,
            correlation_id: self.correlation_id.clone(),
            reply_to: self.reply_to.clone(),
            ttl_ms: self.ttl_ms,
        }
    }

    /// The instant past which the message must not be delivered, if it has a ttl.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let ttl = Duration::from_millis(self.ttl_ms?);
        chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| self.timestamp.checked_add_signed(ttl))
            // A ttl too large to represent never expires in practice.
            .or(Some(DateTime::<Utc>::MAX_UTC))
    }

    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message() -> IntegrationMessage {
        let payload = json!({"request": "test_data"}).as_object().unwrap().clone();
        IntegrationMessage::new("cmc", "hhni", "data_request", payload)
    }

    #[test]
    fn new_messages_carry_the_seed_defaults() {
        let m = message();
        assert_eq!((m.priority, m.retry_count, m.max_retries), (0, 0, 3));
        assert!(uuid::Uuid::parse_str(&m.message_id).is_ok());
        m.validate().unwrap();
    }

    #[test]
    fn missing_optional_fields_take_defaults_on_decode() {
        let m: IntegrationMessage = serde_json::from_value(json!({
            "message_id": "m1", "source_system": "cmc_001", "target_system": "hhni",
            "message_type": "data_request", "payload": {"q": 1}
        }))
        .unwrap();
        assert_eq!((m.priority, m.retry_count, m.max_retries), (0, 0, 3));
        assert_eq!(m.ttl_ms, None);
    }

    #[test]
    fn each_rule_names_its_field() {
        type Breakage = fn(&mut IntegrationMessage);
        let cases: [(&str, Breakage); 9] = [
            ("message_id", |m| m.message_id.clear()),
            ("source_system", |m| m.source_system.clear()),
            ("target_system", |m| m.target_system = "a b".into()),
            ("message_type", |m| m.message_type.clear()),
            ("payload", |m| m.payload.clear()),
            ("priority", |m| m.priority = 10),
            ("max_retries", |m| m.max_retries = 0),
            ("reply_to", |m| m.reply_to = Some(String::new())),
            ("ttl_ms", |m| m.ttl_ms = Some(0)),
        ];
        for (field, break_it) in cases {
            let mut m = message();
            break_it(&mut m);
            match m.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn without_payload_keeps_the_envelope() {
        let m = message();
        let envelope = m.without_payload();
        assert!(envelope.payload.is_empty());
        assert_eq!(
            IntegrationMessage {
                payload: m.payload.clone(),
                ..envelope
            },
            m
        );
    }

    #[test]
    fn expiry_follows_the_ttl() {
        let mut m = message();
        assert!(!m.is_expired_at(DateTime::<Utc>::MAX_UTC));
        m.ttl_ms = Some(1_000);
        let sent = m.timestamp;
        assert!(!m.is_expired_at(sent + chrono::Duration::milliseconds(999)));
        assert!(m.is_expired_at(sent + chrono::Duration::milliseconds(1_000)));
        m.ttl_ms = Some(u64::MAX);
        assert!(!m.is_expired_at(sent + chrono::Duration::days(365 * 1000)));
    }
}

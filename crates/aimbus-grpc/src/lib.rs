//! The gRPC contract of aimbus: the code `tonic` and `prost` generate from
//! `proto/aimbus/v1/aimbus.proto` (in [`pb`]), and the conversions between its
//! `IntegrationMessage` and the bus's own, which keep every field and its name.
//!
//! This crate depends on neither actix nor the router, so the SDK serves systems over
//! gRPC with it as the bus reaches them.
#![forbid(unsafe_code)]

use aimbus_core::{DEFAULT_MAX_RETRIES, IntegrationMessage};
use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

pub mod trace;

/// The generated messages, clients (`system_client`, `bus_client`) and servers.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("aimbus.v1");
}

/// The fully qualified name of the service systems implement, for health checks and
/// spans.
pub const SYSTEM_SERVICE: &str = "aimbus.v1.System";

/// The status code's name as gRPC writes it (`UNAVAILABLE`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The connections `listener` accepts, as a server of the contract takes them: without
/// Nagle's delay, which a server given a listener of its own does not turn off, and
/// which holds each small answer back for the peer's delayed acknowledgement (40 ms).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Why a message received over gRPC is not a valid `IntegrationMessage`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// JSON has no NaN or infinity, so a payload holding one cannot be routed.
    #[error("`{path}` is {value}, which JSON cannot hold")]
    NotFinite { path: String, value: f64 },
    #[error("`{field}` is {value}, above its largest value {max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("`timestamp` ({seconds} s, {nanos} ns) is not a valid time")]
    Timestamp { seconds: i64, nanos: i32 },
    /// As deep as the bus's `limits.max_nesting_depth` allows, as for JSON and MessagePack.
    #[error("`{path}` nests deeper than {limit} levels (the message itself is level 1)")]
    TooDeep { path: String, limit: usize },
}

/// The bus's message in the contract's form.
pub fn to_proto(message: &IntegrationMessage) -> pb::IntegrationMessage {
    pb::IntegrationMessage {
        message_id: message.message_id.clone(),
        source_system: message.source_system.clone(),
        target_system: message.target_system.clone(),
        message_type: message.message_type.clone(),
        payload: Some(struct_of(&message.payload)),
        timestamp: Some(prost_types::Timestamp {
            seconds: message.timestamp.timestamp(),
            // Below 10^9 by chrono's own invariant, outside leap seconds.
            nanos: i32::try_from(message.timestamp.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        priority: u32::from(message.priority),
        retry_count: message.retry_count,
        max_retries: message.max_retries,
        correlation_id: message.correlation_id.clone(),
        reply_to: message.reply_to.clone(),
        ttl_ms: message.ttl_ms,
    }
}

/// The contract's message as the bus's, with the JSON form's defaults for what is unset
/// (no timestamp is now, no `max_retries` is the default), nested at most `max_depth`
/// levels deep. The result is not yet validated: that is the router's, as for every
/// other way in.
pub fn from_proto(
    message: pb::IntegrationMessage,
    max_depth: usize,
) -> Result<IntegrationMessage, Error> {
    let timestamp = match message.timestamp {
        None => Utc::now(),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .ok_or(Error::Timestamp {
                seconds: t.seconds,
                nanos: t.nanos,
            })?,
    };
    let priority = u8::try_from(message.priority).map_err(|_| Error::OutOfRange {
        field: "priority",
        value: u64::from(message.priority),
        max: u64::from(u8::MAX),
    })?;
    let payload = match message.payload {
        None => Map::new(),
        Some(payload) => payload_of(payload, max_depth)?,
    };
    Ok(IntegrationMessage {
        message_id: message.message_id,
        source_system: message.source_system,
        target_system: message.target_system,
        message_type: message.message_type,
        payload,
        timestamp,
        priority,
        retry_count: message.retry_count,
        max_retries: match message.max_retries {
            0 => DEFAULT_MAX_RETRIES,
            n => n,
        },
        correlation_id: message.correlation_id,
        reply_to: message.reply_to,
        ttl_ms: message.ttl_ms,
    })
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn struct_of(object: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(key, value)| (key.clone(), value_of(value)))
            .collect(),
    }
}

fn value_of(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        Value::Bool(b) => Kind::BoolValue(*b),
        // Struct's only number is a double; every JSON number has one nearest.
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_of).collect(),
        }),
        Value::Object(object) => Kind::StructValue(struct_of(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A message's payload as a JSON object, nested at most `max_depth` levels deep counting
/// the message as level 1 (so the payload is level 2), as the JSON and MessagePack
/// decoders count.
pub fn payload_of(
    payload: prost_types::Struct,
    max_depth: usize,
) -> Result<Map<String, Value>, Error> {
    let mut place = Place {
        path: String::from("payload"),
        depth: 2,
        max_depth,
    };
    place.check_depth()?;
    json_of(payload, &mut place)
}

/// Where a conversion is: its path for errors, and its depth for the limit.
struct Place {
    path: String,
    depth: usize,
    max_depth: usize,
}

impl Place {
    fn check_depth(&self) -> Result<(), Error> {
        if self.depth > self.max_depth {
            return Err(Error::TooDeep {
                path: self.path.clone(),
                limit: self.max_depth,
            });
        }
        Ok(())
    }

    /// `value`, found at `step` (`.key` or `[i]`) from here.
    fn convert(
        &mut self,
        step: std::fmt::Arguments<'_>,
        value: prost_types::Value,
    ) -> Result<Value, Error> {
        use std::fmt::Write;
        let len = self.path.len();
        let _ = self.path.write_fmt(step);
        let nests = matches!(value.kind, Some(Kind::ListValue(_) | Kind::StructValue(_)));
        self.depth += usize::from(nests);
        let converted = self.check_depth().and_then(|()| json_value(value, self));
        self.depth -= usize::from(nests);
        self.path.truncate(len);
        converted
    }
}

fn json_of(object: prost_types::Struct, place: &mut Place) -> Result<Map<String, Value>, Error> {
    let mut json = Map::new();
    for (key, value) in object.fields {
        let value = place.convert(format_args!(".{key}"), value)?;
        json.insert(key, value);
    }
    Ok(json)
}

fn json_value(value: prost_types::Value, place: &mut Place) -> Result<Value, Error> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => Value::Number(number(n).ok_or_else(|| Error::NotFinite {
            path: place.path.clone(),
            value: n,
        })?),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            let mut items = Vec::with_capacity(list.values.len());
            for (i, item) in list.values.into_iter().enumerate() {
                items.push(place.convert(format_args!("[{i}]"), item)?);
            }
            Value::Array(items)
        }
        Some(Kind::StructValue(object)) => Value::Object(json_of(object, place)?),
    })
}

/// A double as the JSON number it stands for: a whole number within 2^53 as an integer,
/// as JSON senders wrote it, so `3` does not come back as `3.0`.
fn number(n: f64) -> Option<Number> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // Exact: a whole double of at most 2^53 converts without loss.
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(n as i64));
    }
    Number::from_f64(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPTH: usize = 32;

    fn message() -> IntegrationMessage {
        let payload = json!({
            "query": "quality", "count": 3, "ratio": 0.25, "negative": -7,
            "flags": [true, null, "x", {"deep": [1.5]}], "nested": {"a": {"b": "c"}},
        });
        let mut message = IntegrationMessage::new(
            "cmc_001",
            "hhni_001",
            "data_request",
            payload.as_object().unwrap().clone(),
        );
        message.priority = 7;
        message.retry_count = 1;
        message.max_retries = 5;
        message.correlation_id = Some("c-1".into());
        message.reply_to = Some("replies".into());
        message.ttl_ms = Some(30_000);
        message
    }

    #[test]
    fn a_message_survives_the_round_trip_field_for_field() {
        let original = message();
        assert_eq!(from_proto(to_proto(&original), DEPTH).unwrap(), original);
    }

    #[test]
    fn unset_fields_take_the_json_form_s_defaults() {
        let before = Utc::now();
        let message = from_proto(
            pb::IntegrationMessage {
                message_id: "m-1".into(),
                ..Default::default()
            },
            DEPTH,
        )
        .unwrap();
        assert!(message.payload.is_empty());
        assert_eq!(message.max_retries, DEFAULT_MAX_RETRIES);
        assert!(message.timestamp >= before);
        assert_eq!(
            (message.correlation_id, message.reply_to, message.ttl_ms),
            (None, None, None)
        );
    }

    #[test]
    fn nesting_is_bounded_as_in_the_other_forms() {
        // The message is level 1, its payload 2, `flags` 3, the object in it 4 and its
        // `deep` list 5.
        let proto = to_proto(&message());
        assert!(from_proto(proto.clone(), 5).is_ok());
        let error = from_proto(proto, 4).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`payload.flags[3].deep` nests deeper than 4 levels (the message itself is level 1)"
        );
    }

    #[test]
    fn what_json_cannot_hold_is_refused_with_its_place() {
        let mut proto = to_proto(&message());
        let nested = prost_types::Struct {
            fields: [(
                "x".to_owned(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(f64::INFINITY)),
                },
            )]
            .into(),
        };
        proto.payload.as_mut().unwrap().fields.insert(
            "bad".into(),
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue {
                    values: vec![prost_types::Value {
                        kind: Some(Kind::StructValue(nested)),
                    }],
                })),
            },
        );
        let error = from_proto(proto, DEPTH).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`payload.bad[0].x` is inf, which JSON cannot hold"
        );
        let mut proto = to_proto(&message());
        proto.priority = 300;
        assert!(matches!(
            from_proto(proto, DEPTH),
            Err(Error::OutOfRange {
                field: "priority",
                ..
            })
        ));
    }
}

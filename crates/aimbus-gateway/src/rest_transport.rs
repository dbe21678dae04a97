//! Delivery to systems with a `rest_api` interface, as the seed's L3 level specifies:
//! `POST {rest_api}/api/v1/messages` with the JSON envelope and the `X-…` headers, `200`
//! carrying the reply; health checks are `GET {rest_api}/health`. The client pools
//! connections per host, so the router's breakers, retries and timeouts see HTTP
//! systems as any other.

use std::sync::Arc;
use std::time::Duration;

use aimbus_actors::{DeliveryFailure, DeliveryFuture, Reply, Transport};
use aimbus_core::{HEALTH_CHECK, IntegrationMessage, PerformanceConfig, SystemInfo, interface};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

/// The L3 wire body: the envelope's fields the seed sends, no more.
#[derive(Serialize)]
struct WireMessage<'a> {
    message_id: &'a str,
    source_system: &'a str,
    target_system: &'a str,
    message_type: &'a str,
    payload: &'a Map<String, Value>,
    timestamp: String,
    priority: u8,
}

pub struct RestTransport {
    client: reqwest::Client,
}

impl RestTransport {
    /// A pooled client: at most `max_connections_per_host` idle connections kept per
    /// host, each closed after `keepalive_timeout_seconds` idle (or none kept when
    /// pooling is off). Concurrency per system is bounded by the router's bulkhead.
    pub fn new(config: &PerformanceConfig) -> Result<RestTransport, crate::Error> {
        let idle = if config.enable_connection_pooling {
            config.max_connections_per_host as usize
        } else {
            0
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(idle)
            .pool_idle_timeout(Duration::from_secs(config.keepalive_timeout_seconds))
            .tcp_nodelay(true)
            .build()
            .map_err(crate::Error::HttpClient)?;
        Ok(RestTransport { client })
    }
}

impl Transport for RestTransport {
    fn name(&self) -> &'static str {
        "rest_api"
    }

    fn reaches(&self, system: &SystemInfo) -> bool {
        system.interfaces.contains_key(interface::REST_API)
    }

    fn deliver(
        &self,
        system: &SystemInfo,
        message: Arc<IntegrationMessage>,
        _: Instant,
    ) -> DeliveryFuture {
        let Some(base) = system.interfaces.get(interface::REST_API) else {
            return Box::pin(async { Err(DeliveryFailure::Unreachable("no rest_api".into())) });
        };
        let base = base.trim_end_matches('/').to_owned();
        let client = self.client.clone();
        Box::pin(async move {
            let span;
            let request = if message.message_type == HEALTH_CHECK {
                let url = format!("{base}/health");
                span = client_span("GET", &url);
                client.get(url)
            } else {
                let url = format!("{base}/api/v1/messages");
                span = client_span("POST", &url);
                let wire = WireMessage {
                    message_id: &message.message_id,
                    source_system: &message.source_system,
                    target_system: &message.target_system,
                    message_type: &message.message_type,
                    payload: &message.payload,
                    timestamp: message.timestamp.to_rfc3339(),
                    priority: message.priority,
                };
                client
                    .post(url)
                    .header("X-Message-ID", message.message_id.as_str())
                    .header("X-Source-System", message.source_system.as_str())
                    .header("X-Target-System", message.target_system.as_str())
                    .header("X-Message-Type", message.message_type.as_str())
                    .json(&wire)
            };
            let request = span.in_scope(|| {
                aimbus_telemetry::context_headers()
                    .into_iter()
                    .fold(request, |request, (name, value)| {
                        request.header(name, value)
                    })
            });
            let response = request.send().instrument(span.clone()).await.map_err(|e| {
                span.record("otel.status_code", "error");
                span.record("error.type", "unreachable");
                DeliveryFailure::Unreachable(format!("{base}: {e}"))
            })?;
            let status = response.status();
            // As i64, for the reason the server span gives (`trace`).
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if !status.is_success() {
                span.record("otel.status_code", "error");
                span.record("error.type", status.as_str());
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| DeliveryFailure::Unreachable(format!("{base}: {e}")))?;
            if status != StatusCode::OK {
                let detail = format!("{base} answered {status}: {}", excerpt(&body));
                return Err(if is_retryable(status) {
                    DeliveryFailure::Failed(detail)
                } else {
                    DeliveryFailure::Rejected(detail)
                });
            }
            Ok(Reply::new(reply_payload(&body)))
        })
    }
}

/// The span of one call to a system, as OpenTelemetry's HTTP client conventions name it.
fn client_span(method: &str, url: &str) -> tracing::Span {
    // The URL is parsed only for a span someone takes: not once per message for nobody.
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return tracing::Span::none();
    }
    let make = || {
        let parsed = url::Url::parse(url).ok();
        tracing::debug_span!(
            "http_client",
            otel.name = method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            url.full = url,
            server.address = parsed.as_ref().and_then(|u| u.host_str()),
            server.port = parsed
                .as_ref()
                .and_then(|u| u.port_or_known_default())
                .map(i64::from),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
    // None for an unsampled message: its context still goes out in the headers.
    aimbus_telemetry::Trace::current(make).into_span()
}

/// Another attempt may succeed after these; other refusals would repeat.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// A reply that is an `IntegrationMessage` gives its payload; any other JSON object is
/// the payload itself; anything else is kept under `body`.
fn reply_payload(body: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) => match object.remove("payload") {
            Some(Value::Object(payload)) if object.contains_key("message_id") => payload,
            Some(other) => {
                object.insert("payload".into(), other);
                object
            }
            None => object,
        },
        Ok(other) => Map::from_iter([("body".to_owned(), other)]),
        Err(_) => Map::from_iter([("body".to_owned(), Value::from(excerpt(body)))]),
    }
}

/// The start of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_become_payloads() {
        let message = json!({"message_id": "r1", "payload": {"answer": 42}});
        assert_eq!(
            Value::Object(reply_payload(message.to_string().as_bytes())),
            json!({"answer": 42})
        );
        let plain = json!({"answer": 42, "payload": "kept"});
        assert_eq!(
            Value::Object(reply_payload(plain.to_string().as_bytes())),
            plain
        );
        assert_eq!(
            Value::Object(reply_payload(b"[1,2]")),
            json!({"body": [1, 2]})
        );
        assert_eq!(
            Value::Object(reply_payload(b"not json")),
            json!({"body": "not json"})
        );
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(
                is_retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert!(
                !is_retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}

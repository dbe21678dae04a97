//! `POST /api/v1/messages`: route a message and answer with the reply, or enqueue it
//! durably and answer 202 (`Prefer: respond-async`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aimbus_amqp::envelope;
use aimbus_core::{Format, IntegrationMessage, Keyring};
use serde_json::json;

use super::{body_format, read_body, respond};
use crate::Gateway;
use crate::auth::{Caller, Role};
use crate::problem::Problem;

/// Reads one envelope field of a message.
type Field = fn(&IntegrationMessage) -> &str;

/// The seed's L3 headers, each naming a field it must agree with.
const ENVELOPE_HEADERS: [(&str, Field); 4] = [
    ("x-message-id", |m| &m.message_id),
    ("x-source-system", |m| &m.source_system),
    ("x-target-system", |m| &m.target_system),
    ("x-message-type", |m| &m.message_type),
];

pub(crate) async fn post(
    request: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, Problem> {
    let caller = gateway.caller(&request)?;
    caller.require(Role::Publisher)?;
    let format = body_format(&request)?;
    let body = read_body(&request, payload, gateway.max_body_bytes).await?;
    let message: IntegrationMessage = gateway.codec.decode(format, &body)?;
    check_headers(&request, &message)?;
    let accepted = accept(&gateway, &caller, message).await?;
    if prefers_async(&request) {
        let message_id = accepted.enqueue(&gateway, format).await?;
        let mut response = HttpResponse::build(StatusCode::ACCEPTED);
        response.insert_header(("Preference-Applied", "respond-async"));
        let receipt = json!({"message_id": message_id, "status": ENQUEUED});
        return respond(&gateway.codec, &request, response, &receipt);
    }
    let (reply, served_by) = accepted.route(&gateway).await?;
    let mut ok = HttpResponse::Ok();
    ok.insert_header(("X-Served-By", &*served_by));
    respond(&gateway.codec, &request, ok, &reply)
}

/// What a receipt says of a message enqueued for delivery.
pub(crate) const ENQUEUED: &str = "enqueued";

/// A publisher's message, however it arrived (HTTP, gRPC), that may go on: its source
/// is the caller's, and a sealed payload is open (so a tampered one was refused before
/// it went anywhere), its keyring kept to seal what goes back.
pub(crate) struct Accepted<'g> {
    message: IntegrationMessage,
    sealing: Option<&'g Arc<Keyring>>,
}

/// Checks that `caller` may send `message` (no impersonation) and opens its payload.
pub(crate) async fn accept<'g>(
    gateway: &'g Gateway,
    caller: &Caller,
    mut message: IntegrationMessage,
) -> Result<Accepted<'g>, Problem> {
    check_speaks_for(gateway, caller, &message).await?;
    let sealing = match &gateway.keyring {
        Some(keyring) if Keyring::is_sealed(&message.payload) => {
            keyring.open(&mut message)?;
            Some(keyring)
        }
        _ => None,
    };
    Ok(Accepted { message, sealing })
}

impl Accepted<'_> {
    /// Enqueues the message durably on the ingress, in `format`, once it is valid;
    /// answers its id once the broker confirmed it.
    pub(crate) async fn enqueue(
        self,
        gateway: &Gateway,
        format: Format,
    ) -> Result<String, Problem> {
        let Accepted {
            mut message,
            sealing,
        } = self;
        // Refused now rather than dead-lettered later; the router validates what it routes.
        message.validate()?;
        let bridge = gateway.bridge.as_ref().ok_or_else(|| {
            Problem::unavailable(
                "async-unavailable",
                "asynchronous delivery needs the RabbitMQ bridge, which this bus runs without",
            )
        })?;
        if let Some(keyring) = sealing {
            // It crosses the broker as it came: sealed.
            keyring.seal(&mut message)?;
        }
        bridge.enqueue(&message, format).await.map_err(|e| {
            Problem::unavailable("broker-unavailable", format!("not enqueued: {e}"))
                .retry_after(std::time::Duration::from_secs(1))
        })?;
        Ok(message.message_id)
    }

    /// Routes the message; answers the system's reply (sealed for a sealed request) and
    /// the system that served it.
    pub(crate) async fn route(
        self,
        gateway: &Gateway,
    ) -> Result<(IntegrationMessage, Arc<str>), Problem> {
        let request_envelope = self.message.without_payload();
        let routed = gateway.router.route(self.message).await?;
        let mut reply =
            envelope::reply_to_request(&request_envelope, &routed.served_by, routed.reply.payload);
        if let Some(keyring) = self.sealing {
            keyring.seal(&mut reply)?;
        }
        Ok((reply, routed.served_by))
    }
}

/// The seed's headers are accepted, but may not contradict the body.
fn check_headers(request: &HttpRequest, message: &IntegrationMessage) -> Result<(), Problem> {
    for (name, field) in ENVELOPE_HEADERS {
        let Some(value) = request.headers().get(name) else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| Problem::bad_request(format!("header {name} is not text")))?;
        if value != field(message) {
            return Err(Problem::bad_request(format!(
                "header {name} says `{value}` but the message says `{}`",
                field(message)
            )));
        }
    }
    Ok(())
}

/// No impersonation: the message's source must be the token's subject, or that
/// system's type.
async fn check_speaks_for(
    gateway: &Gateway,
    caller: &Caller,
    message: &IntegrationMessage,
) -> Result<(), Problem> {
    let Some(subject) = &caller.subject else {
        return Ok(());
    };
    if &message.source_system == subject {
        return Ok(());
    }
    let subject_id = subject.clone();
    let subject_type = gateway
        .registry
        .query(move |r| r.get(&subject_id).map(|s| s.system_type.to_string()))
        .await?;
    if subject_type.as_deref() == Some(message.source_system.as_str()) {
        return Ok(());
    }
    Err(Problem::forbidden(format!(
        "the token speaks for `{subject}`, not for `{}`",
        message.source_system
    )))
}

/// RFC 7240: `Prefer: respond-async`, possibly among other preferences.
fn prefers_async(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

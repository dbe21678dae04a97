//! RFC 9457 problem details: every error the gateway answers, with a stable `type` per
//! kind so clients can branch on it rather than on the wording of `detail`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use aimbus_actors::{DeliveryFailure, Error as RouteError};
use aimbus_core::ErrorKind;
use serde::Serialize;

pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

/// One error answer. `kind` becomes `type` as `urn:aimbus:problem:<kind>`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Sent as `Retry-After`, in whole seconds (rounded up).
    pub retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, after: Duration) -> Problem {
        self.retry_after = Some(after);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "The request cannot be read",
            detail,
        )
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "A valid bearer token is required",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The token does not allow this",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            detail,
        )
    }

    pub fn unknown_system(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-system",
            "No such system",
            detail,
        )
    }

    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The body is larger than allowed",
            detail,
        )
    }

    pub fn rate_limited(detail: impl Into<String>, after: Duration) -> Problem {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        )
        .retry_after(after)
    }

    pub fn unavailable(kind: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind,
            "The bus cannot take this now",
            detail,
        )
    }

    /// The stable `type` URI of this problem.
    pub fn type_uri(&self) -> String {
        format!("urn:aimbus:problem:{}", self.kind)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = Body {
            kind: self.type_uri(),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let mut response = HttpResponse::build(self.status);
        response.insert_header((CONTENT_TYPE, CONTENT_TYPE_PROBLEM));
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
        }
        response.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl From<aimbus_core::Error> for Problem {
    fn from(error: aimbus_core::Error) -> Problem {
        let detail = error.to_string();
        match (&error, error.kind()) {
            (aimbus_core::Error::TooLarge { .. }, _) => Problem::too_large(detail),
            (aimbus_core::Error::UnsupportedContentType(_), _) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The content type is not supported",
                detail,
            ),
            (_, ErrorKind::Malformed) => Problem::bad_request(detail),
            (_, ErrorKind::Invalid) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "The request failed validation",
                detail,
            ),
            (_, ErrorKind::Conflict) => Problem::new(
                StatusCode::CONFLICT,
                "duplicate",
                "Already registered",
                detail,
            ),
            (_, ErrorKind::NotFound) => Problem::unknown_system(detail),
            (_, ErrorKind::Unauthorised) => Problem::new(
                StatusCode::BAD_REQUEST,
                "tampered",
                "The sealed payload does not open",
                detail,
            ),
            _ => internal(detail),
        }
    }
}

impl From<RouteError> for Problem {
    fn from(error: RouteError) -> Problem {
        let detail = error.to_string();
        match error {
            RouteError::Registry(error) => error.into(),
            RouteError::UnknownTarget(_) => Problem::unknown_system(detail),
            RouteError::RateLimited { retry_after, .. } => {
                Problem::rate_limited(detail, retry_after)
            }
            RouteError::Unavailable { retry_after, .. } => {
                let problem = Problem::unavailable("unavailable", detail);
                match retry_after {
                    Some(after) => problem.retry_after(after),
                    None => problem,
                }
            }
            RouteError::Overloaded { .. } => {
                Problem::unavailable("overloaded", detail).retry_after(Duration::from_secs(1))
            }
            RouteError::ActorStopped(_) | RouteError::SystemActorDown(_) => {
                Problem::unavailable("unavailable", detail).retry_after(Duration::from_secs(1))
            }
            RouteError::Timeout { .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "The system did not answer in time",
                detail,
            ),
            RouteError::Expired { .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "expired",
                "The message expired before it was delivered",
                detail,
            ),
            RouteError::Delivery {
                failure: DeliveryFailure::Rejected(_),
                ..
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                "The system refused the message",
                detail,
            ),
            RouteError::Delivery { .. } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "delivery-failed",
                "The system failed on the message",
                detail,
            ),
            // Nothing was committed: the caller may send the same write again.
            RouteError::Store {
                ref source,
                retry_after,
            } => Problem::unavailable("store-unavailable", format!("{detail}: {source}"))
                .retry_after(retry_after),
            RouteError::StoreUnavailable { retry_after } => {
                Problem::unavailable("store-unavailable", detail).retry_after(retry_after)
            }
            _ => internal(detail),
        }
    }
}

/// Our own failure, never the caller's input.
pub fn internal(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "The gateway failed",
        detail,
    )
}

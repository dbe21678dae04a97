use std::time::Duration;

use actix::MailboxError;

use crate::transport::DeliveryFailure;

/// Errors of the actor layer: the registry's own, routing's, or an actor being gone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid messages and registry errors (`kind()` tells which).
    #[error(transparent)]
    Registry(#[from] aimbus_core::Error),
    #[error("the {0} actor has stopped")]
    ActorStopped(&'static str),
    #[error("system `{0}` has no running actor")]
    SystemActorDown(String),
    #[error("`{source_system}` is rate limited: retry after {retry_after:?}")]
    RateLimited {
        source_system: String,
        retry_after: Duration,
        /// The rate the source is held to, as the time one message takes: a queue that
        /// holds many of its messages spaces their turns by it.
        pace: Duration,
    },
    #[error("no registered system or system type is named `{0}`")]
    UnknownTarget(String),
    /// Nothing can take the message now; `retry_after` says when a breaker half-opens.
    #[error("`{target}` is unavailable: {reason}")]
    Unavailable {
        target: String,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A bulkhead is full: `scope` is `bus` or a system id.
    #[error("overloaded: too many requests in flight for {scope}")]
    Overloaded { scope: String },
    #[error("system `{system_id}` did not answer within {after:?}")]
    Timeout { system_id: String, after: Duration },
    #[error("delivery to `{system_id}` {failure}")]
    Delivery {
        system_id: String,
        failure: DeliveryFailure,
    },
    #[error("message `{message_id}` expired before it could be delivered")]
    Expired { message_id: String },
    /// A registry write the store did not commit (it was away, or refused).
    #[error("the registry store did not commit the change")]
    Store {
        #[source]
        source: aimbus_store::Error,
        retry_after: Duration,
    },
    /// The shared response cache's settings cannot be used (the Redis URL).
    #[error("the shared response cache cannot be set up")]
    SharedCache(#[source] redis::RedisError),
    /// A registry write refused without trying: the store failed the last one moments ago.
    #[error("the registry store is unavailable; retry after {retry_after:?}")]
    StoreUnavailable { retry_after: Duration },
}

impl Error {
    /// Failures another attempt may cure: timeouts, unavailability, transport failures.
    /// Never invalid, refused, limited, expired or overloaded messages.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Unavailable { .. } | Error::SystemActorDown(_) => true,
            Error::Delivery { failure, .. } => failure.is_retryable(),
            _ => false,
        }
    }

    /// A delivery the bus's own lost connection cut short (see
    /// [`DeliveryFailure::is_interruption`]).
    pub fn is_interruption(&self) -> bool {
        matches!(self, Error::Delivery { failure, .. } if failure.is_interruption())
    }

    /// A stable one-word name of the kind of failure: the first word of a dead letter's
    /// reason, and a failed span's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Registry(_) => "invalid",
            Error::UnknownTarget(_) => "unknown_target",
            Error::Expired { .. } => "expired",
            Error::RateLimited { .. } => "rate_limited",
            Error::Overloaded { .. } => "overloaded",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Delivery { .. } => "delivery",
            Error::SystemActorDown(_) | Error::ActorStopped(_) => "failed",
            Error::Store { .. } | Error::StoreUnavailable { .. } => "store",
            Error::SharedCache(_) => "failed",
        }
    }

    pub(crate) fn store(source: aimbus_store::Error, retry_after: Duration) -> Error {
        Error::Store {
            source,
            retry_after,
        }
    }

    /// The registry error inside, if this is one.
    pub fn as_registry_error(&self) -> Option<&aimbus_core::Error> {
        match self {
            Error::Registry(error) => Some(error),
            _ => None,
        }
    }

    pub(crate) fn stopped(actor: &'static str) -> impl Fn(MailboxError) -> Error {
        // `send` without a timeout only fails when the receiving actor is gone.
        move |_| Error::ActorStopped(actor)
    }
}

//! One delivery attempt at one system and its bookkeeping, shared by the router and the
//! fallback actor: a bulkhead slot, a breaker permit, the per-attempt timeout, and the
//! outcome recorded in the breaker and the system's statistics.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aimbus_core::IntegrationMessage;
use tokio::time::Instant;

use super::bulkhead::{Bulkhead, Slot};
use crate::Error;
use crate::breaker::{BreakerHandle, BreakerPermit};
use crate::stats::SystemStats;
use crate::system_actor::{Deliver, SystemDirectory};
use crate::transport::{DeliveryFailure, DeliveryMode, Reply};

/// What routing keeps per system instance.
pub struct Instance {
    pub id: Arc<str>,
    pub breaker: BreakerHandle,
    pub stats: Arc<SystemStats>,
    bulkhead: Arc<Bulkhead>,
}

impl Instance {
    pub fn new(id: &str, breaker: BreakerHandle, bulkhead_size: usize) -> Instance {
        Instance {
            id: id.into(),
            breaker,
            stats: Arc::new(SystemStats::new(id)),
            bulkhead: Bulkhead::new(bulkhead_size),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.bulkhead.in_flight()
    }

    pub fn breaker_open(&self) -> bool {
        !matches!(
            self.breaker.state(),
            crate::breaker::BreakerState::Closed | crate::breaker::BreakerState::HalfOpen
        )
    }
}

/// Every instance the router knows, by system id; written by the router only.
pub type Instances = Arc<RwLock<crate::FastMap<Arc<Instance>>>>;

/// Why an instance cannot take an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its bulkhead is full.
    Busy,
    /// Its breaker is open; it half-opens after this long (never, if forced open).
    Open(Option<Duration>),
}

/// Leave to deliver one message to one system.
pub struct Attempt {
    instance: Arc<Instance>,
    breaker: Option<BreakerPermit>,
    _slot: Slot,
}

impl Attempt {
    /// Takes a bulkhead slot, then a breaker permit (unless breakers are off).
    pub fn acquire(instance: &Arc<Instance>, breakers: bool) -> Result<Attempt, Refusal> {
        let slot = instance.bulkhead.try_enter().ok_or(Refusal::Busy)?;
        let breaker = if breakers {
            Some(instance.breaker.admit().map_err(Refusal::Open)?)
        } else {
            None
        };
        Ok(Attempt {
            instance: Arc::clone(instance),
            breaker,
            _slot: slot,
        })
    }

    pub fn system_id(&self) -> &Arc<str> {
        &self.instance.id
    }

    /// Delivers through the system's actor within `timeout`, then records the outcome.
    pub async fn run(
        mut self,
        directory: &SystemDirectory,
        message: Arc<IntegrationMessage>,
        timeout: Duration,
        mode: DeliveryMode,
        (number, route): (u32, &aimbus_telemetry::Trace),
    ) -> Result<Reply, Error> {
        let started = Instant::now();
        let system_id = &*self.instance.id;
        let trace = route.child(|route| {
            tracing::debug_span!(
                parent: route,
                "attempt",
                otel.name = %format_args!("attempt {system_id}"),
                otel.status_code = tracing::field::Empty,
                // Integers as i64: tracing-opentelemetry records unsigned ones through Debug,
                // as strings formatted per span.
                aimbus.attempt = i64::from(number),
                aimbus.system_id = system_id,
                aimbus.breaker.state = self.instance.breaker.state().as_str(),
                error.type = tracing::field::Empty,
            )
        });
        let deadline = started + timeout;
        let deliver = Deliver {
            message,
            mode,
            trace: trace.clone(),
            deadline,
        };
        let result = match directory.deliver(system_id, deliver) {
            None => Err(Error::SystemActorDown(system_id.to_owned())),
            Some(delivered) => {
                // Not entered here: nothing happens in this task while the system actor's
                // transport works in the span.
                match tokio::time::timeout_at(deadline, delivered).await {
                    Err(_) => Err(Error::Timeout {
                        system_id: system_id.to_owned(),
                        after: timeout,
                    }),
                    // The actor ended mid-delivery (a fault or a panic): it is restarting.
                    Ok(Err(_)) => Err(Error::SystemActorDown(system_id.to_owned())),
                    Ok(Ok(Err(failure))) => Err(Error::Delivery {
                        system_id: system_id.to_owned(),
                        failure,
                    }),
                    Ok(Ok(Ok(reply))) => Ok(reply),
                }
            }
        };
        let finished = Instant::now();
        self.instance
            .stats
            .record(result.is_ok(), started, finished);
        // A system that refuses a bad message is working, and one whose answer was lost
        // with the bus's own connection did nothing wrong: no mark against either.
        let healthy = matches!(
            &result,
            Ok(_)
                | Err(Error::Delivery {
                    failure: DeliveryFailure::Rejected(_) | DeliveryFailure::Interrupted(_),
                    ..
                })
        );
        if let Some(permit) = self.breaker.take() {
            permit.finish(healthy, started, finished);
        }
        if let (Err(error), Some(span)) = (&result, trace.span()) {
            span.record("otel.status_code", "error");
            span.record("error.type", error.kind());
        }
        result
    }
}

//! One admitted message's delivery: attempts at the planned system (or a stand-in
//! through the fallback actor), timeouts, retries within the retry budget and the
//! message's deadline, and the reply cached when it may be.

use std::sync::Arc;
use std::time::Duration;

use aimbus_core::IntegrationMessage;
use chrono::Utc;

use super::Routed;
use super::attempt::Attempt;
use super::bulkhead::Slot;
use super::cache::{CacheKey, CachedReply};
use super::dispatch::Dispatch;
use super::fallback::Fallback;
use super::retry::RetryPolicy;
use crate::transport::DeliveryMode;
use crate::{Error, metrics};

/// What the next attempt will do.
pub(super) enum Step {
    Deliver(Attempt),
    Fallback {
        failed: String,
        retry_after: Option<Duration>,
    },
}

/// Everything one message's attempts need, and the bus slot it holds until it is done.
pub(super) struct Delivery<'a> {
    pub(super) message: Arc<IntegrationMessage>,
    pub(super) dispatch: &'a Dispatch,
    pub(super) policy: RetryPolicy,
    pub(super) attempts: u32,
    pub(super) mode: DeliveryMode,
    pub(super) cache_key: Option<CacheKey>,
    /// The route's trace, the explicit parent of each attempt's: its span never entered,
    /// as entering it on every poll of this future would cost more than the spans.
    pub(super) trace: &'a aimbus_telemetry::Trace,
    pub(super) _slot: Slot,
}

impl Delivery<'_> {
    pub(super) async fn run(self, first: Result<Step, Error>) -> Result<Routed, Error> {
        let result = self.with_retries(first).await;
        if let (Ok(routed), Some(cache), Some(key)) =
            (&result, &self.dispatch.cache, self.cache_key)
        {
            cache.insert(
                key,
                CachedReply {
                    reply: routed.reply.clone(),
                    served_by: routed.served_by.clone(),
                },
            );
        }
        result
    }

    /// Runs attempts until one succeeds, the error is not worth retrying, the attempts
    /// or the retry budget run out, or the message's deadline would pass during the wait.
    async fn with_retries(&self, first: Result<Step, Error>) -> Result<Routed, Error> {
        let mut message = Arc::clone(&self.message);
        let deadline = message.deadline();
        let mut step = first;
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.map(|d| (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            if remaining == Some(Duration::ZERO) {
                return Err(Error::Expired {
                    message_id: message.message_id.clone(),
                });
            }
            // A plan that found nothing to send to (every instance disconnected or not
            // taking traffic, a breaker open) sent no load anywhere.
            let sent = step.is_ok();
            // Boxed: an attempt's future (with its timer) is large, and keeping it out of
            // line keeps the caller's future, which holds this one, small.
            let one = Box::pin(self.attempt(step, Arc::clone(&message), remaining, attempt + 1));
            let error = match one.await {
                Ok(routed) => {
                    return Ok(Routed {
                        attempts: attempt + 1,
                        ..routed
                    });
                }
                Err(error) if error.is_retryable() && attempt + 1 < self.attempts => error,
                Err(error) => return Err(error),
            };
            let wait = self.policy.jittered_delay(attempt, &mut rand::rng());
            if remaining.is_some_and(|r| wait >= r) {
                return Err(error);
            }
            // The budget stops retries multiplying a failing system's load: a retry of
            // what reached no system (the plan refused, or the bus's own link was lost)
            // adds none, and a whole outage of the link (a broker restart) would otherwise
            // spend the budget on waiting alone.
            if sent && !error.is_interruption() && !self.dispatch.grant_retry() {
                ::metrics::counter!(metrics::RETRIES_REFUSED).increment(1);
                return Err(error);
            }
            ::metrics::counter!(metrics::RETRIES).increment(1);
            let parent = self.trace.span().and_then(tracing::Span::id);
            tracing::debug!(parent: parent, message_id = %message.message_id, attempt, %error, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
            Arc::make_mut(&mut message).retry_count += 1;
            step = self.dispatch.plan(&message);
        }
    }

    /// One attempt: at the planned system, or at a stand-in through the fallback actor.
    async fn attempt(
        &self,
        step: Result<Step, Error>,
        message: Arc<IntegrationMessage>,
        remaining: Option<Duration>,
        number: u32,
    ) -> Result<Routed, Error> {
        let within = |timeout: Duration| remaining.map_or(timeout, |r| r.min(timeout));
        match step? {
            Step::Deliver(next) => {
                let served_by = Arc::clone(next.system_id());
                let timeout = within(self.dispatch.request_timeout);
                let reply = next
                    .run(
                        &self.dispatch.directory,
                        message,
                        timeout,
                        self.mode,
                        (number, self.trace),
                    )
                    .await?;
                Ok(Routed {
                    reply,
                    served_by,
                    attempts: 0,
                    fallback: false,
                    cached: false,
                })
            }
            Step::Fallback {
                failed,
                retry_after,
            } => {
                let request = Fallback {
                    message,
                    failed,
                    retry_after,
                    timeout: within(self.dispatch.fallback_timeout),
                    mode: self.mode,
                    trace: self.trace.clone(),
                };
                self.dispatch
                    .fallback
                    .send(request)
                    .await
                    .map_err(Error::stopped("fallback"))?
            }
        }
    }
}

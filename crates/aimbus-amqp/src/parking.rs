//! Parking a message for later: the one way a consumer lets a message wait (a pause
//! before its next delivery, a rate limit's turn) without holding it, and its prefetch
//! slot, in memory.
//!
//! The wait happens in the broker, in delay queues of fixed lengths (250 ms doubling):
//! every message in one queue waits equally long, so they expire in the order they came,
//! and a long wait never holds up a short one behind it (a single queue of per-message
//! expirations checks only its head). A message goes to the longest level that fits its
//! wait, carrying the instant it may go in a header; expired, the queue dead-letters it
//! through the returns exchange to the queue it came from, keyed `<level>.<queue>`. A
//! message back before its instant is parked again for the rest, so any wait takes at
//! most one hop per level.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::AMQPValue;

use crate::envelope::{FAILED_DELIVERIES_HEADER, NOT_BEFORE_HEADER, count_header};
use crate::publisher::{Publisher, with_headers};
use crate::{Error, Names};

/// The shortest delay level; each next one is twice as long.
const SHORTEST_LEVEL_MS: u64 = 250;
/// How many delay levels there are: 250 ms to 1,024 s (about 17 minutes); a longer wait
/// takes several hops of the longest.
pub const LEVELS: u32 = 13;
/// A message back this close to its instant is taken now rather than parked again.
const EARLY_BY_AT_MOST: Duration = Duration::from_millis(20);

/// How long a copy of a message waits while another copy is being handled: about a
/// handling's length, after which it finds the answer (or, if that failed, its turn).
pub const COPY_IN_FLIGHT_WAIT: Duration = Duration::from_millis(250);

/// Longest pause between two deliveries of a message that keeps failing.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The pause before the next delivery of a message whose deliveries failed `failed`
/// times: 250 ms doubling (500 ms after the first), at most 10 s. The same ladder at
/// the ingress and in an SDK system's queue.
pub fn pause_after(failed: u32) -> Duration {
    Duration::from_millis(SHORTEST_LEVEL_MS << failed.min(6)).min(MAX_PAUSE)
}

/// What a message whose delivery just failed (for now) does next: the ladder the
/// ingress and SDK systems share.
#[derive(Debug, PartialEq)]
pub enum AfterFailure {
    /// Parked until `until`, `failed` deliveries counted.
    Retry { until: SystemTime, failed: u32 },
    /// `amqp.delivery_limit` deliveries failed: dead-lettered with this reason.
    GiveUp { reason: String },
}

/// The next step for a delivery (its failed count in `properties`) that failed with
/// `last`, under `delivery_limit`.
pub fn after_failure(
    properties: &BasicProperties,
    delivery_limit: u32,
    last: impl std::fmt::Display,
) -> AfterFailure {
    let failed = count_header(properties, FAILED_DELIVERIES_HEADER).saturating_add(1);
    if failed < delivery_limit {
        return AfterFailure::Retry {
            until: SystemTime::now() + pause_after(failed),
            failed,
        };
    }
    AfterFailure::GiveUp {
        reason: format!("delivery_limit: {failed} deliveries failed (last: {last})"),
    }
}

/// Every delay level, shortest first.
pub fn levels() -> impl Iterator<Item = Duration> {
    (0..LEVELS).map(|k| Duration::from_millis(SHORTEST_LEVEL_MS << k))
}

/// The level a wait of `wait` parks in: the longest that does not overshoot it, or the
/// shortest.
fn level_for(wait: Duration) -> Duration {
    levels()
        .take_while(|level| *level <= wait)
        .last()
        .unwrap_or(Duration::from_millis(SHORTEST_LEVEL_MS))
}

fn epoch_ms(at: SystemTime) -> i64 {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// When a parked delivery may go, if it came back early (a level shorter than its wait);
/// `None` for a delivery free to be handled now.
pub fn parked_until(properties: &BasicProperties) -> Option<SystemTime> {
    let headers = properties.headers().as_ref()?;
    let ms = match headers.inner().get(NOT_BEFORE_HEADER)? {
        AMQPValue::LongLongInt(ms) => u64::try_from(*ms).ok()?,
        AMQPValue::LongUInt(ms) => u64::from(*ms),
        _ => return None,
    };
    let until = UNIX_EPOCH + Duration::from_millis(ms);
    let early = until.duration_since(SystemTime::now()).ok()?;
    (early > EARLY_BY_AT_MOST).then_some(until)
}

impl Publisher {
    /// Parks `delivery` until `until`, to come back to `queue` (the one it was consumed
    /// from); `failed`, when given, becomes its count of failed deliveries. Returns once
    /// the broker confirmed the parked copy, so the delivery may be acked then.
    pub async fn park(
        &self,
        names: &Names,
        delivery: &Delivery,
        queue: &str,
        until: SystemTime,
        failed: Option<u32>,
    ) -> Result<(), Error> {
        let wait = until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let level = level_for(wait);
        let not_before = (NOT_BEFORE_HEADER, AMQPValue::LongLongInt(epoch_ms(until)));
        let counted = failed.map(|failed| (FAILED_DELIVERIES_HEADER, AMQPValue::LongUInt(failed)));
        let properties = with_headers(
            &delivery.properties,
            [Some(not_before), counted].into_iter().flatten(),
        );
        // The level's length as the message's own expiration: equal in one queue, so
        // expiry order is arrival order. The broker drops it when dead-lettering, so the
        // message does not expire again where it returns.
        let properties = properties.with_expiration(level.as_millis().to_string().into());
        let routing_key = format!("{}.{queue}", level.as_millis());
        self.publish(&names.delay(), &routing_key, &delivery.data, properties)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::with_header;

    #[test]
    fn a_wait_parks_in_the_longest_level_that_fits_it() {
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(level_for(ms(0)), ms(250), "the shortest, at least");
        assert_eq!(level_for(ms(499)), ms(250));
        assert_eq!(level_for(ms(500)), ms(500));
        assert_eq!(level_for(ms(10_000)), ms(8_000));
        assert_eq!(level_for(Duration::from_secs(3_600)), ms(1_024_000));
        assert_eq!(levels().count(), LEVELS as usize);
    }

    #[test]
    fn each_level_is_used_at_most_once_for_any_wait() {
        for wait_ms in [250u64, 777, 2_000, 10_000, 123_456, 1_000_000] {
            let mut left = Duration::from_millis(wait_ms);
            let mut used = Vec::new();
            while left > EARLY_BY_AT_MOST {
                let level = level_for(left);
                assert!(!used.contains(&level) || level == Duration::from_millis(250));
                used.push(level);
                left = left.saturating_sub(level);
            }
            assert!(used.len() <= LEVELS as usize + 1, "{wait_ms}: {used:?}");
        }
    }

    #[test]
    fn pauses_double_from_half_a_second_to_ten_seconds() {
        let pauses: Vec<u64> = (1..=7).map(|f| pause_after(f).as_millis() as u64).collect();
        assert_eq!(pauses, [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(pause_after(u32::MAX), MAX_PAUSE);
    }

    #[test]
    fn a_failure_is_retried_until_the_delivery_limit_then_given_up() {
        let counted = |n: u32| {
            with_header(
                &BasicProperties::default(),
                FAILED_DELIVERIES_HEADER,
                AMQPValue::LongUInt(n),
            )
        };
        let retried = after_failure(&BasicProperties::default(), 3, "x");
        assert!(
            matches!(retried, AfterFailure::Retry { failed: 1, .. }),
            "{retried:?}"
        );
        assert!(matches!(
            after_failure(&counted(1), 3, "x"),
            AfterFailure::Retry { failed: 2, .. }
        ));
        assert_eq!(
            after_failure(&counted(2), 3, "failed: disk full"),
            AfterFailure::GiveUp {
                reason: "delivery_limit: 3 deliveries failed (last: failed: disk full)".into()
            }
        );
    }

    #[test]
    fn only_a_delivery_back_early_is_still_parked() {
        let with_until = |until: SystemTime| {
            with_header(
                &BasicProperties::default(),
                NOT_BEFORE_HEADER,
                AMQPValue::LongLongInt(epoch_ms(until)),
            )
        };
        let now = SystemTime::now();
        assert!(parked_until(&BasicProperties::default()).is_none());
        assert!(parked_until(&with_until(now - Duration::from_secs(1))).is_none());
        assert!(parked_until(&with_until(now + Duration::from_millis(5))).is_none());
        assert!(parked_until(&with_until(now + Duration::from_secs(2))).is_some());
    }
}

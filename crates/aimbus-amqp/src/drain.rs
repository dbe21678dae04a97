//! Stopping a consumer without losing or repeating work: the one drain the bus's ingress
//! and an SDK system's worker share.

use std::time::Duration;

use lapin::Channel;
use lapin::options::BasicCancelOptions;
use tokio_util::task::TaskTracker;

use crate::Acks;

/// Cancels `consumer_tag` on `channel` (the broker sends no more; what it had sent and
/// nobody began is handed back when the channel closes), lets the `deliveries` in
/// progress finish for up to `grace`, and waits until what finished is acknowledged.
/// `acks` must be the last of the channel's `Acks` outside the deliveries' tasks.
pub async fn drain(
    channel: &Channel,
    consumer_tag: &str,
    deliveries: TaskTracker,
    acks: Acks,
    grace: Duration,
) {
    let cancelled = channel
        .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
        .await;
    if let Err(error) = cancelled {
        tracing::warn!(consumer_tag, %error, "consumer not cancelled");
    }
    deliveries.close();
    let in_progress = deliveries.len();
    if tokio::time::timeout(grace, deliveries.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            consumer_tag,
            in_progress = deliveries.len(),
            grace_s = grace.as_secs(),
            "deliveries still in progress are handed back to the broker"
        );
    }
    let flushed = acks.flushed();
    drop(acks);
    let _ = tokio::time::timeout(grace, flushed).await;
    tracing::info!(consumer_tag, drained = in_progress, "consumer drained");
}

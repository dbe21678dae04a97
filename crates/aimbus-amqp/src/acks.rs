//! Acknowledgements of one consumer channel, coalesced. A finished delivery is acked
//! together with every finished delivery before it, in one `basic.ack` with `multiple`:
//! each acknowledgement costs the client a round through lapin's I/O thread and the
//! broker a frame, so one per batch instead of one per message is the cheaper bus. A
//! delivery that finished behind one still in progress is acked alone once it has waited
//! [`STRAGGLER_WAIT`], so a slow message never holds the others' prefetch slots.
//!
//! The channel must carry one consumer, whose every delivery passes through
//! [`Acks::delivered`]: an ack with `multiple` settles every tag up to its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::Error;

/// Longest a finished delivery waits for the ones before it before it is acked alone.
const STRAGGLER_WAIT: Duration = Duration::from_millis(25);

/// Settles the deliveries of one consumer channel; cloned into each delivery's task.
/// When the last clone is dropped, what is finished is acked and the flusher ends.
#[derive(Clone)]
pub struct Acks {
    handle: Arc<Handle>,
}

/// Dropped with the last `Acks`: tells the flusher no more will come.
struct Handle {
    shared: Arc<Shared>,
    channel: Channel,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    /// Set once the flusher has ended: what was finished is acknowledged (or the channel
    /// failed, and the broker redelivers it).
    done: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Delivered and neither acked nor nacked yet.
    open: BTreeSet<u64>,
    /// Done with, waiting for their ack, with the moment each finished.
    finished: BTreeMap<u64, Instant>,
    /// Every `Acks` is gone: ack what is finished and stop.
    closed: bool,
}

/// What to acknowledge in one flush.
#[derive(Debug, Default, PartialEq)]
struct Due {
    /// The highest finished tag below every open one: acked with `multiple`.
    up_to: Option<u64>,
    /// Finished behind an open delivery for too long: acked one by one.
    alone: Vec<u64>,
    /// When the next finished delivery behind an open one is due alone.
    next: Option<Instant>,
}

impl State {
    fn due(&mut self, now: Instant) -> Due {
        let behind_open = match self.open.first() {
            Some(&lowest_open) => self.finished.split_off(&lowest_open),
            None => BTreeMap::new(),
        };
        let up_to = self.finished.keys().next_back().copied();
        self.finished = behind_open;
        let waited_enough =
            |finished_at: &Instant| self.closed || now >= *finished_at + STRAGGLER_WAIT;
        let alone: Vec<u64> = self
            .finished
            .iter()
            .filter(|(_, finished_at)| waited_enough(finished_at))
            .map(|(&tag, _)| tag)
            .collect();
        for tag in &alone {
            self.finished.remove(tag);
        }
        let next = self
            .finished
            .values()
            .min()
            .map(|finished_at| *finished_at + STRAGGLER_WAIT);
        Due { up_to, alone, next }
    }
}

impl Acks {
    /// Starts the flusher of `channel`'s acknowledgements.
    pub fn start(channel: Channel) -> Acks {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Notify::new(),
            done: watch::channel(false).0,
        });
        let (flusher, flushed_channel) = (Arc::clone(&shared), channel.clone());
        tokio::spawn(async move {
            flush(Arc::clone(&flusher), flushed_channel).await;
            flusher.done.send_replace(true);
        });
        Acks {
            handle: Arc::new(Handle { shared, channel }),
        }
    }

    /// Resolves once every `Acks` is gone and what they finished is acknowledged: what a
    /// consumer that stops waits for before it closes its channel.
    pub fn flushed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut done = self.handle.shared.done.subscribe();
        async move {
            let _ = done.wait_for(|done| *done).await;
        }
    }

    /// A delivery arrived; call in the order they arrive, before it is handled.
    pub fn delivered(&self, delivery_tag: u64) {
        self.state().open.insert(delivery_tag);
    }

    /// The delivery is done with: it is acked with the next flush.
    pub fn ack(&self, delivery_tag: u64) {
        {
            let mut state = self.state();
            state.open.remove(&delivery_tag);
            state.finished.insert(delivery_tag, Instant::now());
        }
        self.handle.shared.wake.notify_one();
    }

    /// Settles a delivery whose parked copy was published: acked once the broker
    /// confirmed the copy, handed back (uncounted) if parking failed.
    pub async fn after_parking(
        &self,
        delivery_tag: u64,
        parked: Result<(), Error>,
    ) -> Result<(), Error> {
        match parked {
            Ok(()) => {
                self.ack(delivery_tag);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "message returned to the queue uncounted");
                self.nack(delivery_tag, true).await
            }
        }
    }

    /// Hands the delivery back to the broker at once, alone (`requeue`) or to its dead
    /// letters. The tag stays open until the nack is sent, so no `multiple` ack covers it.
    pub async fn nack(&self, delivery_tag: u64, requeue: bool) -> Result<(), Error> {
        let options = BasicNackOptions {
            requeue,
            multiple: false,
        };
        let nacked = self.handle.channel.basic_nack(delivery_tag, options).await;
        self.state().open.remove(&delivery_tag);
        self.handle.shared.wake.notify_one();
        Ok(nacked?)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.handle.shared.state.lock().expect("acks lock")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.state.lock().expect("acks lock").closed = true;
        self.shared.wake.notify_one();
    }
}

/// Acks what is due whenever a delivery finishes or a straggler's wait runs out, until
/// the `Acks` are gone or the channel fails (the broker then redelivers what is unacked).
async fn flush(shared: Arc<Shared>, channel: Channel) {
    loop {
        let (due, closed) = {
            let mut state = shared.state.lock().expect("acks lock");
            (state.due(Instant::now()), state.closed)
        };
        let multiple = due.up_to.map(|tag| (tag, true));
        let alone = due.alone.iter().map(|&tag| (tag, false));
        for (tag, multiple) in multiple.into_iter().chain(alone) {
            if let Err(error) = channel.basic_ack(tag, BasicAckOptions { multiple }).await {
                tracing::warn!(%error, "acknowledgements failed; the broker will redeliver");
                return;
            }
        }
        if closed {
            return;
        }
        match due.next {
            Some(next) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(next) => continue,
                }
            }
            None => shared.wake.notified().await,
        }
        // What finishes in the same turn of the scheduler goes in the same ack (a
        // confirm with `multiple` finishes many deliveries at once). Waiting longer
        // would hold every prefetch slot that much longer, and the consumer's rate is
        // its prefetch over that hold.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(open: &[u64], finished: &[(u64, Instant)]) -> State {
        State {
            open: open.iter().copied().collect(),
            finished: finished.iter().copied().collect(),
            closed: false,
        }
    }

    #[test]
    fn finished_deliveries_before_every_open_one_are_acked_in_one() {
        let now = Instant::now();
        let mut state = state(&[7], &[(3, now), (4, now), (6, now), (9, now)]);
        let due = state.due(now);
        assert_eq!(due.up_to, Some(6));
        assert!(due.alone.is_empty());
        assert_eq!(due.next, Some(now + STRAGGLER_WAIT), "9 waits behind 7");
        assert_eq!(state.finished.keys().copied().collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn a_delivery_finished_behind_a_slow_one_is_acked_alone_after_its_wait() {
        let start = Instant::now();
        let mut state = state(&[1], &[(2, start), (3, start + STRAGGLER_WAIT)]);
        let due = state.due(start + STRAGGLER_WAIT);
        assert_eq!(due.up_to, None, "1 is still open");
        assert_eq!(due.alone, [2]);
        assert_eq!(due.next, Some(start + STRAGGLER_WAIT * 2));
        let due = state.due(start + STRAGGLER_WAIT * 2);
        assert_eq!(due.alone, [3]);
        assert_eq!(
            due,
            Due {
                up_to: None,
                alone: vec![3],
                next: None
            }
        );
    }

    #[test]
    fn nothing_open_acks_everything_finished() {
        let now = Instant::now();
        let mut state = state(&[], &[(1, now), (2, now)]);
        assert_eq!(
            state.due(now),
            Due {
                up_to: Some(2),
                ..Due::default()
            }
        );
        assert_eq!(state.due(now), Due::default(), "nothing is acked twice");
    }

    #[test]
    fn once_closed_stragglers_are_acked_without_waiting() {
        let now = Instant::now();
        let mut state = state(&[1], &[(2, now)]);
        state.closed = true;
        assert_eq!(state.due(now).alone, [2]);
    }
}

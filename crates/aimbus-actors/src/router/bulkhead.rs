//! Bulkheads: a bound on calls in flight that refuses at once when full. Nothing ever
//! waits for room, so a counter does what a semaphore would without the semaphore's
//! waiter-list lock on every release.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicUsize,
    capacity: usize,
}

/// One call's room in a bulkhead, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Bulkhead>);

impl Bulkhead {
    pub fn new(capacity: usize) -> Arc<Bulkhead> {
        Arc::new(Bulkhead {
            in_flight: AtomicUsize::new(0),
            capacity,
        })
    }

    /// Room for one more call, unless the bulkhead is full.
    pub fn try_enter(self: &Arc<Self>) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_when_full_and_gives_room_back_on_drop() {
        let bulkhead = Bulkhead::new(2);
        let a = bulkhead.try_enter().unwrap();
        let _b = bulkhead.try_enter().unwrap();
        assert!(bulkhead.try_enter().is_none());
        assert_eq!(bulkhead.in_flight(), 2);
        drop(a);
        assert_eq!(bulkhead.in_flight(), 1);
        assert!(bulkhead.try_enter().is_some());
    }

    #[test]
    fn a_zero_capacity_bulkhead_admits_nothing() {
        assert!(Bulkhead::new(0).try_enter().is_none());
    }
}

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

/// What an entry costs besides its id and its value's own size: the map's and the
/// queue's slots and the value's fixed part.
const ENTRY_OVERHEAD: usize = 64;

/// The last message ids seen, each with what was answered to it, so a redelivered
/// message is answered again instead of processed again. Bounded twice: at most
/// `capacity` ids, and at most `max_bytes` for them and their values as the caller sizes
/// them (answers of any size must not grow a consumer without end). Past either bound
/// the oldest are forgotten first; a value larger than the whole budget is not kept.
#[derive(Debug)]
pub struct DedupWindow<V> {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    order: VecDeque<String>,
    /// Each id's value and the bytes it was counted for.
    seen: HashMap<String, (V, usize)>,
    /// Ids being handled now, not answered yet: two copies of one message in flight at
    /// once (a publisher's resend beside the original) must not both be handled. As many
    /// as the consumer's prefetch at most, each holding its delivery's slot.
    in_flight: HashSet<String>,
}

/// What a consumer about to handle a message learns of its id.
pub enum Begin<'w, V: Clone> {
    /// Seen first: handle it, then [`Handling::finish`].
    New(Handling<'w, V>),
    /// Handled already: this was the answer.
    Answered(V),
    /// Another copy is being handled now: this one waits (parked) and comes back to
    /// find its answer, or, if that copy failed, to be handled.
    InFlight,
}

/// A message being handled; dropped without [`Handling::finish`] (its task ended or
/// panicked), it is forgotten, so a redelivery is handled again.
pub struct Handling<'w, V: Clone> {
    window: &'w Mutex<DedupWindow<V>>,
    id: String,
}

impl<V: Clone> Handling<'_, V> {
    /// Done: remembers `answer` (with the bytes it holds) for the copies to come, or,
    /// with `None` (it failed and may succeed later), lets the next copy be handled.
    pub fn finish(self, answer: Option<(V, usize)>) {
        let mut window = self.window.lock().expect("dedup lock");
        window.in_flight.remove(&self.id);
        if let Some((value, size)) = answer {
            window.insert(&self.id, value, size);
        }
    }
}

impl<V: Clone> Drop for Handling<'_, V> {
    fn drop(&mut self) {
        if let Ok(mut window) = self.window.lock() {
            window.in_flight.remove(&self.id);
        }
    }
}

impl<V: Clone> DedupWindow<V> {
    pub fn new(capacity: usize, max_bytes: usize) -> DedupWindow<V> {
        DedupWindow {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            order: VecDeque::new(),
            seen: HashMap::new(),
            in_flight: HashSet::new(),
        }
    }

    /// Marks `message_id` as being handled, unless it was answered or is in flight.
    pub fn begin<'w>(window: &'w Mutex<DedupWindow<V>>, message_id: &str) -> Begin<'w, V> {
        let mut locked = window.lock().expect("dedup lock");
        if let Some(answer) = locked.get(message_id) {
            return Begin::Answered(answer);
        }
        if !locked.in_flight.insert(message_id.to_owned()) {
            return Begin::InFlight;
        }
        Begin::New(Handling {
            window,
            id: message_id.to_owned(),
        })
    }

    pub fn get(&self, message_id: &str) -> Option<V> {
        self.seen.get(message_id).map(|(value, _)| value.clone())
    }

    /// Remembers `value` for `message_id`; `size` is what the value holds beyond its
    /// fixed part (an answer's payload, say).
    pub fn insert(&mut self, message_id: &str, value: V, size: usize) {
        // The id is held twice: as the map's key and in the order.
        let weight = 2 * message_id.len() + ENTRY_OVERHEAD + size;
        if weight > self.max_bytes {
            // Keeping it would forget everything else; a redelivery is handled again.
            return;
        }
        match self.seen.insert(message_id.to_owned(), (value, weight)) {
            Some((_, replaced)) => self.bytes -= replaced,
            None => self.order.push_back(message_id.to_owned()),
        }
        self.bytes += weight;
        while self.order.len() > self.capacity || self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, forgotten)) = self.seen.remove(&oldest) {
                self.bytes -= forgotten;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The bytes counted for what is remembered now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one entry with a one-letter id and a value of `size` counts.
    fn weight(size: usize) -> usize {
        2 + ENTRY_OVERHEAD + size
    }

    #[test]
    fn remembers_the_last_ids_only() {
        let mut window = DedupWindow::new(2, usize::MAX);
        window.insert("a", 1, 0);
        window.insert("b", 2, 0);
        window.insert("a", 9, 0);
        assert_eq!(window.get("a"), Some(9));
        window.insert("c", 3, 0);
        assert_eq!(window.get("a"), None, "the oldest is forgotten");
        assert_eq!(
            (window.get("b"), window.get("c"), window.len()),
            (Some(2), Some(3), 2)
        );
        assert_eq!(window.bytes(), 2 * weight(0));
    }

    #[test]
    fn large_values_push_the_oldest_out_within_the_byte_budget() {
        let mut window = DedupWindow::new(100, 3 * weight(1000));
        for id in ["a", "b", "c"] {
            window.insert(id, id, 1000);
        }
        assert_eq!((window.len(), window.bytes()), (3, 3 * weight(1000)));
        window.insert("d", "d", 1500);
        assert_eq!(window.get("a"), None);
        assert_eq!(window.get("b"), None, "one more had to go to fit d");
        assert_eq!((window.get("c"), window.get("d")), (Some("c"), Some("d")));
        assert_eq!(window.bytes(), weight(1000) + weight(1500));
    }

    #[test]
    fn a_value_larger_than_the_budget_is_not_kept_and_forgets_nothing() {
        let mut window = DedupWindow::new(100, 1000);
        window.insert("a", 1, 10);
        window.insert("b", 2, 5000);
        assert_eq!((window.get("a"), window.get("b")), (Some(1), None));
        assert_eq!(window.bytes(), weight(10));
    }

    #[test]
    fn a_copy_in_flight_waits_and_then_finds_the_answer_or_its_turn() {
        let window = Mutex::new(DedupWindow::new(100, usize::MAX));
        let Begin::New(first) = DedupWindow::begin(&window, "a") else {
            panic!("seen first");
        };
        assert!(matches!(DedupWindow::begin(&window, "a"), Begin::InFlight));
        first.finish(Some((7, 0)));
        assert!(matches!(
            DedupWindow::begin(&window, "a"),
            Begin::Answered(7)
        ));
        // A failure, or a task that ended, lets the next copy be handled.
        let Begin::New(second) = DedupWindow::begin(&window, "b") else {
            panic!("seen first");
        };
        second.finish(None);
        let Begin::New(third) = DedupWindow::begin(&window, "b") else {
            panic!("handled again after a failure");
        };
        drop(third);
        assert!(matches!(DedupWindow::begin(&window, "b"), Begin::New(_)));
    }

    #[test]
    fn replacing_a_value_counts_the_new_size_only() {
        let mut window = DedupWindow::new(100, usize::MAX);
        window.insert("a", 1, 500);
        window.insert("a", 2, 20);
        assert_eq!((window.get("a"), window.len()), (Some(2), 1));
        assert_eq!(window.bytes(), weight(20));
    }
}

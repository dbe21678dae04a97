use std::collections::{HashMap, VecDeque};

/// The last `capacity` message ids seen, each with what was answered to it, so a
/// redelivered message is answered again instead of processed again. Oldest ids are
/// forgotten first; memory is bounded by `capacity`.
#[derive(Debug)]
pub struct DedupWindow<V> {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashMap<String, V>,
}

impl<V: Clone> DedupWindow<V> {
    pub fn new(capacity: usize) -> DedupWindow<V> {
        DedupWindow {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    pub fn get(&self, message_id: &str) -> Option<V> {
        self.seen.get(message_id).cloned()
    }

    pub fn insert(&mut self, message_id: &str, value: V) {
        if self.seen.insert(message_id.to_owned(), value).is_some() {
            return;
        }
        self.order.push_back(message_id.to_owned());
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_ids_only() {
        let mut window = DedupWindow::new(2);
        window.insert("a", 1);
        window.insert("b", 2);
        window.insert("a", 9);
        assert_eq!(window.get("a"), Some(9));
        window.insert("c", 3);
        assert_eq!(window.get("a"), None, "the oldest is forgotten");
        assert_eq!(
            (window.get("b"), window.get("c"), window.len()),
            (Some(2), Some(3), 2)
        );
    }
}

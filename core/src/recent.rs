//! The receiver's memory of the event ids it accepted recently: what lets it answer `duplicate`
//! without a round trip to a Durable Object.
//!
//! It lives in one isolate's memory, so it only knows what that isolate accepted, and it is
//! bounded, so it forgets the oldest ids first. That is enough for what it is for: a provider's
//! immediate retries and duplicate bursts usually reach the same isolate, and answering them
//! `duplicate` saves a queue message each. Correctness never depends on it: an id it does not
//! know is enqueued, and the consumer's Durable Object record makes sure it is delivered once.
//! An id is remembered only after its enqueue succeeded, so `duplicate` never acknowledges an
//! event that is not durably in the queue.

use std::collections::{HashMap, VecDeque};

/// A bounded map from idempotency key to acceptance time, oldest forgotten first.
#[derive(Debug, Default)]
pub struct RecentIds {
    accepted_ms: HashMap<String, i64>,
    order: VecDeque<(String, i64)>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds { accepted_ms: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// Whether `key` was accepted less than `ttl_ms` ago.
    pub fn knows(&self, key: &str, now_ms: i64, ttl_ms: i64) -> bool {
        self.accepted_ms.get(key).is_some_and(|&at| now_ms - at < ttl_ms)
    }

    /// Records that `key` was durably enqueued at `now_ms`.
    pub fn remember(&mut self, key: &str, now_ms: i64) {
        self.accepted_ms.insert(key.to_owned(), now_ms);
        self.order.push_back((key.to_owned(), now_ms));
        while self.order.len() > self.capacity {
            let Some((old, at)) = self.order.pop_front() else { break };
            // Only forget the entry if it was not remembered again since.
            if self.accepted_ms.get(&old) == Some(&at) {
                self.accepted_ms.remove(&old);
            }
        }
    }

    /// Forgets `key` (its place in the eviction order is dropped lazily).
    pub fn forget(&mut self, key: &str) {
        self.accepted_ms.remove(key);
    }

    pub fn len(&self) -> usize {
        self.accepted_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted_ms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_what_it_accepted_within_the_ttl() {
        let mut r = RecentIds::new(10);
        assert!(!r.knows("s:a", 0, 100));
        r.remember("s:a", 1000);
        assert!(r.knows("s:a", 1000, 100));
        assert!(r.knows("s:a", 1099, 100));
        assert!(!r.knows("s:a", 1100, 100), "an id older than the TTL is forgotten");
        assert!(!r.knows("s:b", 1000, 100));
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut r = RecentIds::new(3);
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            r.remember(k, i as i64);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.knows("a", 4, 100));
        assert!(r.knows("b", 4, 100) && r.knows("d", 4, 100));
    }

    #[test]
    fn forgetting_one_key_keeps_the_others() {
        let mut r = RecentIds::new(3);
        r.remember("a", 0);
        r.remember("b", 0);
        r.forget("a");
        assert!(!r.knows("a", 1, 100));
        assert!(r.knows("b", 1, 100));
    }

    #[test]
    fn remembering_again_keeps_the_newest_time() {
        let mut r = RecentIds::new(2);
        r.remember("a", 0);
        r.remember("a", 50);
        r.remember("b", 60);
        // The first "a" entry is evicted from the order, but "a" itself was renewed.
        assert!(r.knows("a", 100, 100));
        assert_eq!(r.len(), 2);
    }
}

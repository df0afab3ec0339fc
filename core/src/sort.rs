//! A small sort for the short lists the worker orders off the hot path: a page of events, the
//! held events due for resumption, a shard's partitions.
//!
//! The standard library's sorts are fast and large: each element type and comparison
//! instantiates its own copy of the driftsort or ipnsort machinery, 5 to 8 KB of wasm apiece,
//! and the worker had eight of them. This heapsort is a few hundred bytes per use, `O(n log n)`
//! in every case, and allocates nothing. It is not stable: callers order by keys that tell
//! every two elements apart (a unit test checks each against the standard library's sort).
//! Twilio's form parameters keep the standard library's sort: natively, its speed is measured.

use std::cmp::Ordering;

/// Sorts `v` in ascending order of `cmp`.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let len = v.len();
    // A max-heap of the whole slice, then its largest moved behind the heap one at a time.
    for node in (0..len / 2).rev() {
        sift_down(v, node, len, &mut cmp);
    }
    for end in (1..len).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &mut cmp);
    }
}

/// Sorts `v` in ascending order of `key`.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Moves `v[node]` down the heap `v[..end]` until neither child is greater.
fn sift_down<T>(v: &mut [T], mut node: usize, end: usize, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    loop {
        let mut child = 2 * node + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && cmp(&v[child], &v[child + 1]) == Ordering::Less {
            child += 1;
        }
        if cmp(&v[node], &v[child]) != Ordering::Less {
            return;
        }
        v.swap(node, child);
        node = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases() {
        for v in [vec![], vec![1], vec![2, 1], vec![1, 2], vec![3, 1, 2], vec![1, 1, 1], vec![5, 4, 3, 2, 1, 0]] {
            let mut ours = v.clone();
            sort_by(&mut ours, i32::cmp);
            let mut std = v;
            std.sort();
            assert_eq!(ours, std);
        }
    }

    proptest::proptest! {
        /// The same order as the standard library's sort, duplicates included, ascending and
        /// descending, by key and by comparison.
        #[test]
        fn agrees_with_the_standard_library(v in proptest::collection::vec((0u8..8, proptest::prelude::any::<u16>()), 0..300)) {
            let mut ours = v.clone();
            sort_by(&mut ours, |a, b| a.cmp(b));
            let mut std = v.clone();
            std.sort();
            proptest::prop_assert_eq!(&ours, &std);

            let mut ours = v.clone();
            sort_by(&mut ours, |a, b| b.cmp(a));
            std.reverse();
            proptest::prop_assert_eq!(&ours, &std);

            // By a key with many ties: the keys come out in order (which tied element comes
            // first is not promised).
            let mut ours = v.clone();
            sort_by_key(&mut ours, |p| p.0);
            proptest::prop_assert!(ours.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut counted = ours.clone();
            counted.sort();
            let mut original = v;
            original.sort();
            proptest::prop_assert_eq!(counted, original, "the same elements");
        }
    }
}

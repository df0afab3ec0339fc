//! Time partitions of the idempotency store, and when each can be dropped.
//!
//! Cloudflare bills a Durable Object's SQLite storage per row written, and counts every index
//! entry and every deleted row as one. Expiring events row by row (and keeping the expiry index
//! that finds them) would cost as much again as writing them. So each shard writes an event's
//! row into the table of the current time partition and drops whole tables once everything in
//! them has outlived the TTL and the capture retention: dropping a table is not billed per row.
//!
//! Expiry itself stays exact: readers check a row's own expiry times; the partitions only decide
//! when the bytes go. A row written again in a later partition moves to that partition, so a
//! partition never holds a row whose last change is after the partition's end.

/// Partitions per lifetime: more means rows linger less past their expiry, fewer means fewer
/// tables to look a key up in.
const PER_LIFETIME: i64 = 4;
const MIN_WIDTH_MS: i64 = 1_000;
const MAX_WIDTH_MS: i64 = 7 * 24 * 3600 * 1000;

/// The partitioning of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    /// How long a row must be kept after its last change: the longer of the idempotency TTL and
    /// the capture retention.
    pub lifetime_ms: i64,
    pub width_ms: i64,
}

impl Partitions {
    pub fn new(ttl_ms: i64, retention_ms: i64) -> Partitions {
        let lifetime_ms = ttl_ms.max(retention_ms).max(0);
        let width_ms = (lifetime_ms / PER_LIFETIME).clamp(MIN_WIDTH_MS, MAX_WIDTH_MS);
        Partitions { lifetime_ms, width_ms }
    }

    /// The partition a write at `now_ms` goes to.
    pub fn at(self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.width_ms)
    }

    /// When partition `p` may be dropped: its last possible write plus the lifetime.
    pub fn drop_at(self, p: i64) -> i64 {
        (p + 1).saturating_mul(self.width_ms).saturating_add(self.lifetime_ms)
    }

    /// The name of partition `p`'s table of events (`p` is never negative for real clocks).
    pub fn events_table(p: i64) -> String {
        format!("events_{p}")
    }

    /// The name of partition `p`'s table of entity versions.
    pub fn versions_table(p: i64) -> String {
        format!("versions_{p}")
    }

    /// The partition a table name belongs to, for tables this module named.
    pub fn of_table(name: &str) -> Option<i64> {
        name.strip_prefix("events_")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    #[test]
    fn widths_follow_the_lifetime_within_bounds() {
        assert_eq!(Partitions::new(30 * DAY, 30 * DAY).width_ms, 7 * DAY, "capped at a week");
        assert_eq!(Partitions::new(DAY, 4 * DAY).width_ms, DAY, "the longer of the two counts");
        assert_eq!(Partitions::new(3_000, 3_000).width_ms, 1_000, "at least a second");
        assert_eq!(Partitions::new(8_000, 0).width_ms, 2_000);
    }

    #[test]
    fn nothing_is_dropped_before_its_last_write_has_lived_its_lifetime() {
        for (ttl, retention) in [(30 * DAY, 30 * DAY), (3_000, 3_000), (5_000, 9_000), (DAY, 0)] {
            let p = Partitions::new(ttl, retention);
            for now in [0, 1, 999, 1_000, 123_456_789, 1_764_000_000_000] {
                let part = p.at(now);
                // The last instant that writes into this partition.
                let last_write = (part + 1) * p.width_ms - 1;
                assert!(p.at(last_write) == part && p.at(last_write + 1) == part + 1);
                assert!(p.drop_at(part) > last_write + ttl.max(retention) - 1, "{ttl} {retention} {now}");
                // And it is dropped at most one width past that.
                assert!(p.drop_at(part) - now <= p.width_ms + p.lifetime_ms);
            }
        }
    }

    #[test]
    fn table_names_round_trip() {
        assert_eq!(Partitions::of_table(&Partitions::events_table(20_421)), Some(20_421));
        assert_eq!(Partitions::of_table("versions_3"), None);
        assert_eq!(Partitions::of_table("events_x"), None);
        assert_eq!(Partitions::of_table("records"), None);
    }
}

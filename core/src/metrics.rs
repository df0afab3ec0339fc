//! Counters per source, event type and outcome, and delivery latency per source, rendered as
//! Prometheus text or JSON.
//!
//! Receivers and consumers add to a [`Metrics`] in memory and flush it to the control Durable
//! Object now and then (never once per request: that would put a Durable Object round trip on the
//! ingest path); the object merges what it gets. Event types come only from verified events, and
//! the number of distinct series is capped, so a sender cannot blow up the store with made-up
//! types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happened to an event (or a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
    Delivered,
    Retried,
    DeadLettered,
    Filtered,
    Paused,
    Dropped,
    Stale,
    /// Held back by a rate limit or an open circuit (no attempt used).
    Deferred,
}

crate::names::by_name!(Outcome: Accepted, Duplicate, Rejected, Delivered, Retried, DeadLettered, Filtered, Paused,
    Dropped, Stale, Deferred);

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Filtered => "filtered",
            Outcome::Paused => "paused",
            Outcome::Dropped => "dropped",
            Outcome::Stale => "stale",
            Outcome::Deferred => "deferred",
        }
    }
}

/// One counter series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Series {
    pub source: String,
    /// The event type, or empty when there is none (rejected requests have none).
    #[serde(rename = "type")]
    pub event_type: String,
    pub outcome: Outcome,
    /// For `rejected`: the error code (`invalid_signature`); empty otherwise.
    pub reason: String,
}

/// Upper bounds of the latency histogram's buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// Most distinct counter series kept; more are folded into type `_other`.
pub const MAX_SERIES: usize = 5_000;

/// A delivery latency histogram (counts per bucket, not cumulative; the last is +Inf).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum_ms: u64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, ms: u64) {
        if self.buckets.len() != LATENCY_BUCKETS_MS.len() + 1 {
            self.buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        }
        let i = LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i] += 1;
        self.sum_ms += ms;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_ms += other.sum_ms;
        self.count += other.count;
    }
}

/// Counters and latency histograms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(with = "series_list")]
    pub counters: BTreeMap<Series, u64>,
    pub latency: BTreeMap<String, Histogram>,
}

impl Metrics {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.latency.is_empty()
    }

    /// Counts `n` events of `source` and `event_type` with `outcome` (and `reason`, for rejections).
    pub fn count(&mut self, source: &str, event_type: Option<&str>, outcome: Outcome, reason: &str, n: u64) {
        let mut series = Series {
            source: source.to_owned(),
            event_type: event_type.unwrap_or_default().to_owned(),
            outcome,
            reason: reason.to_owned(),
        };
        if !self.counters.contains_key(&series) && self.counters.len() >= MAX_SERIES {
            series.event_type = "_other".into();
        }
        *self.counters.entry(series).or_default() += n;
    }

    /// Records one delivery's latency.
    pub fn observe_latency(&mut self, source: &str, ms: u64) {
        self.latency.entry(source.to_owned()).or_default().observe(ms);
    }

    /// Adds `other` into this.
    pub fn merge(&mut self, other: &Metrics) {
        for (series, n) in &other.counters {
            self.count(
                &series.source,
                Some(&series.event_type).filter(|t| !t.is_empty()).map(String::as_str),
                series.outcome,
                &series.reason,
                *n,
            );
        }
        for (source, histogram) in &other.latency {
            self.latency.entry(source.clone()).or_default().merge(histogram);
        }
    }

    /// The total of one outcome over every series.
    pub fn total(&self, outcome: Outcome) -> u64 {
        self.counters.iter().filter(|(s, _)| s.outcome == outcome).map(|(_, n)| n).sum()
    }

    /// The Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP edgehook_events_total Events by source, type and outcome (rejections by reason).\n");
        out.push_str("# TYPE edgehook_events_total counter\n");
        for (s, n) in &self.counters {
            out.push_str(&format!(
                "edgehook_events_total{{source=\"{}\",type=\"{}\",outcome=\"{}\",reason=\"{}\"}} {n}\n",
                escape(&s.source),
                escape(&s.event_type),
                s.outcome.as_str(),
                escape(&s.reason)
            ));
        }
        out.push_str("# HELP edgehook_delivery_latency_seconds Time from sending a delivery to its answer.\n");
        out.push_str("# TYPE edgehook_delivery_latency_seconds histogram\n");
        for (source, h) in &self.latency {
            let source = escape(source);
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
                cumulative += h.buckets.get(i).copied().unwrap_or(0);
                out.push_str(&format!(
                    "edgehook_delivery_latency_seconds_bucket{{source=\"{source}\",le=\"{}\"}} {cumulative}\n",
                    seconds(*bound)
                ));
            }
            out.push_str(&format!(
                "edgehook_delivery_latency_seconds_bucket{{source=\"{source}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!(
                "edgehook_delivery_latency_seconds_sum{{source=\"{source}\"}} {}\n",
                seconds(h.sum_ms)
            ));
            out.push_str(&format!("edgehook_delivery_latency_seconds_count{{source=\"{source}\"}} {}\n", h.count));
        }
        out
    }
}

/// Milliseconds as seconds in the shortest decimal (`50` -> `0.05`, `1000` -> `1`), with integer
/// arithmetic: formatting an `f64` would link the float formatter (14 KB of wasm) for this alone.
fn seconds(ms: u64) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:03}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Label values escaped as the exposition format wants (`\`, `"`, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counters travel as a list (JSON object keys must be strings).
mod series_list {
    use super::Series;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    /// A series and its value, as one flat object. (Spelled out rather than `#[serde(flatten)]`:
    /// flattening buffers every field through serde's generic content type, which costs the
    /// wasm bundle tens of KB.)
    #[derive(Serialize, Deserialize)]
    struct Entry {
        source: String,
        #[serde(rename = "type")]
        event_type: String,
        outcome: super::Outcome,
        reason: String,
        value: u64,
    }

    pub fn serialize<S: Serializer>(map: &BTreeMap<Series, u64>, s: S) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(series, value)| Entry {
                source: series.source.clone(),
                event_type: series.event_type.clone(),
                outcome: series.outcome,
                reason: series.reason.clone(),
                value: *value,
            })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Series, u64>, D::Error> {
        // Inserted one by one: collecting into a map sorts its input first, with a copy of the
        // standard library's stable sort for this type alone (see `crate::sort`).
        let mut map = BTreeMap::new();
        for e in Vec::<Entry>::deserialize(d)? {
            let series = Series { source: e.source, event_type: e.event_type, outcome: e.outcome, reason: e.reason };
            map.insert(series, e.value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_render() {
        let mut a = Metrics::default();
        a.count("stripe", Some("invoice.paid"), Outcome::Accepted, "", 2);
        a.count("stripe", None, Outcome::Rejected, "invalid_signature", 1);
        a.observe_latency("stripe", 40);
        a.observe_latency("stripe", 700);
        let mut b = Metrics::default();
        b.count("stripe", Some("invoice.paid"), Outcome::Accepted, "", 3);
        b.observe_latency("stripe", 90_000);
        a.merge(&b);
        assert_eq!(a.total(Outcome::Accepted), 5);
        let text = a.prometheus();
        assert!(
            text.contains(
                r#"edgehook_events_total{source="stripe",type="invoice.paid",outcome="accepted",reason=""} 5"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"edgehook_events_total{source="stripe",type="",outcome="rejected",reason="invalid_signature"} 1"#
        ));
        assert!(text.contains(r#"edgehook_delivery_latency_seconds_bucket{source="stripe",le="0.05"} 1"#));
        for ms in [0, 1, 50, 100, 999, 1000, 2500, 60_000, 90_740, 123_456_789] {
            assert_eq!(seconds(ms), (ms as f64 / 1000.0).to_string(), "{ms}");
        }
        assert!(text.contains(r#"edgehook_delivery_latency_seconds_bucket{source="stripe",le="1"} 2"#));
        assert!(text.contains(r#"edgehook_delivery_latency_seconds_bucket{source="stripe",le="+Inf"} 3"#));
        assert!(text.contains(r#"edgehook_delivery_latency_seconds_sum{source="stripe"} 90.74"#));
    }

    #[test]
    fn json_round_trip() {
        let mut m = Metrics::default();
        m.count("github", Some("push"), Outcome::Delivered, "", 7);
        m.observe_latency("github", 120);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""outcome":"delivered""#), "{json}");
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
    }

    #[test]
    fn series_are_capped() {
        let mut m = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            m.count("s", Some(&format!("t{i}")), Outcome::Accepted, "", 1);
        }
        assert_eq!(m.counters.len(), MAX_SERIES + 1);
        let other = Series {
            source: "s".into(),
            event_type: "_other".into(),
            outcome: Outcome::Accepted,
            reason: String::new(),
        };
        assert_eq!(m.counters[&other], 10);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

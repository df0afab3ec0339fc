//! Kill switches: per source and event-type pattern, `on`, `paused` or `dropped`.
//!
//! - `on`: delivered as usual (the default, and what setting a flag back to `on` means);
//! - `paused`: held durably (in the capture store) and delivered in arrival order once the flag
//!   is `on` again; a paused event uses no attempt and is never dead-lettered while paused;
//! - `dropped`: acknowledged and recorded as `dropped`, never delivered.
//!
//! When several flags of a source match an event type, the most specific wins: the longest
//! pattern (`invoice.paid` over `invoice.*` over `*`).

use crate::pattern::Pattern;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On,
    Paused,
    Dropped,
}

crate::names::by_name!(Mode: On, Paused, Dropped);

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        crate::names::Named::from_name(text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Paused => "paused",
            Mode::Dropped => "dropped",
        }
    }
}

/// One kill switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub source: String,
    pub pattern: String,
    pub mode: Mode,
    /// When it was last set (Unix ms).
    pub updated_ms: i64,
}

/// Every kill switch in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags(pub Vec<Flag>);

impl Flags {
    /// The mode for an event of `source` with `event_type`: the most specific matching flag's,
    /// else `on`.
    pub fn mode_for(&self, source: &str, event_type: Option<&str>) -> Mode {
        self.0
            .iter()
            .filter(|f| f.source == source)
            .filter(|f| Pattern::parse(&f.pattern).is_some_and(|p| p.matches(event_type)))
            .max_by_key(|f| (f.pattern.len(), f.updated_ms))
            .map_or(Mode::On, |f| f.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(source: &str, pattern: &str, mode: Mode, updated_ms: i64) -> Flag {
        Flag { source: source.into(), pattern: pattern.into(), mode, updated_ms }
    }

    #[test]
    fn most_specific_pattern_wins() {
        let flags = Flags(vec![
            flag("stripe", "*", Mode::Paused, 1),
            flag("stripe", "invoice.*", Mode::Dropped, 2),
            flag("stripe", "invoice.paid", Mode::On, 3),
            flag("github", "*", Mode::Dropped, 4),
        ]);
        assert_eq!(flags.mode_for("stripe", Some("invoice.paid")), Mode::On);
        assert_eq!(flags.mode_for("stripe", Some("invoice.created")), Mode::Dropped);
        assert_eq!(flags.mode_for("stripe", Some("charge.failed")), Mode::Paused);
        assert_eq!(flags.mode_for("stripe", None), Mode::Paused);
        assert_eq!(flags.mode_for("github", Some("push")), Mode::Dropped);
        assert_eq!(flags.mode_for("shopify", Some("orders/create")), Mode::On);
    }

    #[test]
    fn modes_round_trip() {
        for m in [Mode::On, Mode::Paused, Mode::Dropped] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse("off"), None);
    }
}

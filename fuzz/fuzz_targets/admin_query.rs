#![no_main]
//! Fuzzes the admin API's request parsing: the query string of `GET /admin/events` (and
//! `POST /admin/events/replay`) with its cursor, and the paths of events, dead letters and
//! kill switches. Input: `<path>\0<query>`.

use edgehook_core::admin;
use edgehook_core::capture::{Cursor, EventQuery, MAX_PAGE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('\u{0}').unwrap_or(("", &text));
    let pairs = admin::query_pairs(query);
    if let Ok(q) = EventQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        assert!((1..=MAX_PAGE).contains(&q.limit), "limit out of range: {}", q.limit);
        if let Some(cursor) = q.before {
            // What the listing hands out must read back as the same position.
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }
    for replay in [false, true] {
        if let Some((source, id)) = admin::event_path(path, replay) {
            assert!(!source.is_empty() && !id.is_empty());
        }
    }
    let _ = admin::dead_letter_path(path, "_poison");
    if let Ok((source, pattern)) = admin::flag_path(path) {
        assert!(!source.is_empty() && !pattern.as_str().is_empty());
    }
});

#![no_main]
//! Fuzzes ordering's reading of events: JSON pointers (entity and version) into arbitrary
//! bodies, header versions with RFC 3339 parsing, and version comparison; and checks that
//! `json_path::scalars` finds exactly what parsing into a `serde_json::Value` finds.
//! Input: `<entity pointer>\0<version pointer or header>\0<header value>\0<body>`.

use edgehook_core::headers::HeaderList;
use edgehook_core::ordering::{rfc3339_ms, Locator, Ordering, StalePolicy};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let text = |part: Option<&[u8]>| String::from_utf8_lossy(part.unwrap_or_default()).into_owned();
    let (entity, version, header) = (text(parts.next()), text(parts.next()), text(parts.next()));
    let body = parts.next().unwrap_or_default();
    let by_value = serde_json::from_slice::<serde_json::Value>(body).ok().map(|value| {
        [entity.as_str(), version.as_str()].map(|p| match value.pointer(p) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    });
    assert_eq!(edgehook_core::json_path::scalars(body, [&entity, &version]), by_value);
    let _ = rfc3339_ms(&header);
    let Some(version) = Locator::parse(&version) else { return };
    let header_name = match &version {
        Locator::Header(name) => name.clone(),
        Locator::Pointer(_) => "x-version".to_owned(),
    };
    let ordering = Ordering { entity, version, stale: StalePolicy::Skip };
    let headers = HeaderList::from([(header_name.as_str(), header.as_str())]);
    let now_ms = 1_700_000_000_000;
    let Some(a) = ordering.position(&headers, body, now_ms) else { return };
    assert!(!a.entity.is_empty() && a.entity.len() <= 255);
    // Against another event's version (the header's text): never older both ways.
    let Some(b) = Ordering { entity: ordering.entity.clone(), version: Locator::Header(header_name), stale: StalePolicy::Skip }
        .position(&headers, body, now_ms)
    else {
        return;
    };
    assert!(!(a.version.is_older_than(&b.version) && b.version.is_older_than(&a.version)));
    assert!(!a.version.is_older_than(&a.version));
});

#![no_main]
//! Fuzzes the scan that reads Linear's `webhookTimestamp` without parsing the body: it never
//! panics, and whenever `serde_json` reads the body as an object, the scan never contradicts it
//! (what it finds is the parser's value; what it calls absent, the parser does not have).

use edgehook_core::json_scan::{top_level_member, Member};

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let member = top_level_member(body, "webhookTimestamp");
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    match member {
        Member::Found(raw) => {
            let value: serde_json::Value = serde_json::from_slice(raw).expect("a found value parses");
            assert_eq!(map.get("webhookTimestamp"), Some(&value));
        }
        Member::Absent => assert!(!map.contains_key("webhookTimestamp")),
        Member::Unsure => {}
    }
});

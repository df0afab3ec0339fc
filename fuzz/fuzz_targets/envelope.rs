#![no_main]
//! Fuzzes the queue envelope decoder (poison messages) and `Retry-After` parsing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgehook_core::envelope::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = edgehook_core::retry::parse_retry_after(text, 1_700_000_000);
    }
});

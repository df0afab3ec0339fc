#![no_main]
//! Fuzzes the configuration parser: `SOURCES` text and the secrets it names.

use edgehook_core::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (sources, secrets) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let config = Config::load(Some(sources), &|name: &str| {
        (name.starts_with("WEBHOOK_SECRET_") || name == "DESTINATION_SECRET").then(|| secrets.to_owned())
    });
    let _ = config.problems();
    for source in config.sources() {
        let _ = config.source(&source.name);
    }
});

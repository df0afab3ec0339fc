#![no_main]
//! Fuzzes the intercom signature parser, verifier and identifier.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(edgehook_core::providers::Provider::Intercom, data));

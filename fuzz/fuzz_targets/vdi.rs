//! Arbitrary bytes as a vdi image: header and table parsing and the streaming decoder must never
//! panic, never emit data outside the disk, and stay within their budget.
#![no_main]

#[path = "common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(&cdi_formats::vdi::SPEC, data));

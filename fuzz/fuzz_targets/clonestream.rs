//! Arbitrary bytes as a clone stream (what a cloner sends to the upload server): the header
//! check and the frame decoder must never panic and never write past the source's size.
#![no_main]

#[path = "common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(&cdi_formats::clonestream::SPEC, data));

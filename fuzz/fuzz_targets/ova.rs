//! Arbitrary bytes as the pieces of an OVA: tar headers (every 512-byte block), pax records and
//! the OVF descriptor's disk list must never panic.
#![no_main]

use cdi_formats::ova::{TarHeader, disk_files, pax_overrides};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for (i, block) in data.chunks(512).enumerate() {
        let _ = TarHeader::parse(block, i as u64 * 512);
    }
    let _ = pax_overrides(data);
    let _ = disk_files(data);
});

//! Arbitrary bytes as a qcow2 stream: header validation, the streaming converter (fed in
//! clusters, with a small budget) and compressed-cluster decoding must never panic, and never
//! emit data outside the virtual disk.
#![no_main]

use bytes::Bytes;
use cdi_formats::qcow2::{
    CompressedCluster, ConvertSink, Header, MemoryStash, Qcow2Error, StreamConverter, cluster_size_from_prefix,
    decompress_cluster,
};
use libfuzzer_sys::fuzz_target;

struct Check {
    virtual_size: u64,
}

impl ConvertSink for Check {
    type Error = Qcow2Error;
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), Qcow2Error> {
        assert!(guest + bytes.len() as u64 <= self.virtual_size, "data past the end of the disk");
        Ok(())
    }
    fn compressed(&mut self, c: CompressedCluster) -> Result<(), Qcow2Error> {
        assert!(c.guest_offset + c.guest_len as u64 <= self.virtual_size);
        let mut out = Vec::new();
        if decompress_cluster(&c, &mut out).is_ok() {
            assert_eq!(out.len(), c.cluster_size);
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(cs) = cluster_size_from_prefix(data) else { return };
    let cs = cs as usize;
    for image_len in [None, Some(data.len() as u64)] {
        let Ok(header) = Header::parse(&data[..data.len().min(cs)], image_len) else { continue };
        let mut sink = Check { virtual_size: header.virtual_size };
        let mut c = StreamConverter::new(header, image_len, MemoryStash::new(), 8 << 20);
        let mut ok = true;
        for chunk in data.chunks(cs) {
            if c.feed_cluster(Bytes::copy_from_slice(chunk), &mut sink).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            let _ = c.finish(&mut sink);
        }
    }
});

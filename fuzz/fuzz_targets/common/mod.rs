//! The harness every format's fuzz target shares: the decoder opened on the head, fed the
//! input in uneven pieces (with and without the image length known) with a small budget and
//! an in-memory stash; it must never panic, never write outside the disk, and every compressed
//! block it hands on must decode to its block size or fail cleanly.

use bytes::Bytes;
use cdi_formats::DETECT_LEN;
use cdi_formats::decoder::{
    CompressedBlock, DecoderSpec, MemoryStash, OpenContext, Output, OutputClosed,
    decompress_block_into,
};

struct Check {
    size: Option<u64>,
}

impl Check {
    fn within(&self, end: u64) {
        if let Some(size) = self.size {
            assert!(end <= size, "output at {end} past the disk's {size} bytes");
        }
    }
}

impl Output for Check {
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        self.within(guest + bytes.len() as u64);
        Ok(())
    }
    fn zero(&mut self, guest: u64, len: u64) -> Result<(), OutputClosed> {
        self.within(guest + len);
        Ok(())
    }
    fn compressed(&mut self, b: CompressedBlock) -> Result<(), OutputClosed> {
        self.within(b.guest_offset + b.guest_len as u64);
        assert!(b.guest_len <= b.block_size);
        let mut out = vec![0u8; b.block_size];
        let _ = decompress_block_into(&b, &mut out);
        Ok(())
    }
    fn disk_size(&mut self, size: u64) -> Result<(), OutputClosed> {
        self.size = Some(size);
        Ok(())
    }
}

pub fn run(spec: &DecoderSpec, data: &[u8]) {
    let prefix = &data[..data.len().min(DETECT_LEN)];
    let Ok(want) = (spec.head_len)(prefix) else {
        return;
    };
    let head = &data[..data.len().min(want)];
    for (image_len, piece) in [(None, 4096 + 512), (Some(data.len() as u64), 65536)] {
        let ctx = OpenContext {
            image_len,
            stash: Box::new(MemoryStash::new()),
            budget: 8 << 20,
        };
        let Ok(mut d) = (spec.open)(head, ctx) else {
            continue;
        };
        let mut out = Check {
            size: d.virtual_size(),
        };
        let mut ok = true;
        for chunk in data.chunks(piece) {
            if d.feed(Bytes::copy_from_slice(chunk), &mut out).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            let _ = d.finish(&mut out);
        }
    }
}

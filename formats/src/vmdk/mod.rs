//! VMware vmdk, single-file variants: monolithicSparse (uncompressed grains placed by grain
//! tables) and streamOptimized (deflate-compressed grains behind markers), one pass each. The
//! embedded descriptor is parsed with limits; a descriptor that names other files (flat and
//! split variants, stand-alone descriptor files) or a parent (`parentCID`,
//! `parentFileNameHint`) is refused before anything is decoded.

mod descriptor;
mod error;
mod header;
pub mod limits;
mod sparse;
mod stream;
mod tables;

use flate2::{Decompress, FlushDecompress, Status};

use crate::decoder::router::NoOutput;
use crate::decoder::{CompressedBlock, DecodeError, Decoder, DecoderSpec, OpenContext};
use crate::detect::Format;

pub use descriptor::{Descriptor, Extent};
pub use error::VmdkError;
pub use header::{GD_AT_END, SparseHeader};

use header::{HEADER_LEN, SECTOR};
use limits::MAX_DESCRIPTOR_BYTES;

/// How the data path makes a vmdk decoder.
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::Vmdk,
    head_len,
    open,
};

const TEXT_DESCRIPTOR: &[u8] = b"# Disk DescriptorFile";

/// The header sector and the embedded descriptor; a stand-alone descriptor whole.
fn head_len(prefix: &[u8]) -> Result<usize, DecodeError> {
    if prefix.starts_with(TEXT_DESCRIPTOR) {
        return Ok(MAX_DESCRIPTOR_BYTES as usize);
    }
    match SparseHeader::parse(prefix) {
        Ok(h) => Ok((h.descriptor_end() as usize).max(HEADER_LEN)),
        // `open` reports what is wrong with it.
        Err(_) => Ok(HEADER_LEN),
    }
}

fn open(head: &[u8], ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    if head.starts_with(b"COWD") {
        return Err(VmdkError::Cowd.into());
    }
    if head.starts_with(TEXT_DESCRIPTOR) {
        return Err(refuse_descriptor_file(head).into());
    }
    let h = SparseHeader::parse(head)?;
    if h.descriptor_sectors == 0 {
        return Err(VmdkError::NoDescriptor.into());
    }
    {
        let (from, to) = (
            (h.descriptor_offset * SECTOR) as usize,
            h.descriptor_end() as usize,
        );
        let Some(text) = head.get(from..to) else {
            return Err(VmdkError::TruncatedHeader {
                needed: to,
                available: head.len(),
            }
            .into());
        };
        let d = Descriptor::parse(text)?;
        if d == Descriptor::default() {
            return Err(VmdkError::NoDescriptor.into());
        }
        check_embedded(&d, &h)?;
    }
    let mut none = NoOutput;
    match (h.markers(), h.compressed()) {
        (true, true) => Ok(Box::new(stream::StreamDecoder::new(h, ctx, &mut none)?)),
        (false, false) if h.gd_offset == GD_AT_END => Err(VmdkError::MalformedHeader(
            "the grain directory is at the end but the image has no markers".into(),
        )
        .into()),
        (false, false) => Ok(Box::new(sparse::SparseDecoder::new(h, ctx, &mut none)?)),
        (false, true) => {
            Err(VmdkError::UnsupportedVariant("compressed grains without grain markers").into())
        }
        (true, false) => Err(VmdkError::UnsupportedVariant("markers without compression").into()),
    }
}

/// A stand-alone descriptor always keeps the disk elsewhere: say where, or that it has a
/// parent.
fn refuse_descriptor_file(head: &[u8]) -> VmdkError {
    let d = match Descriptor::parse(head) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if let Err(e) = d.check_no_parent() {
        return e;
    }
    if d.extents.iter().all(|e| e.file.is_none()) {
        return VmdkError::UnsupportedVariant("a descriptor file without any data file");
    }
    VmdkError::OtherFiles {
        create_type: d.create_type().to_string(),
        files: d.files(),
    }
}

/// The descriptor inside a sparse extent must describe just this file, with no parent.
fn check_embedded(d: &Descriptor, h: &SparseHeader) -> Result<(), VmdkError> {
    d.check_no_parent()?;
    let single_sparse = d.extents.len() == 1 && d.extents[0].kind == "SPARSE";
    if !single_sparse {
        return Err(VmdkError::OtherFiles {
            create_type: d.create_type().to_string(),
            files: d.files(),
        });
    }
    if let Some(t) = &d.create_type
        && !t.eq_ignore_ascii_case("monolithicSparse")
        && !t.eq_ignore_ascii_case("streamOptimized")
    {
        return Err(VmdkError::UnsupportedCreateType(t.clone()));
    }
    if d.extents[0].sectors != h.capacity {
        return Err(VmdkError::ExtentSize {
            extent: d.extents[0].sectors,
            capacity: h.capacity,
        });
    }
    Ok(())
}

/// Decodes a zlib-compressed grain into `out` (one grain long). The stream must end, having
/// produced the whole grain or exactly the disk's last bytes.
pub(crate) fn inflate_grain(block: &CompressedBlock, out: &mut [u8]) -> Result<(), VmdkError> {
    let guest = block.guest_offset;
    let mut d = Decompress::new(true);
    let status = d
        .decompress(&block.data, out, FlushDecompress::Finish)
        .map_err(|e| VmdkError::GrainCorrupt {
            guest,
            reason: e.to_string(),
        })?;
    let got = d.total_out() as usize;
    let length_error = |got| VmdkError::GrainLength {
        guest,
        got,
        want: block.block_size,
    };
    match status {
        Status::StreamEnd if got == block.block_size || got == block.guest_len => Ok(()),
        Status::StreamEnd => Err(length_error(got)),
        // The output is full and the stream wants more: longer than a grain.
        _ if got == out.len() => Err(length_error(got + 1)),
        _ => Err(VmdkError::GrainCorrupt {
            guest,
            reason: "the compressed stream ends early".into(),
        }),
    }
}

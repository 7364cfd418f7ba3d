//! Microsoft vhd ("vpc"): fixed disks (the raw disk followed by a footer) and dynamic disks
//! (a footer copy, a dynamic header, the block allocation table, and blocks each behind a
//! sector bitmap). Differencing disks are refused.
//!
//! A fixed disk has nothing at its start to recognise it by: with random access its footer is
//! read first ([`open_fixed`]); over a stream the data path copies it as raw and checks the
//! last sector when the stream ends ([`fixed_footer`]), dropping the footer.

mod dynamic;
mod error;
mod footer;
pub mod limits;

use crate::decoder::router::{Kind, NoOutput, Router};
use crate::decoder::{DecodeError, Decoder, DecoderSpec, DecoderStats, OpenContext, Output};
use crate::detect::Format;
use crate::fields::be_u64;

pub use error::VhdError;
pub use footer::{DiskType, DynamicHeader, Footer, fixed_footer};

use footer::{FOOTER_LEN, HEADER_LEN};
use limits::MAX_HEADER_OFFSET;

/// How the data path makes a decoder for a vhd with a footer copy at its start (dynamic).
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::Vhd,
    head_len,
    open,
};

/// The footer copy and the dynamic header it points to.
fn head_len(prefix: &[u8]) -> Result<usize, DecodeError> {
    if prefix.len() < 24 {
        return Ok(FOOTER_LEN);
    }
    let header = be_u64(prefix, 16);
    Ok(if header <= MAX_HEADER_OFFSET {
        (header as usize + HEADER_LEN).max(FOOTER_LEN)
    } else {
        FOOTER_LEN
    })
}

fn open(head: &[u8], ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    let footer = Footer::parse(head)?;
    match footer.disk_type {
        DiskType::Dynamic => {}
        DiskType::Fixed => {
            return Err(VhdError::MalformedHeader(
                "a fixed-disk footer at the start of the file (it belongs at the end)".into(),
            )
            .into());
        }
        DiskType::Differencing => {
            let parent = head
                .get(footer.data_offset as usize..)
                .map(footer::parent_name)
                .unwrap_or_default();
            return Err(VhdError::Differencing { parent }.into());
        }
    }
    if footer.data_offset < FOOTER_LEN as u64 || footer.data_offset > MAX_HEADER_OFFSET {
        return Err(VhdError::MalformedHeader(format!(
            "the dynamic header offset {:#x} is outside {FOOTER_LEN:#x}..={MAX_HEADER_OFFSET:#x}",
            footer.data_offset
        ))
        .into());
    }
    let at = footer.data_offset as usize;
    let header = DynamicHeader::parse(head.get(at..).unwrap_or_default())?;
    Ok(Box::new(dynamic::DynamicDecoder::new(
        footer,
        header,
        ctx,
        &mut NoOutput,
    )?))
}

/// Makes the decoder for a fixed vhd whose last sector, `tail`, was read first from a
/// random-access source of `image_len` bytes.
pub fn open_fixed(
    tail: &[u8],
    image_len: u64,
    ctx: OpenContext,
) -> Result<Box<dyn Decoder>, DecodeError> {
    let size = fixed_footer(tail, image_len)?.ok_or(VhdError::BadCookie {
        what: "footer",
        expected: "conectix",
    })?;
    let mut router = Router::new("vhd", Some(image_len), ctx.stash, ctx.budget);
    router.map(size, FOOTER_LEN as u64, Kind::Skip, "footer", &mut NoOutput)?;
    router.map(0, size, Kind::Data { guest: 0 }, "disk", &mut NoOutput)?;
    router.tables_complete();
    Ok(Box::new(FixedDecoder { size, router }))
}

/// A fixed vhd: the disk, then the footer.
#[derive(Debug)]
struct FixedDecoder {
    size: u64,
    router: Router<Box<dyn crate::decoder::Stash + Send>>,
}

impl Decoder for FixedDecoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn feed(&mut self, bytes: bytes::Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        self.router.begin(bytes);
        while self.router.next(out)?.is_some() {}
        Ok(())
    }

    fn finish(&mut self, _out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        self.router.finish()?;
        Ok(self.router.stats())
    }
}

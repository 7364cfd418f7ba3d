//! From the transferred bytes to raw image writes: peel compression layers (found by magic,
//! repeatedly), then route the image by its format ([`table`]): raw bytes pass straight through,
//! every other format goes through its decoder ([`driver`]), an OVA's one disk is found and
//! routed again ([`ova`]).

mod channel_reader;
mod driver;
mod input;
mod layers;
mod ova;
mod raw;
mod stash;
mod table;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use cdi_formats::decoder::DecoderStats;
use cdi_formats::qcow2::ConverterStats;
use cdi_formats::{DETECT_LEN, Format, detect};
use crossbeam_channel::Sender;

use crate::error::Error;
use crate::sink::writer::WriteOp;
use crate::source::ReadAt;

pub(crate) use channel_reader::{ChannelReader, Chunk};
use input::Input;
pub use layers::MAX_LAYERS;
pub(crate) use layers::peel;
use table::Route;

/// What the image format is, when the caller knows better than the magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    /// Detect compression layers and the image format from magic bytes.
    #[default]
    Auto,
    /// Write the bytes exactly as received: no decompression, no conversion.
    Raw,
    /// Peel compression, then require qcow2.
    Qcow2,
    /// cdi-rs's clone stream (`cdi_formats::clonestream`), as `cdi-cloner` sends it: no
    /// compression, never detected, only taken when the caller says so.
    CloneStream,
}

/// Settings the decoder needs from the pipeline.
pub(crate) struct DecodeConfig {
    pub format: FormatChoice,
    /// Largest image the target holds.
    pub capacity: Option<u64>,
    pub source_len: Option<u64>,
    pub random_access: Option<Arc<dyn ReadAt>>,
    pub memory_limit: usize,
    pub spill_dir: PathBuf,
    pub threads: usize,
}

/// An image read straight from the source (no compression around it): its length and random
/// access, when the source has them, and where it starts in the source.
#[derive(Clone)]
pub(crate) struct Direct {
    pub len: Option<u64>,
    pub random_access: Option<Arc<dyn ReadAt>>,
    pub base: u64,
}

/// What the decoder found and produced.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Compression layers, outermost first.
    pub layers: Vec<Format>,
    /// The image format (for an OVA, the format of the disk inside; `archive` says so).
    pub image_format: Option<Format>,
    /// The archive the image came out of (an OVA), if any.
    pub archive: Option<Format>,
    /// Size of the raw image (the disk's virtual size, or the raw stream's length).
    pub image_size: u64,
    /// What the format's decoder saw (not for raw images).
    pub decoder: Option<DecoderStats>,
    pub qcow2: Option<ConverterStats>,
    /// Bytes of not-yet-mapped image data written to the spill file.
    pub spilled_bytes: u64,
    /// Whether bytes that arrived before their tables were re-read from the source instead of
    /// kept.
    pub used_random_access: bool,
}

/// Runs the decoder over `input`, sending writes to `out`.
pub(crate) fn decode(
    mut input: ChannelReader,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
) -> Result<DecodeReport, Error> {
    let mut report = DecodeReport::default();
    let head = input.peek(DETECT_LEN).map_err(Error::Source)?;
    let first = match cfg.format {
        FormatChoice::Raw => Format::Raw,
        FormatChoice::CloneStream => Format::CloneStream,
        FormatChoice::Auto | FormatChoice::Qcow2 => detect(head),
    };
    if !first.is_compression() {
        // The stream is the image itself: chunks pass through without a copy.
        let direct = Direct {
            len: cfg.source_len,
            random_access: cfg.random_access.clone(),
            base: 0,
        };
        route(
            first,
            Input::Chunks(input),
            Some(&direct),
            cfg,
            out,
            &mut report,
        )?;
        return Ok(report);
    }
    let (format, reader, layers) = layers::peel(Box::new(input), cfg)?;
    report.layers = layers;
    route(format, Input::stream(reader), None, cfg, out, &mut report)?;
    Ok(report)
}

/// Decodes an image of `format` from `input`, by the format table.
fn route(
    format: Format,
    input: Input,
    direct: Option<&Direct>,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    report.image_format = Some(format);
    check_choice(cfg, format)?;
    match table::route(format) {
        Route::Raw => raw::run(input, direct, cfg, out, report),
        Route::Decoder(spec) => {
            let opener = driver::Opener {
                head_len: &spec.head_len,
                open: &spec.open,
            };
            driver::run(&opener, input, direct, cfg, out, report)
        }
        Route::Ova if report.archive.is_none() => {
            report.archive = Some(format);
            ova::run(input, direct, cfg, out, report)
        }
        Route::Ova => Err(Error::UnsupportedFormat {
            format: format.name(),
            message: "an OVA inside an OVA is not supported",
        }),
        Route::Refused(message) => Err(Error::UnsupportedFormat {
            format: format.name(),
            message,
        }),
    }
}

fn check_choice(cfg: &DecodeConfig, format: Format) -> Result<(), Error> {
    let required = match cfg.format {
        FormatChoice::Qcow2 => Format::Qcow2,
        FormatChoice::CloneStream => Format::CloneStream,
        FormatChoice::Auto | FormatChoice::Raw => return Ok(()),
    };
    if format != required {
        return Err(Error::FormatMismatch {
            what: "image",
            found: format.name(),
        });
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

//! From the transferred bytes to raw image writes: peel compression layers (found by magic,
//! repeatedly), then stream raw data through or convert qcow2 on the fly.

mod channel_reader;
mod layers;
mod qcow2;
mod raw;
mod stash;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use cdi_formats::qcow2::ConverterStats;
use cdi_formats::{DETECT_LEN, Format, detect};
use crossbeam_channel::Sender;

use crate::error::Error;
use crate::sink::writer::WriteOp;
use crate::source::ReadAt;

pub(crate) use channel_reader::{ChannelReader, Chunk};
pub use layers::MAX_LAYERS;
pub(crate) use layers::peel;

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

/// What the decoder found and produced.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Compression layers, outermost first.
    pub layers: Vec<Format>,
    pub image_format: Option<Format>,
    /// Size of the raw image (qcow2 virtual size, or the raw stream's length).
    pub image_size: u64,
    pub qcow2: Option<ConverterStats>,
    /// Bytes of not-yet-mapped qcow2 clusters written to the spill file.
    pub spilled_bytes: u64,
    /// Whether early qcow2 clusters were re-read from the source instead of kept.
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
    let first = if cfg.format == FormatChoice::Raw {
        Format::Raw
    } else {
        detect(head)
    };
    if !first.is_compression() {
        // The stream is the image itself: raw chunks pass through without a copy.
        report.image_format = Some(first);
        check_choice(cfg, first)?;
        match first {
            Format::Raw => {
                // A raw stream of announced length is the image itself: refuse it before any
                // byte is written when it cannot fit.
                if let (Some(len), Some(capacity)) = (cfg.source_len, cfg.capacity)
                    && len > capacity
                {
                    return Err(Error::TooLarge {
                        needed: len,
                        capacity,
                    });
                }
                report.image_size = raw::stream_chunks(input, cfg, out)?
            }
            Format::Qcow2 => qcow2::convert(qcow2::Input::Chunks(input), cfg, out, &mut report)?,
            other => {
                return Err(Error::UnsupportedFormat {
                    format: other.name(),
                });
            }
        }
        return Ok(report);
    }
    let (format, reader, layers) = layers::peel(Box::new(input), cfg)?;
    report.layers = layers;
    report.image_format = Some(format);
    check_choice(cfg, format)?;
    match format {
        Format::Qcow2 => qcow2::convert(qcow2::Input::stream(reader), cfg, out, &mut report)?,
        Format::Raw => report.image_size = raw::stream(reader, cfg, out, &report.layers)?,
        other => {
            return Err(Error::UnsupportedFormat {
                format: other.name(),
            });
        }
    }
    Ok(report)
}

fn check_choice(cfg: &DecodeConfig, format: Format) -> Result<(), Error> {
    if cfg.format == FormatChoice::Qcow2 && format != Format::Qcow2 {
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

//! Compression layers: detected by magic bytes and peeled off one by one, so a qcow2 inside xz or
//! a raw disk inside gzip is found wherever it sits.

use std::io::{Cursor, Read};

use cdi_formats::{DETECT_LEN, Format, detect};

use super::{DecodeConfig, read_full};
use crate::error::Error;

/// Compression layers unpacked at most. Real images have one; more is a decompression bomb or a
/// mistake.
pub const MAX_LAYERS: usize = 4;

type Stream = Box<dyn Read + Send>;

/// Peels compression until an image format shows; returns it, its reader and the layers.
pub(crate) fn peel(
    mut input: Stream,
    cfg: &DecodeConfig,
) -> Result<(Format, Stream, Vec<Format>), Error> {
    let mut layers = Vec::new();
    loop {
        let mut head = vec![0u8; DETECT_LEN];
        let n = read_full(&mut input, &mut head).map_err(|e| read_error(&layers, e))?;
        head.truncate(n);
        let format = detect(&head);
        let replay: Stream = Box::new(Cursor::new(head).chain(input));
        if !format.is_compression() {
            return Ok((format, replay, layers));
        }
        if layers.len() == MAX_LAYERS {
            return Err(Error::TooManyLayers(MAX_LAYERS));
        }
        layers.push(format);
        input = wrap(format, replay, cfg)?;
    }
}

/// Names the layer whose decoder failed, so corrupt input says where it broke.
pub(crate) fn read_error(layers: &[Format], e: std::io::Error) -> Error {
    match layers.last() {
        Some(f) if e.kind() != std::io::ErrorKind::BrokenPipe => Error::Decompress {
            layer: f.name(),
            source: e,
        },
        _ => Error::Source(e),
    }
}

fn wrap(format: Format, input: Stream, cfg: &DecodeConfig) -> Result<Stream, Error> {
    Ok(match format {
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Format::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(input).map_err(|e| Error::Decompress {
                layer: "zstd",
                source: e,
            })?;
            // Refuse frames whose window would need more memory than we allow.
            let log =
                (usize::BITS - 1 - (cfg.memory_limit / 2).max(1 << 20).leading_zeros()).min(31);
            d.window_log_max(log).map_err(|e| Error::Decompress {
                layer: "zstd",
                source: e,
            })?;
            Box::new(d)
        }
        Format::Xz => Box::new(ConcatenatedXz::new(input, cfg)?),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        other => unreachable!("{other} is not a compression format"),
    })
}

/// xz with every concatenated stream decoded (as `xz -d` does), each by liblzma's multi-threaded
/// decoder: multi-block streams decode on several threads, single-block ones on one. Both
/// memory limits keep a hostile header from exhausting memory.
struct ConcatenatedXz {
    decoder: Option<liblzma::bufread::XzDecoder<std::io::BufReader<Stream>>>,
    threads: u32,
    memory_limit: u64,
}

impl ConcatenatedXz {
    fn new(input: Stream, cfg: &DecodeConfig) -> Result<Self, Error> {
        let mut xz = ConcatenatedXz {
            decoder: None,
            threads: cfg.threads.clamp(1, 8) as u32,
            memory_limit: cfg.memory_limit as u64,
        };
        xz.decoder = Some(xz.start(std::io::BufReader::with_capacity(1 << 20, input))?);
        Ok(xz)
    }

    fn start(
        &self,
        input: std::io::BufReader<Stream>,
    ) -> Result<liblzma::bufread::XzDecoder<std::io::BufReader<Stream>>, Error> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(self.threads)
            .memlimit_threading(self.memory_limit * 3 / 8)
            .memlimit_stop(self.memory_limit)
            .decoder()
            .map_err(|e| Error::Decompress {
                layer: "xz",
                source: e.into(),
            })?;
        Ok(liblzma::bufread::XzDecoder::new_stream(input, stream))
    }
}

impl Read for ConcatenatedXz {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // End of one stream: skip stream padding (NUL bytes), then start the next, if any.
            let mut input = self.decoder.take().expect("present").into_inner();
            loop {
                let avail = input.fill_buf()?;
                if avail.is_empty() {
                    return Ok(0);
                }
                let zeros = avail.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                input.consume(zeros);
            }
            self.decoder = Some(self.start(input).map_err(std::io::Error::other)?);
        }
    }
}

//! OVA appliances: a tar whose first entry is the OVF descriptor. The descriptor must name
//! exactly one disk file (several are refused, listed); the tar is walked to that file's entry
//! and its bytes are routed like any image (compression peeled, format detected, decoded),
//! with the source's random access shifted to where the entry starts.

use std::io::Read;

use cdi_formats::decoder::DecodeError;
use cdi_formats::ova::{EntryKind, OvaError, TarHeader, disk_files, limits::*, pax_overrides};
use crossbeam_channel::Sender;

use super::input::Input;
use super::{DecodeConfig, DecodeReport, Direct, layers, read_full, route};
use crate::error::Error;
use crate::sink::writer::WriteOp;

const BLOCK: u64 = 512;

fn ova(e: OvaError) -> Error {
    Error::Image(DecodeError::Ova(e))
}

/// Reads tar headers and entry data in order, counting the offset.
struct Tar {
    inner: Box<dyn Read + Send>,
    offset: u64,
}

/// An entry: its name, size, and where its data starts in the archive.
struct Entry {
    name: String,
    size: u64,
    kind: EntryKind,
    data: u64,
}

impl Tar {
    fn read_block(&mut self) -> Result<Option<[u8; 512]>, Error> {
        let mut block = [0u8; 512];
        let n = read_full(self.inner.as_mut(), &mut block).map_err(Error::Source)?;
        self.offset += n as u64;
        match n {
            0 => Ok(None),
            512 => Ok(Some(block)),
            _ => Err(ova(OvaError::Truncated("a tar header".into()))),
        }
    }

    /// Reads `size` bytes of entry data (bounded by `limit`), then its padding.
    fn read_data(&mut self, size: u64, limit: u64, what: &'static str) -> Result<Vec<u8>, Error> {
        if size > limit {
            return Err(ova(OvaError::TooLarge {
                what,
                bytes: size,
                limit,
            }));
        }
        let mut data = vec![0u8; size as usize];
        let n = read_full(self.inner.as_mut(), &mut data).map_err(Error::Source)?;
        self.offset += n as u64;
        if n < data.len() {
            return Err(ova(OvaError::Truncated(what.into())));
        }
        self.skip(size.next_multiple_of(BLOCK) - size)?;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> Result<(), Error> {
        let copied = std::io::copy(&mut self.inner.as_mut().take(n), &mut std::io::sink())
            .map_err(Error::Source)?;
        self.offset += copied;
        if copied < n {
            return Err(ova(OvaError::Truncated("an entry".into())));
        }
        Ok(())
    }

    /// The next file or directory entry (pax and GNU long-name headers applied), or `None` at
    /// the end of the archive.
    fn next(&mut self) -> Result<Option<Entry>, Error> {
        let (mut name, mut size) = (None::<String>, None::<u64>);
        loop {
            let at = self.offset;
            let Some(block) = self.read_block()? else {
                return Ok(None);
            };
            let Some(h) = TarHeader::parse(&block, at).map_err(ova)? else {
                return Ok(None);
            };
            match h.kind {
                EntryKind::PaxLocal => {
                    let data = self.read_data(h.size, MAX_PAX_BYTES, "pax header")?;
                    let (path, len) = pax_overrides(&data).map_err(ova)?;
                    name = path.or(name);
                    size = len.or(size);
                }
                EntryKind::GnuLongName => {
                    let data = self.read_data(h.size, MAX_PAX_BYTES, "long name")?;
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                }
                EntryKind::PaxGlobal => self.skip(h.size.next_multiple_of(BLOCK))?,
                kind => {
                    return Ok(Some(Entry {
                        name: name.unwrap_or(h.name),
                        size: size.unwrap_or(h.size),
                        kind,
                        data: self.offset,
                    }));
                }
            }
        }
    }
}

/// An entry's data as a reader; ending early is an `UnexpectedEof` error.
struct EntryReader {
    tar: Tar,
    remaining: u64,
}

impl Read for EntryReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the OVA ends inside its disk entry",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn normalise(name: &str) -> &str {
    name.trim_start_matches("./")
}

/// Finds the OVA's one disk and routes it.
pub(crate) fn run(
    input: Input,
    direct: Option<&Direct>,
    cfg: &DecodeConfig,
    out: &Sender<WriteOp>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let mut tar = Tar {
        inner: input.into_reader(),
        offset: 0,
    };
    let descriptor = tar
        .next()?
        .filter(|e| e.kind == EntryKind::File && e.name.to_ascii_lowercase().ends_with(".ovf"))
        .ok_or_else(|| {
            ova(OvaError::MalformedOvf(
                "the first entry is not the .ovf descriptor".into(),
            ))
        })?;
    let xml = tar.read_data(descriptor.size, MAX_OVF_BYTES, "OVF descriptor")?;
    let disks = disk_files(&xml).map_err(ova)?;
    let disk = match disks.as_slice() {
        [] => return Err(ova(OvaError::NoDisk)),
        [one] => one.clone(),
        several => {
            let mut names: Vec<String> = several
                .iter()
                .take(MAX_LISTED_DISKS)
                .map(|d| format!("{d:?}"))
                .collect();
            if several.len() > MAX_LISTED_DISKS {
                names.push(format!("and {} more", several.len() - MAX_LISTED_DISKS));
            }
            return Err(ova(OvaError::SeveralDisks {
                count: several.len(),
                names: names.join(", "),
            }));
        }
    };
    let entry = loop {
        let Some(entry) = tar.next()? else {
            return Err(ova(OvaError::DiskNotFound(disk)));
        };
        if entry.kind == EntryKind::File && normalise(&entry.name) == normalise(&disk) {
            break entry;
        }
        tar.skip(entry.size.next_multiple_of(BLOCK))?;
    };
    tracing::debug!(disk = %entry.name, size = entry.size, "OVA disk found.");
    let reader = EntryReader {
        tar,
        remaining: entry.size,
    };
    let truncated = |e: Error| match e {
        Error::Source(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ova(OvaError::Truncated(entry.name.clone()))
        }
        e => e,
    };
    let (format, reader, layers) = layers::peel(Box::new(reader), cfg).map_err(truncated)?;
    let inner_direct = match (direct, layers.is_empty()) {
        (Some(d), true) => Some(Direct {
            len: Some(entry.size),
            random_access: d.random_access.clone(),
            base: d.base + entry.data,
        }),
        _ => None,
    };
    report.layers.extend(layers);
    route(
        format,
        Input::stream(reader),
        inner_direct.as_ref(),
        cfg,
        out,
        report,
    )
    .map_err(truncated)
}

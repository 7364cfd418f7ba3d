//! The producer against real sparse files: the stream decodes to the source, carries no zero
//! granule, regenerates byte for byte from any checkpoint and offset, and fails when the
//! source changes or shrinks under it.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use cdi_formats::clonestream::SPEC;
use cdi_formats::decoder::{CompressedBlock, MemoryStash, OpenContext, Output, OutputClosed};

use super::*;
use crate::error::Error;

/// A 6 MiB file: a hole, data with a zero granule in it, a run across a MiB boundary, and a
/// hole at the end.
fn sparse_source(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("disk.img");
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(6 << 20).expect("size");
    let mut block = vec![0x5au8; 3 * 4096];
    block[4096..8192].fill(0);
    f.write_all_at(&block, 1 << 20).expect("write");
    let run: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + 1).collect();
    f.write_all_at(&run, (3 << 20) - 100_000).expect("write");
    f.write_all_at(b"tail", (5 << 20) + 17).expect("write");
    path
}

fn whole(p: &mut Producer) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(piece) = p.next_piece().expect("piece") {
        out.extend_from_slice(&piece);
    }
    out
}

struct Image(Vec<u8>, u64);

impl Output for Image {
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        let at = guest as usize;
        self.0[at..at + bytes.len()].copy_from_slice(&bytes);
        self.1 += bytes.len() as u64;
        Ok(())
    }
    fn zero(&mut self, _: u64, _: u64) -> Result<(), OutputClosed> {
        Ok(())
    }
    fn compressed(&mut self, _: CompressedBlock) -> Result<(), OutputClosed> {
        Err(OutputClosed)
    }
}

/// Decodes a stream; returns the image and the data bytes it carried.
fn decode(stream: &[u8]) -> (Vec<u8>, u64) {
    let ctx = OpenContext {
        image_len: None,
        stash: Box::new(MemoryStash::default()),
        budget: 1 << 20,
    };
    let mut d = (SPEC.open)(stream, ctx).expect("open");
    let size = d.virtual_size().expect("size") as usize;
    let mut image = Image(vec![0; size], 0);
    d.feed(Bytes::copy_from_slice(stream), &mut image)
        .expect("feed");
    d.finish(&mut image).expect("finish");
    (image.0, image.1)
}

#[test]
fn a_sparse_file_streams_only_its_nonzero_granules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::File).expect("open"));
    let start = Checkpoint::start(&source);
    let stream = whole(&mut Producer::new(Arc::clone(&source), start));
    let (image, data) = decode(&stream);
    assert_eq!(image, std::fs::read(&path).expect("read"));
    // 2 granules of the block, the run's 300,000 bytes rounded out to granules, one tail granule.
    let run_start = ((3u64 << 20) - 100_000) / 4096 * 4096;
    let run_end = ((3u64 << 20) + 200_000).div_ceil(4096) * 4096;
    assert_eq!(data, 2 * 4096 + (run_end - run_start) + 4096);
}

#[test]
fn a_device_is_read_whole_with_zero_granules_still_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::Device).expect("open"));
    let stream = whole(&mut Producer::new(
        Arc::clone(&source),
        Checkpoint::start(&source),
    ));
    let file = Arc::new(CloneSource::open(&path, SourceKind::File).expect("open"));
    let by_extents = whole(&mut Producer::new(
        Arc::clone(&file),
        Checkpoint::start(&file),
    ));
    assert_eq!(
        stream, by_extents,
        "the same frames whichever way data is found"
    );
    assert_eq!(decode(&stream).0, std::fs::read(&path).expect("read"));
}

#[test]
fn the_stream_regenerates_from_any_checkpoint_to_any_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::File).expect("open"));
    let mut p = Producer::new(Arc::clone(&source), Checkpoint::start(&source));
    let mut full = Vec::new();
    let mut checkpoints = vec![Checkpoint::start(&source)];
    while let Some(piece) = p.next_piece().expect("piece") {
        full.extend_from_slice(&piece);
        if let Some(c) = p.checkpoint() {
            assert_eq!(c.stream_offset, full.len() as u64);
            checkpoints.push(c);
        }
    }
    assert!(checkpoints.len() > 4, "{} checkpoints", checkpoints.len());
    for c in &checkpoints {
        for extra in [0u64, 1, 15, 16, 17, 5000] {
            let target = (c.stream_offset + extra).min(full.len() as u64);
            let mut resumed = Producer::new(Arc::clone(&source), c.clone());
            resumed.skip_to(target).expect("skip");
            let rest = whole(&mut resumed);
            assert_eq!(
                rest,
                full[target as usize..],
                "from {} to {target}",
                c.stream_offset
            );
        }
    }
}

#[test]
fn a_source_written_during_the_clone_fails_before_the_end_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::File).expect("open"));
    let mut p = Producer::new(Arc::clone(&source), Checkpoint::start(&source));
    p.next_piece().expect("header");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&[]).expect("touch");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open")
        .write_all_at(b"x", 5 << 20)
        .expect("write");
    let err = loop {
        match p.next_piece() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the changed source was streamed to its end"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::CloneSourceChanged(_)), "{err}");
    assert!(
        err.to_string()
            .contains("changed while it was being cloned"),
        "{err}"
    );
}

#[test]
fn a_source_cut_short_during_the_clone_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::Device).expect("open"));
    let mut p = Producer::new(Arc::clone(&source), Checkpoint::start(&source));
    p.next_piece().expect("header");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(2 << 20)
        .expect("truncate");
    let err = loop {
        match p.next_piece() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the shrunk source was streamed to its end"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::SourceShrank(_)), "{err}");
}

/// Imports `path` with `format` into memory: the image, or the error.
fn import_file(
    path: &std::path::Path,
    format: crate::FormatChoice,
    capacity: Option<u64>,
) -> Result<Vec<u8>, Error> {
    let (sink, image) = crate::sink::MemorySink::new(capacity);
    let spec = crate::ImportSpec {
        format,
        ..crate::ImportSpec::default()
    };
    let source = crate::source::FileSource::open(path)?;
    crate::import(
        Box::new(source),
        Box::new(sink),
        &spec,
        &crate::Progress::new(),
    )
    .map_err(|f| f.error)?;
    let bytes = image.lock().expect("image").bytes.clone();
    Ok(bytes)
}

#[test]
fn the_pipeline_takes_a_clone_stream_only_when_told_and_a_raw_disk_with_its_magic_stays_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sparse_source(dir.path());
    let source = Arc::new(CloneSource::open(&path, SourceKind::File).expect("open"));
    let stream = whole(&mut Producer::new(
        Arc::clone(&source),
        Checkpoint::start(&source),
    ));
    let stream_file = dir.path().join("stream");
    std::fs::write(&stream_file, &stream).expect("write");

    let mut decoded = import_file(&stream_file, crate::FormatChoice::CloneStream, None)
        .expect("forced clone stream");
    decoded.resize(6 << 20, 0);
    assert_eq!(decoded, std::fs::read(&path).expect("read"));

    let mut raw = import_file(&stream_file, crate::FormatChoice::Auto, None).expect("auto");
    raw.resize(stream.len(), 0);
    assert_eq!(
        raw, stream,
        "detection took the clone stream for something else"
    );

    let err = import_file(
        &stream_file,
        crate::FormatChoice::CloneStream,
        Some(4 << 20),
    )
    .expect_err("too small");
    assert!(
        matches!(err, Error::TooLarge { needed, capacity } if needed == 6 << 20 && capacity == 4 << 20),
        "{err}"
    );
}

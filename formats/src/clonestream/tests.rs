//! The decoder against streams built here record by record: what a well-formed stream
//! delivers, and each hostile or damaged stream refused with its own error.

use bytes::Bytes;

use super::wire::{
    END_LEN, FrameHasher, StreamDigest, encode_end, encode_frame_head, encode_header,
};
use super::*;
use crate::decoder::{CompressedBlock, MemoryStash, OutputClosed};

/// Data writes in the order they came: (disk offset, bytes).
#[derive(Default)]
struct Collect {
    writes: Vec<(u64, Vec<u8>)>,
    disk: Option<u64>,
}

impl Output for Collect {
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        match self.writes.last_mut() {
            Some((at, b)) if *at + b.len() as u64 == guest => b.extend_from_slice(&bytes),
            _ => self.writes.push((guest, bytes.to_vec())),
        }
        Ok(())
    }
    fn zero(&mut self, _guest: u64, _len: u64) -> Result<(), OutputClosed> {
        Ok(())
    }
    fn compressed(&mut self, _block: CompressedBlock) -> Result<(), OutputClosed> {
        Err(OutputClosed)
    }
    fn disk_size(&mut self, size: u64) -> Result<(), OutputClosed> {
        self.disk = Some(size);
        Ok(())
    }
}

/// A stream for a disk of `size` bytes holding `frames`, with a correct end record.
fn stream(size: u64, frames: &[(u64, &[u8])]) -> Vec<u8> {
    let header = encode_header(size);
    let mut digest = StreamDigest::new(&header);
    let mut out = header.to_vec();
    for (offset, data) in frames {
        let len = data.len() as u32;
        out.extend_from_slice(&encode_frame_head(*offset, len));
        out.extend_from_slice(data);
        let mut h = FrameHasher::new(*offset, len);
        h.update(data);
        digest.add(&h.finish(), len);
    }
    out.extend_from_slice(&encode_end(&digest));
    out
}

fn decode(bytes: &[u8], piece: usize) -> Result<Collect, DecodeError> {
    let ctx = OpenContext {
        image_len: None,
        stash: Box::new(MemoryStash::default()),
        budget: 1 << 20,
    };
    let mut decoder = (SPEC.open)(&bytes[..HEADER_LEN.min(bytes.len())], ctx)?;
    let mut out = Collect {
        disk: decoder.virtual_size(),
        ..Collect::default()
    };
    for chunk in bytes.chunks(piece.max(1)) {
        decoder.feed(Bytes::copy_from_slice(chunk), &mut out)?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

fn clone_error(r: Result<Collect, DecodeError>) -> CloneStreamError {
    match r {
        Err(DecodeError::CloneStream(e)) => e,
        Err(other) => panic!("expected a clone stream error, got {other}"),
        Ok(_) => panic!("expected a clone stream error, the stream was accepted"),
    }
}

#[test]
fn frames_arrive_at_their_offsets_in_any_piece_size() {
    let a = vec![7u8; 5000];
    let b = vec![9u8; 4096];
    let s = stream(1 << 20, &[(4096, &a), (65536, &b)]);
    for piece in [1, 15, 16, 17, 4096, s.len()] {
        let out = decode(&s, piece).expect("valid stream");
        assert_eq!(out.disk, Some(1 << 20));
        assert_eq!(
            out.writes,
            vec![(4096, a.clone()), (65536, b.clone())],
            "piece {piece}"
        );
    }
}

#[test]
fn an_empty_disk_is_a_header_and_an_end_record() {
    let s = stream(10 << 20, &[]);
    assert_eq!(s.len(), HEADER_LEN + END_LEN);
    let out = decode(&s, 7).expect("valid");
    assert!(out.writes.is_empty());
    assert_eq!(out.disk, Some(10 << 20));
}

#[test]
fn the_magic_is_never_detected() {
    let s = stream(1 << 20, &[(0, &[1u8; 512])]);
    assert_eq!(crate::detect(&s), Format::Raw);
}

#[test]
fn a_changed_data_byte_fails_the_digest() {
    let mut s = stream(1 << 20, &[(0, &[1u8; 4096]), (8192, &[2u8; 4096])]);
    s[HEADER_LEN + RECORD_HEAD_LEN + 100] ^= 1;
    match clone_error(decode(&s, 4096)) {
        CloneStreamError::DigestMismatch { expected, actual } => assert_ne!(expected, actual),
        other => panic!("{other}"),
    }
}

#[test]
fn a_changed_end_digest_fails() {
    let mut s = stream(1 << 20, &[(0, &[1u8; 4096])]);
    let last = s.len() - 1;
    s[last] ^= 0x80;
    assert!(matches!(
        clone_error(decode(&s, 999)),
        CloneStreamError::DigestMismatch { .. }
    ));
}

#[test]
fn a_stream_cut_anywhere_is_truncated() {
    let s = stream(1 << 20, &[(0, &[1u8; 4096]), (8192, &[2u8; 100])]);
    for cut in [
        HEADER_LEN,
        HEADER_LEN + 3,
        HEADER_LEN + 20,
        s.len() - END_LEN,
        s.len() - 1,
    ] {
        match clone_error(decode(&s[..cut], 64)) {
            CloneStreamError::Truncated { at } => assert_eq!(at, cut as u64),
            other => panic!("cut at {cut}: {other}"),
        }
    }
}

#[test]
fn overlapping_and_descending_frames_are_refused() {
    let overlap = stream(1 << 20, &[(0, &[1u8; 4096]), (4095, &[2u8; 10])]);
    match clone_error(decode(&overlap, 4096)) {
        CloneStreamError::Unordered {
            offset,
            previous_end,
            ..
        } => assert_eq!((offset, previous_end), (4095, 4096)),
        other => panic!("{other}"),
    }
    let descending = stream(1 << 20, &[(8192, &[1u8; 10]), (0, &[2u8; 10])]);
    assert!(matches!(
        clone_error(decode(&descending, 4096)),
        CloneStreamError::Unordered { .. }
    ));
}

#[test]
fn frame_lengths_outside_one_byte_to_one_mib_are_refused() {
    let mut empty = stream(1 << 20, &[]);
    empty.splice(
        HEADER_LEN..HEADER_LEN,
        encode_frame_head(0, 0).iter().copied(),
    );
    assert!(matches!(
        clone_error(decode(&empty, 64)),
        CloneStreamError::FrameLength { len: 0, .. }
    ));
    let mut huge = encode_header(1 << 30).to_vec();
    huge.extend_from_slice(&encode_frame_head(0, MAX_FRAME_LEN + 1));
    assert!(matches!(
        clone_error(decode(&huge, 64)),
        CloneStreamError::FrameLength { .. }
    ));
}

#[test]
fn a_frame_past_the_disk_size_is_refused_before_its_data() {
    let mut s = encode_header(4096).to_vec();
    s.extend_from_slice(&encode_frame_head(4000, 200));
    match clone_error(decode(&s, 64)) {
        CloneStreamError::BeyondDisk { end, size, .. } => assert_eq!((end, size), (4200, 4096)),
        other => panic!("{other}"),
    }
    let mut wrap = encode_header(4096).to_vec();
    wrap.extend_from_slice(&encode_frame_head(u64::MAX - 2, 16));
    assert!(matches!(
        clone_error(decode(&wrap, 64)),
        CloneStreamError::BeyondDisk { .. }
    ));
}

#[test]
fn hostile_headers_are_refused_at_open() {
    let good = encode_header(1 << 20);
    let mut magic = good;
    magic[0] = b'X';
    assert!(matches!(
        clone_error(decode(&magic, 64)),
        CloneStreamError::BadMagic
    ));
    let mut version = good;
    version[8] = 2;
    assert!(matches!(
        clone_error(decode(&version, 64)),
        CloneStreamError::UnsupportedVersion(2, 1)
    ));
    let mut reserved = good;
    reserved[31] = 1;
    assert!(matches!(
        clone_error(decode(&reserved, 64)),
        CloneStreamError::MalformedHeader(_)
    ));
    let oversized = encode_header(MAX_VIRTUAL_SIZE + 1);
    assert!(matches!(
        clone_error(decode(&oversized, 64)),
        CloneStreamError::MalformedHeader(_)
    ));
    assert!(matches!(
        clone_error(decode(&good[..20], 64)),
        CloneStreamError::MalformedHeader(_)
    ));
}

#[test]
fn unknown_records_counts_and_trailing_bytes_are_refused() {
    let mut unknown = encode_header(1 << 20).to_vec();
    unknown.extend_from_slice(&[0xAB; RECORD_HEAD_LEN]);
    assert!(matches!(
        clone_error(decode(&unknown, 64)),
        CloneStreamError::UnknownRecord { .. }
    ));

    // An end record that claims one frame fewer than arrived.
    let s = stream(1 << 20, &[(0, &[1u8; 10]), (100, &[2u8; 10])]);
    let mut miscount = s.clone();
    let frames_at = s.len() - END_LEN + RECORD_HEAD_LEN;
    miscount[frames_at] = 1;
    assert!(matches!(
        clone_error(decode(&miscount, 64)),
        CloneStreamError::CountMismatch {
            expected_frames: 1,
            frames: 2,
            ..
        }
    ));

    let mut trailing = s;
    trailing.push(0);
    assert!(matches!(
        clone_error(decode(&trailing, 64)),
        CloneStreamError::TrailingBytes { .. }
    ));
}

#[test]
fn the_stream_digest_resumes_from_a_clone_of_its_state() {
    let header = encode_header(1 << 20);
    let frame = |offset: u64, data: &[u8]| {
        let mut h = FrameHasher::new(offset, data.len() as u32);
        h.update(data);
        h.finish()
    };
    let mut whole = StreamDigest::new(&header);
    whole.add(&frame(0, b"abc"), 3);
    let checkpoint = whole.clone();
    whole.add(&frame(10, b"def"), 3);
    let mut resumed = checkpoint;
    resumed.add(&frame(10, b"def"), 3);
    assert_eq!(resumed.finish(), whole.finish());
}

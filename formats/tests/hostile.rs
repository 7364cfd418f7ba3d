//! Hostile and damaged vmdk, vhd, vhdx and vdi images, each refused with its specific error:
//! tables beyond the end, overlapping tables, huge counts, parent links, other files, bad
//! grain markers, truncation. Each starts from an image `qemu-img` made of a small raw disk and
//! patches one field (checksums recomputed where the format has them), then runs the decoder
//! directly, fed in uneven pieces, with an in-memory stash and a bounded budget.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use cdi_formats::decoder::{
    CompressedBlock, DecodeError, DecoderSpec, LayoutError, MemoryStash, OpenContext, Output,
    OutputClosed, decompress_block_into,
};
use cdi_formats::vdi::VdiError;
use cdi_formats::vhd::VhdError;
use cdi_formats::vhdx::{VhdxError, crc32c_skipping};
use cdi_formats::vmdk::VmdkError;
use cdi_formats::{DETECT_LEN, vdi, vhd, vhdx, vmdk};
use cdi_testdata::qemu::{convert_to_raw_from, raw_to};
use cdi_testdata::raw::sparse_disk;

const DISK: usize = 3 << 20;
const BUDGET: usize = 4 << 20;

/// Collects the decoded disk.
#[derive(Default)]
struct Collect {
    writes: BTreeMap<u64, Vec<u8>>,
    zeros: u64,
}

impl Output for Collect {
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        self.writes.insert(guest, bytes.to_vec());
        Ok(())
    }
    fn zero(&mut self, _guest: u64, len: u64) -> Result<(), OutputClosed> {
        self.zeros += len;
        Ok(())
    }
    fn compressed(&mut self, b: CompressedBlock) -> Result<(), OutputClosed> {
        let mut out = vec![0u8; b.block_size];
        // A corrupt block is reported by `decode` below through `bad_block`.
        match decompress_block_into(&b, &mut out) {
            Ok(()) => {
                out.truncate(b.guest_len);
                self.writes.insert(b.guest_offset, out);
                Ok(())
            }
            Err(_) => Err(OutputClosed),
        }
    }
}

/// Decodes `img` with `spec`, fed in pieces of `piece` bytes; returns the raw disk.
fn decode_with(
    spec: &DecoderSpec,
    img: &[u8],
    image_len: Option<u64>,
    piece: usize,
    budget: usize,
) -> Result<Vec<u8>, DecodeError> {
    let prefix = &img[..img.len().min(DETECT_LEN)];
    let want = (spec.head_len)(prefix)?;
    let head = &img[..img.len().min(want)];
    let ctx = OpenContext {
        image_len,
        stash: Box::new(MemoryStash::new()),
        budget,
    };
    let mut d = (spec.open)(head, ctx)?;
    let mut out = Collect::default();
    for chunk in img.chunks(piece) {
        d.feed(Bytes::copy_from_slice(chunk), &mut out)?;
    }
    d.finish(&mut out)?;
    let size = d.virtual_size().expect("size known at the end") as usize;
    let mut disk = vec![0u8; size];
    for (at, bytes) in out.writes {
        disk[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }
    Ok(disk)
}

/// Decodes as a local file (length known) and as a stream (length unknown), in uneven pieces;
/// both must agree, and the error (if any) is returned.
fn decode(spec: &DecoderSpec, img: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let file = decode_with(spec, img, Some(img.len() as u64), 100_003, BUDGET);
    let stream = decode_with(spec, img, None, 65_536 + 512, BUDGET);
    match (&file, &stream) {
        (Ok(a), Ok(b)) => assert!(a == b, "file and stream decode differently"),
        (Err(_), _) => return file,
        _ => {}
    }
    stream
}

/// `qemu-img convert -O format args` of a small sparse disk; returns the image and what
/// `qemu-img convert -O raw` makes of it.
fn qemu_image(format: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, sparse_disk(5, DISK, 64 << 10)).expect("raw");
    let img = dir.path().join("disk.img");
    raw_to(format, &raw, &img, args);
    let back = dir.path().join("back.raw");
    convert_to_raw_from(format, &img, &back);
    (read(&img), read(&back))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8"))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4"))
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

fn layout(e: &DecodeError) -> Option<&LayoutError> {
    match e {
        DecodeError::Layout(l) => Some(l),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------ vmdk

/// vmdk header fields (little-endian, offsets in the first sector).
const VMDK_CAPACITY: usize = 12;
const VMDK_GRAIN: usize = 20;
const VMDK_GTES: usize = 44;
const VMDK_GD: usize = 56;
const VMDK_NEWLINES: usize = 73;

fn vmdk_image(subformat: &str) -> (Vec<u8>, Vec<u8>) {
    qemu_image("vmdk", &["-o", &format!("subformat={subformat}")])
}

/// Replaces `from` by `to` (same length) in the embedded descriptor.
fn patch_descriptor(img: &mut [u8], from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let at = img[512..512 * 21]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("descriptor text");
    put(img, 512 + at, to.as_bytes());
}

/// Appends a line to the embedded descriptor (it has room: qemu reserves 20 sectors).
fn append_descriptor(img: &mut [u8], line: &str) {
    let end = 512
        + img[512..512 * 21]
            .iter()
            .position(|&b| b == 0)
            .expect("room");
    put(img, end, line.as_bytes());
}

#[test]
fn qemus_vmdks_decode_like_qemu() {
    for subformat in ["monolithicSparse", "streamOptimized"] {
        let (img, want) = vmdk_image(subformat);
        assert!(
            decode(&vmdk::SPEC, &img).expect(subformat) == want,
            "{subformat}"
        );
    }
}

#[test]
fn vmdk_grain_directory_beyond_the_end_is_refused() {
    let (mut img, _) = vmdk_image("monolithicSparse");
    put(&mut img, VMDK_GD, &(1u64 << 30).to_le_bytes());
    let len = img.len() as u64;
    let err = decode_with(&vmdk::SPEC, &img, Some(len), 4096, BUDGET).expect_err("refused");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::BeyondEnd {
                what: "grain directory",
                ..
            })
        ),
        "{err}"
    );
    // Over a stream the end is unknown: the directory never arrives.
    let err = decode_with(&vmdk::SPEC, &img, None, 4096, BUDGET).expect_err("refused");
    assert!(
        matches!(layout(&err), Some(LayoutError::Truncated { .. })),
        "{err}"
    );
}

#[test]
fn vmdk_grain_table_on_the_header_is_refused() {
    let (mut img, _) = vmdk_image("monolithicSparse");
    let gd = le64(&img, VMDK_GD) as usize * 512;
    put(&mut img, gd, &1u32.to_le_bytes()); // table 0 at sector 1: on the descriptor
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::Overlap {
                what: "grain table",
                offset: 512,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn vmdk_grains_mapped_twice_are_refused() {
    let (mut img, _) = vmdk_image("monolithicSparse");
    let gd = le64(&img, VMDK_GD) as usize * 512;
    let gt = le32(&img, gd) as usize * 512;
    let first = le32(&img, gt);
    assert_ne!(first, 0, "the disk's first grain is allocated");
    put(&mut img, gt + 4, &first.to_le_bytes());
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::Overlap { what: "grain", .. })
        ),
        "{err}"
    );
}

#[test]
fn vmdk_huge_counts_are_refused_before_decoding() {
    let (img, _) = vmdk_image("monolithicSparse");
    let mut huge_capacity = img.clone();
    put(
        &mut huge_capacity,
        VMDK_CAPACITY,
        &(1u64 << 60).to_le_bytes(),
    );
    let mut tiny_grains = img.clone();
    put(&mut tiny_grains, VMDK_CAPACITY, &(1u64 << 46).to_le_bytes());
    put(&mut tiny_grains, VMDK_GRAIN, &1u64.to_le_bytes());
    put(&mut tiny_grains, VMDK_GTES, &1u32.to_le_bytes());
    let mut odd_grain = img.clone();
    put(&mut odd_grain, VMDK_GRAIN, &100u64.to_le_bytes());
    for (name, bad) in [
        ("capacity", huge_capacity),
        ("directory entries", tiny_grains),
        ("grain size", odd_grain),
    ] {
        let err = decode(&vmdk::SPEC, &bad).expect_err(name);
        assert!(
            matches!(err, DecodeError::Vmdk(VmdkError::MalformedHeader(_))),
            "{name}: {err}"
        );
    }
}

#[test]
fn vmdk_descriptor_sizes_that_overflow_are_refused() {
    // Found by the vmdk fuzz target: offset + size in sectors, times 512, overflowed.
    let (mut img, _) = vmdk_image("streamOptimized");
    put(&mut img, 36, &0x02ff_ffff_ffff_ff14u64.to_le_bytes()); // descriptorSize
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::MalformedHeader(_))),
        "{err}"
    );
}

#[test]
fn vmdk_parent_links_are_refused() {
    let (img, _) = vmdk_image("monolithicSparse");
    let mut child = img.clone();
    patch_descriptor(&mut child, "parentCID=ffffffff", "parentCID=0badc0de");
    let mut hinted = img.clone();
    append_descriptor(&mut hinted, "parentFileNameHint=\"base.vmdk\"\n");
    for (name, bad) in [("parentCID", child), ("parentFileNameHint", hinted)] {
        let err = decode(&vmdk::SPEC, &bad).expect_err(name);
        assert!(
            matches!(&err, DecodeError::Vmdk(VmdkError::ParentLink { link }) if link.contains(name)),
            "{name}: {err}"
        );
    }
}

#[test]
fn vmdk_extents_in_other_files_are_refused() {
    let (mut img, _) = vmdk_image("monolithicSparse");
    append_descriptor(&mut img, "RW 2048 FLAT \"more-flat.vmdk\" 0\n");
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(
        matches!(&err, DecodeError::Vmdk(VmdkError::OtherFiles { files, .. }) if files.contains("more-flat.vmdk")),
        "{err}"
    );
}

#[test]
fn vmdk_damaged_by_a_text_mode_transfer_is_refused() {
    let (mut img, _) = vmdk_image("streamOptimized");
    put(&mut img, VMDK_NEWLINES, b"\n \n\n");
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::CorruptedNewlines)),
        "{err}"
    );
}

#[test]
fn cowd_vmdk_is_refused() {
    let img = [b"COWD".to_vec(), vec![0u8; 2044]].concat();
    let err = decode(&vmdk::SPEC, &img).expect_err("refused");
    assert!(matches!(err, DecodeError::Vmdk(VmdkError::Cowd)), "{err}");
}

/// The offsets of a qemu streamOptimized image's grain markers.
fn markers(img: &[u8]) -> Vec<usize> {
    let mut at = 128 * 512;
    let mut out = Vec::new();
    while at + 12 <= img.len() {
        let size = le32(img, at + 8) as usize;
        assert_ne!(size, 0, "qemu writes grains only");
        out.push(at);
        at += (12 + size).next_multiple_of(512);
    }
    out
}

#[test]
fn bad_grain_markers_are_refused() {
    let (img, _) = vmdk_image("streamOptimized");
    let m = markers(&img);
    assert!(m.len() > 3);
    let mut unaligned = img.clone();
    put(&mut unaligned, m[1], &(le64(&img, m[1]) + 1).to_le_bytes());
    let mut beyond = img.clone();
    put(&mut beyond, m[1], &(1u64 << 40).to_le_bytes());
    let mut huge = img.clone();
    put(&mut huge, m[1] + 8, &u32::MAX.to_le_bytes());
    for (name, bad) in [("unaligned", unaligned), ("beyond", beyond), ("huge", huge)] {
        let err = decode(&vmdk::SPEC, &bad).expect_err(name);
        assert!(
            matches!(err, DecodeError::Vmdk(VmdkError::BadMarker { .. })),
            "{name}: {err}"
        );
    }
    // The second grain claims the first grain's sectors: out of order.
    let mut backwards = img.clone();
    put(&mut backwards, m[1], &le64(&img, m[0]).to_le_bytes());
    let err = decode(&vmdk::SPEC, &backwards).expect_err("backwards");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::GrainOrder { .. })),
        "{err}"
    );
    // A grain that says it holds other sectors than its table says (still in order): the
    // fingerprints of tables and markers differ.
    let lbas: Vec<u64> = m.iter().map(|&at| le64(&img, at)).collect();
    let i = (0..lbas.len() - 1)
        .find(|&i| lbas[i + 1] - lbas[i] > 128)
        .expect("a gap between two grains");
    let mut moved = img.clone();
    put(&mut moved, m[i], &(lbas[i] + 128).to_le_bytes());
    let err = decode(&vmdk::SPEC, &moved).expect_err("moved");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::GrainsMismatch { .. })),
        "{err}"
    );
}

#[test]
fn corrupt_compressed_grains_are_refused() {
    let (mut img, _) = vmdk_image("streamOptimized");
    let m = markers(&img);
    // Damage the deflate data of the first grain (past the zlib header).
    for b in &mut img[m[0] + 12 + 4..m[0] + 12 + 64] {
        *b ^= 0x5a;
    }
    let prefix = &img[..DETECT_LEN];
    let head = &img[..(vmdk::SPEC.head_len)(prefix).expect("head")];
    let ctx = OpenContext {
        image_len: None,
        stash: Box::new(MemoryStash::new()),
        budget: BUDGET,
    };
    let mut d = (vmdk::SPEC.open)(head, ctx).expect("opens");
    let mut blocks = Vec::new();
    struct Blocks<'a>(&'a mut Vec<CompressedBlock>);
    impl Output for Blocks<'_> {
        fn data(&mut self, _: u64, _: Bytes) -> Result<(), OutputClosed> {
            Ok(())
        }
        fn zero(&mut self, _: u64, _: u64) -> Result<(), OutputClosed> {
            Ok(())
        }
        fn compressed(&mut self, b: CompressedBlock) -> Result<(), OutputClosed> {
            self.0.push(b);
            Ok(())
        }
    }
    d.feed(Bytes::from(img), &mut Blocks(&mut blocks))
        .expect("markers are fine");
    let mut out = vec![0u8; blocks[0].block_size];
    let err = decompress_block_into(&blocks[0], &mut out).expect_err("corrupt");
    assert!(
        matches!(
            err,
            DecodeError::Vmdk(VmdkError::GrainCorrupt { .. } | VmdkError::GrainLength { .. })
        ),
        "{err}"
    );
}

#[test]
fn a_stream_optimized_vmdk_cut_between_grains_is_truncated() {
    let (img, _) = vmdk_image("streamOptimized");
    let m = markers(&img);
    let cut = &img[..m[m.len() / 2]];
    let err = decode_with(&vmdk::SPEC, cut, None, 4096, BUDGET).expect_err("truncated");
    assert!(
        matches!(layout(&err), Some(LayoutError::Truncated { .. })),
        "{err}"
    );
}

/// Rewrites qemu's streamOptimized image in VMware's layout: the grain directory at the end
/// (header `gdOffset` = -1), then a footer marker, the footer (the header with the real
/// directory offset) and the end-of-stream marker after the grains.
fn vmware_layout(img: &[u8]) -> Vec<u8> {
    let mut out = img.to_vec();
    let gd = le64(img, VMDK_GD);
    put(&mut out, VMDK_GD, &u64::MAX.to_le_bytes());
    let mut marker = vec![0u8; 512];
    put(&mut marker, 0, &1u64.to_le_bytes()); // one sector follows
    put(&mut marker, 12, &3u32.to_le_bytes()); // footer
    out.extend_from_slice(&marker);
    let mut footer = img[..512].to_vec();
    put(&mut footer, VMDK_GD, &gd.to_le_bytes());
    out.extend_from_slice(&footer);
    out.extend_from_slice(&[0u8; 512]); // end of stream
    out
}

#[test]
fn vmware_stream_layout_decodes_and_needs_its_end_marker() {
    let (img, want) = vmdk_image("streamOptimized");
    let vmware = vmware_layout(&img);
    assert!(decode(&vmdk::SPEC, &vmware).expect("decodes") == want);
    // Without the end-of-stream marker nothing proves the stream complete.
    let cut = &vmware[..vmware.len() - 512];
    let err = decode_with(&vmdk::SPEC, cut, None, 4096, BUDGET).expect_err("truncated");
    assert!(
        matches!(layout(&err), Some(LayoutError::Truncated { .. })),
        "{err}"
    );
    // An unknown metadata marker type.
    let mut odd = vmware.clone();
    let n = odd.len();
    put(&mut odd, n - 3 * 512 + 12, &9u32.to_le_bytes());
    let err = decode(&vmdk::SPEC, &odd).expect_err("bad marker");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::BadMarker { .. })),
        "{err}"
    );
    // A footer that disagrees with the header.
    let mut lying = vmware.clone();
    put(&mut lying, n - 2 * 512 + VMDK_CAPACITY, &1u64.to_le_bytes());
    let err = decode(&vmdk::SPEC, &lying).expect_err("bad footer");
    assert!(
        matches!(err, DecodeError::Vmdk(VmdkError::BadFooter(_))),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------- vhd

/// The one's complement of the byte sum, the checksum field counted as zero.
fn vhd_reseal(b: &mut [u8], field: usize) {
    b[field..field + 4].fill(0);
    let sum = b.iter().fold(0u32, |a, &x| a.wrapping_add(u32::from(x)));
    put(b, field, &(!sum).to_be_bytes());
}

/// Patches the dynamic header (at 512) and reseals it.
fn vhd_header(img: &mut [u8], at: usize, v: &[u8]) {
    put(img, 512 + at, v);
    vhd_reseal(&mut img[512..1536], 36);
}

fn vhd_image() -> (Vec<u8>, Vec<u8>) {
    qemu_image("vpc", &["-o", "subformat=dynamic"])
}

#[test]
fn qemus_vhds_decode_like_qemu() {
    let (img, want) = vhd_image();
    assert!(decode(&vhd::SPEC, &img).expect("dynamic") == want);
}

#[test]
fn vhd_bat_beyond_the_end_or_on_the_header_is_refused() {
    let (img, _) = vhd_image();
    let mut beyond = img.clone();
    vhd_header(&mut beyond, 16, &(1u64 << 40).to_be_bytes());
    let len = beyond.len() as u64;
    let err = decode_with(&vhd::SPEC, &beyond, Some(len), 4096, BUDGET).expect_err("beyond");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::BeyondEnd { what: "BAT", .. })
        ),
        "{err}"
    );
    let mut on_header = img.clone();
    vhd_header(&mut on_header, 16, &1024u64.to_be_bytes());
    let err = decode(&vhd::SPEC, &on_header).expect_err("overlap");
    assert!(
        matches!(layout(&err), Some(LayoutError::Overlap { what: "BAT", .. })),
        "{err}"
    );
}

#[test]
fn vhd_blocks_on_the_bat_or_twice_are_refused() {
    let (img, _) = vhd_image();
    let first = be32(&img, 1536);
    assert_ne!(first, u32::MAX, "block 0 is allocated");
    let mut on_bat = img.clone();
    put(&mut on_bat, 1536, &3u32.to_be_bytes()); // sector 3: the BAT itself
    let mut twice = img.clone();
    put(&mut twice, 1540, &first.to_be_bytes());
    for (name, bad) in [("on the BAT", on_bat), ("twice", twice)] {
        let err = decode(&vhd::SPEC, &bad).expect_err(name);
        assert!(
            matches!(layout(&err), Some(LayoutError::Overlap { .. })),
            "{name}: {err}"
        );
    }
}

#[test]
fn vhd_huge_counts_and_bad_sizes_are_refused() {
    let (img, _) = vhd_image();
    let mut huge = img.clone();
    vhd_header(&mut huge, 28, &u32::MAX.to_be_bytes());
    let mut odd_block = img.clone();
    vhd_header(&mut odd_block, 32, &3000u32.to_be_bytes());
    let mut too_few = img.clone();
    vhd_header(&mut too_few, 28, &1u32.to_be_bytes());
    for (name, bad) in [
        ("entries", huge),
        ("block size", odd_block),
        ("too few", too_few),
    ] {
        let err = decode(&vhd::SPEC, &bad).expect_err(name);
        assert!(
            matches!(err, DecodeError::Vhd(VhdError::MalformedHeader(_))),
            "{name}: {err}"
        );
    }
}

#[test]
fn differencing_vhd_is_refused_naming_its_parent() {
    let (mut img, _) = vhd_image();
    put(&mut img, 60, &4u32.to_be_bytes());
    vhd_reseal(&mut img[..512], 64);
    let name: Vec<u8> = "base.vhd"
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    vhd_header(&mut img, 64, &name);
    let err = decode(&vhd::SPEC, &img).expect_err("refused");
    assert!(
        matches!(&err, DecodeError::Vhd(VhdError::Differencing { parent }) if parent == "base.vhd"),
        "{err}"
    );
}

#[test]
fn vhd_with_a_bad_checksum_is_refused() {
    let (mut img, _) = vhd_image();
    img[40] ^= 1;
    let err = decode(&vhd::SPEC, &img).expect_err("refused");
    assert!(
        matches!(err, DecodeError::Vhd(VhdError::Checksum { .. })),
        "{err}"
    );
}

#[test]
fn vhd_sector_bitmaps_are_honoured() {
    let (mut img, want) = vhd_image();
    let bitmap = be32(&img, 1536) as usize * 512;
    // Sectors 0..8 of block 0 marked absent: they read as zeros whatever the file holds.
    img[bitmap] = 0;
    let got = decode(&vhd::SPEC, &img).expect("decodes");
    assert!(got[..4096].iter().all(|&b| b == 0));
    assert!(got[4096..] == want[4096..]);
}

#[test]
fn a_truncated_vhd_is_refused() {
    let (img, _) = vhd_image();
    let cut = &img[..img.len() / 2];
    let err = decode_with(&vhd::SPEC, cut, None, 4096, BUDGET).expect_err("truncated");
    assert!(
        matches!(layout(&err), Some(LayoutError::Truncated { .. })),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------ vhdx

const VHDX_HEADERS: [usize; 2] = [64 << 10, 128 << 10];
const VHDX_REGIONS: [usize; 2] = [192 << 10, 256 << 10];

fn vhdx_reseal(img: &mut [u8], at: usize, len: usize) {
    let c = crc32c_skipping(&img[at..at + len], 4);
    put(img, at + 4, &c.to_le_bytes());
}

/// Patches both headers and reseals them.
fn vhdx_headers(img: &mut [u8], at: usize, v: &[u8]) {
    for h in VHDX_HEADERS {
        put(img, h + at, v);
        vhdx_reseal(img, h, 4096);
    }
}

/// Patches both region tables and reseals them.
fn vhdx_regions(img: &mut [u8], at: usize, v: &[u8]) {
    for r in VHDX_REGIONS {
        put(img, r + at, v);
        vhdx_reseal(img, r, 64 << 10);
    }
}

/// The (offset, length) of the region table's entry `i`.
fn vhdx_region(img: &[u8], i: usize) -> (usize, usize) {
    let e = VHDX_REGIONS[0] + 16 + 32 * i;
    (le64(img, e + 16) as usize, le32(img, e + 24) as usize)
}

fn vhdx_image() -> (Vec<u8>, Vec<u8>, usize, usize) {
    let (img, want) = qemu_image("vhdx", &["-o", "block_size=1M"]);
    // qemu lists the BAT first, then the metadata.
    let (bat, _) = vhdx_region(&img, 0);
    let (metadata, _) = vhdx_region(&img, 1);
    (img, want, bat, metadata)
}

#[test]
fn qemus_vhdx_decodes_like_qemu() {
    let (img, want, _, _) = vhdx_image();
    assert!(decode(&vhdx::SPEC, &img).expect("decodes") == want);
}

#[test]
fn vhdx_with_a_log_to_replay_is_refused() {
    let (mut img, _, _, _) = vhdx_image();
    vhdx_headers(&mut img, 48, &[0x11; 16]);
    let err = decode(&vhdx::SPEC, &img).expect_err("refused");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::LogNotEmpty(_))),
        "{err}"
    );
}

#[test]
fn vhdx_with_damaged_headers_is_refused() {
    let (mut img, _, _, _) = vhdx_image();
    for h in VHDX_HEADERS {
        img[h + 100] ^= 1;
    }
    let err = decode(&vhdx::SPEC, &img).expect_err("refused");
    assert!(
        matches!(
            err,
            DecodeError::Vhdx(VhdxError::NoValidCopy { what: "header" })
        ),
        "{err}"
    );
}

#[test]
fn differencing_vhdx_is_refused() {
    let (mut img, _, _, metadata) = vhdx_image();
    // The file parameters item: qemu puts it first, at 64 KiB into the region.
    let params = metadata + le32(&img, metadata + 32 + 16) as usize;
    put(&mut img, params + 4, &2u32.to_le_bytes());
    let err = decode(&vhdx::SPEC, &img).expect_err("refused");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::Differencing)),
        "{err}"
    );
    let (mut img, _, bat, _) = vhdx_image();
    let entry = le64(&img, bat) | 7;
    put(&mut img, bat, &entry.to_le_bytes());
    let err = decode(&vhdx::SPEC, &img).expect_err("partially present");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::Differencing)),
        "{err}"
    );
}

#[test]
fn vhdx_payload_beyond_the_end_or_on_the_metadata_is_refused() {
    let (img, _, bat, metadata) = vhdx_image();
    let mut beyond = img.clone();
    put(&mut beyond, bat, &((1u64 << 40) << 20 | 6).to_le_bytes());
    let len = beyond.len() as u64;
    let err = decode_with(&vhdx::SPEC, &beyond, Some(len), 4096, BUDGET).expect_err("beyond");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::BeyondEnd {
                what: "payload block",
                ..
            })
        ),
        "{err}"
    );
    // The largest offset a BAT entry can hold (its top 44 bits, in MiB) is past 2^64 bytes.
    let mut top = img.clone();
    put(&mut top, bat, &(!7u64 | 6).to_le_bytes());
    let err = decode_with(&vhdx::SPEC, &top, Some(len), 4096, BUDGET).expect_err("top");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::BeyondEnd {
                what: "payload block",
                ..
            })
        ),
        "{err}"
    );
    let mut on_metadata = img.clone();
    put(
        &mut on_metadata,
        bat,
        &((metadata as u64 >> 20) << 20 | 6).to_le_bytes(),
    );
    let err = decode(&vhdx::SPEC, &on_metadata).expect_err("overlap");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::Overlap {
                what: "payload block",
                ..
            })
        ),
        "{err}"
    );
    let mut odd_state = img.clone();
    put(
        &mut odd_state,
        bat,
        &(le64(&img, bat) & !7 | 4).to_le_bytes(),
    );
    let err = decode(&vhdx::SPEC, &odd_state).expect_err("state");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::BadBlock { .. })),
        "{err}"
    );
}

#[test]
fn vhdx_unknown_required_regions_and_huge_metadata_are_refused() {
    let (img, _, _, _) = vhdx_image();
    let mut unknown = img.clone();
    vhdx_regions(&mut unknown, 16, &[0x42; 16]); // entry 0's GUID
    vhdx_regions(&mut unknown, 16 + 28, &1u32.to_le_bytes()); // required
    let err = decode(&vhdx::SPEC, &unknown).expect_err("unknown");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::UnknownRequiredRegion(_))),
        "{err}"
    );
    let mut huge = img.clone();
    vhdx_regions(&mut huge, 16 + 32 + 24, &(1u32 << 30).to_le_bytes()); // metadata length
    let err = decode(&vhdx::SPEC, &huge).expect_err("huge");
    assert!(
        matches!(err, DecodeError::Vhdx(VhdxError::MalformedRegions(_))),
        "{err}"
    );
    let mut overlapping = img.clone();
    let (bat, _) = vhdx_region(&img, 0);
    vhdx_regions(&mut overlapping, 16 + 32 + 16, &(bat as u64).to_le_bytes());
    let err = decode(&vhdx::SPEC, &overlapping).expect_err("overlapping regions");
    assert!(
        matches!(layout(&err), Some(LayoutError::Overlap { .. })),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------- vdi

const VDI_TYPE: usize = 0x4c;
const VDI_MAP: usize = 0x154;
const VDI_DISK_SIZE: usize = 0x170;
const VDI_BLOCK_SIZE: usize = 0x178;
const VDI_BLOCKS: usize = 0x180;

fn vdi_image() -> (Vec<u8>, Vec<u8>) {
    qemu_image("vdi", &[])
}

#[test]
fn qemus_vdis_decode_like_qemu() {
    let (img, want) = vdi_image();
    assert!(decode(&vdi::SPEC, &img).expect("dynamic") == want);
    let (img, want) = qemu_image("vdi", &["-o", "static=on"]);
    assert!(decode(&vdi::SPEC, &img).expect("static") == want);
}

#[test]
fn vdi_block_map_beyond_the_end_or_naming_bad_blocks_is_refused() {
    let (img, _) = vdi_image();
    let map = le32(&img, VDI_MAP) as usize;
    let mut beyond = img.clone();
    put(&mut beyond, VDI_MAP, &0x7000_0000u32.to_le_bytes());
    let len = beyond.len() as u64;
    let err = decode_with(&vdi::SPEC, &beyond, Some(len), 4096, BUDGET).expect_err("beyond");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::BeyondEnd {
                what: "block map",
                ..
            })
        ),
        "{err}"
    );
    let mut bad_block = img.clone();
    put(&mut bad_block, map, &1000u32.to_le_bytes());
    let err = decode(&vdi::SPEC, &bad_block).expect_err("bad block");
    assert!(
        matches!(
            err,
            DecodeError::Vdi(VdiError::BadBlock { entry: 1000, .. })
        ),
        "{err}"
    );
    let mut twice = img.clone();
    let first = le32(&img, map);
    put(&mut twice, map + 4, &first.to_le_bytes());
    let err = decode(&vdi::SPEC, &twice).expect_err("twice");
    assert!(
        matches!(layout(&err), Some(LayoutError::Overlap { .. })),
        "{err}"
    );
}

#[test]
fn vdi_differencing_and_bad_sizes_are_refused() {
    let (img, _) = vdi_image();
    let mut diff = img.clone();
    put(&mut diff, VDI_TYPE, &4u32.to_le_bytes());
    let err = decode(&vdi::SPEC, &diff).expect_err("diff");
    assert!(
        matches!(err, DecodeError::Vdi(VdiError::ImageType(4))),
        "{err}"
    );
    let mut huge = img.clone();
    put(&mut huge, VDI_BLOCKS, &u32::MAX.to_le_bytes());
    let mut too_big = img.clone();
    put(&mut too_big, VDI_DISK_SIZE, &(1u64 << 50).to_le_bytes());
    let mut odd_block = img.clone();
    put(&mut odd_block, VDI_BLOCK_SIZE, &1000u32.to_le_bytes());
    for (name, bad) in [
        ("blocks", huge),
        ("disk size", too_big),
        ("block size", odd_block),
    ] {
        let err = decode(&vdi::SPEC, &bad).expect_err(name);
        assert!(
            matches!(err, DecodeError::Vdi(VdiError::MalformedHeader(_))),
            "{name}: {err}"
        );
    }
}

/// A hand-built vdi header (version 1.1, dynamic) with `blocks` blocks of 512 bytes and the
/// block map right after the header; the map itself is the caller's.
fn vdi_header(blocks: u32) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    put(&mut h, 0x40, &0xbeda_107fu32.to_le_bytes()); // signature
    put(&mut h, 0x44, &0x0001_0001u32.to_le_bytes()); // version 1.1
    put(&mut h, 0x48, &0x180u32.to_le_bytes()); // header size
    put(&mut h, VDI_TYPE, &1u32.to_le_bytes()); // dynamic
    put(&mut h, VDI_MAP, &512u32.to_le_bytes()); // block map offset
    let data = 512 + u64::from(blocks) * 4;
    put(&mut h, 0x158, &(data as u32).to_le_bytes()); // data offset
    put(
        &mut h,
        VDI_DISK_SIZE,
        &(u64::from(blocks) * 512).to_le_bytes(),
    ); // disk size
    put(&mut h, VDI_BLOCK_SIZE, &512u32.to_le_bytes()); // block size
    put(&mut h, VDI_BLOCKS, &blocks.to_le_bytes()); // blocks in the image
    h
}

#[test]
fn a_block_map_naming_a_million_blocks_ahead_stays_within_the_budget() {
    // Every map entry names a distinct block, in reverse order so none can be merged; the
    // blocks never arrive. Over a stream each is remembered until its bytes come by: the
    // bookkeeping must hit the budget and stop, not grow with the map.
    let blocks = 1u32 << 20;
    let mut img = vdi_header(blocks);
    for i in 0..blocks {
        img.extend_from_slice(&(blocks - 1 - i).to_le_bytes());
    }
    let err = decode_with(&vdi::SPEC, &img, None, 1 << 20, 1 << 20).expect_err("over budget");
    assert!(
        matches!(
            layout(&err),
            Some(LayoutError::MetadataBudget {
                budget: 1048576,
                ..
            })
        ),
        "{err}"
    );
}

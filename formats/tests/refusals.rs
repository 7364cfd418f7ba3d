//! Every qcow2 refusal, each from a hand-built image (header fields patched one at a time) that
//! expects its specific error.

use bytes::Bytes;
use cdi_formats::qcow2::{
    CompressedCluster, ConvertSink, Header, MemoryStash, Qcow2Error, StreamConverter, StreamError,
    decompress_cluster,
};
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};

const CB: u32 = 16;
const CS: usize = 1 << CB;
const COPIED: u64 = 1 << 63;

/// A valid little image: three data clusters and one compressed cluster over 4 MiB.
fn valid() -> Qcow2Builder {
    Qcow2Builder::new(CB, 4 << 20)
        .with(0, Cluster::Data(vec![1; CS]))
        .with(5, Cluster::Data(vec![2; CS]))
        .with(7, Cluster::Compressed(vec![3; CS]))
        .with(63, Cluster::Data(vec![4; CS]))
}

fn put_u32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(img: &mut [u8], at: usize, v: u64) {
    img[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn get_u64(img: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(img[at..at + 8].try_into().expect("8 bytes"))
}

fn parse(img: &[u8]) -> Result<Header, Qcow2Error> {
    Header::parse(&img[..img.len().min(CS)], Some(img.len() as u64))
}

/// Collects the converted image, decoding compressed clusters inline.
#[derive(Default)]
struct Collect(Vec<(u64, Vec<u8>)>);

impl ConvertSink for Collect {
    type Error = Qcow2Error;
    fn data(&mut self, guest: u64, bytes: Bytes) -> Result<(), Qcow2Error> {
        self.0.push((guest, bytes.to_vec()));
        Ok(())
    }
    fn compressed(&mut self, c: CompressedCluster) -> Result<(), Qcow2Error> {
        let mut out = Vec::new();
        decompress_cluster(&c, &mut out)?;
        self.0.push((c.guest_offset, out));
        Ok(())
    }
}

/// Streams `img` through the converter; the error, if any, whatever stage raised it.
fn convert(img: &[u8], image_len: Option<u64>) -> Result<(), Qcow2Error> {
    let header = Header::parse(&img[..img.len().min(CS)], image_len)?;
    let mut c = StreamConverter::new(header, image_len, MemoryStash::new(), 64 << 20);
    let mut sink = Collect::default();
    let flatten = |e: StreamError<Qcow2Error>| match e {
        StreamError::Image(e) | StreamError::Sink(e) => e,
        StreamError::Stash(io) => panic!("stash: {io}"),
    };
    for chunk in img.chunks(CS) {
        c.feed_cluster(Bytes::copy_from_slice(chunk), &mut sink)
            .map_err(flatten)?;
    }
    c.finish(&mut sink).map(|_| ()).map_err(flatten)
}

#[test]
fn the_valid_image_is_accepted() {
    let img = valid().build();
    assert!(parse(&img).is_ok());
    assert_eq!(convert(&img, Some(img.len() as u64)), Ok(()));
}

#[test]
fn qcow2_with_backing_file_is_refused() {
    let mut b = valid();
    b.backing_file = Some("base.qcow2".into());
    assert_eq!(
        parse(&b.build()),
        Err(Qcow2Error::BackingFile("base.qcow2".into()))
    );
}

#[test]
fn qcow2_with_external_data_file_is_refused() {
    let mut b = valid();
    b.external_data_file = true;
    assert_eq!(parse(&b.build()), Err(Qcow2Error::ExternalDataFile));
}

#[test]
fn encrypted_qcow2_is_refused() {
    let mut b = valid();
    b.crypt_method = 2; // LUKS
    assert_eq!(parse(&b.build()), Err(Qcow2Error::Encrypted(2)));
}

#[test]
fn qcow2_marked_corrupt_is_refused() {
    let mut b = valid();
    b.corrupt = true;
    assert_eq!(parse(&b.build()), Err(Qcow2Error::CorruptBit));
}

#[test]
fn unknown_incompatible_features_are_refused_by_bit() {
    let mut b = valid();
    b.extra_incompatible = 1 << 20;
    assert_eq!(
        parse(&b.build()),
        Err(Qcow2Error::UnknownIncompatibleFeatures {
            bits: 1 << 20,
            names: "bit 20".into()
        })
    );
}

#[test]
fn unsupported_versions_are_refused() {
    for version in [1, 4] {
        let mut img = valid().build();
        put_u32(&mut img, 4, version); // version
        assert_eq!(parse(&img), Err(Qcow2Error::UnsupportedVersion(version)));
    }
}

#[test]
fn cluster_bits_out_of_range_are_refused() {
    for bits in [8, 22, 63] {
        let mut img = valid().build();
        put_u32(&mut img, 20, bits); // cluster_bits
        assert_eq!(parse(&img), Err(Qcow2Error::ClusterBitsOutOfRange(bits)));
    }
}

#[test]
fn oversized_l1_table_is_refused() {
    let mut img = valid().build();
    put_u32(&mut img, 36, (32 << 20) / 8 + 1); // l1_size: one entry over 32 MiB
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::TableTooLarge {
            what: "L1 table",
            ..
        })
    ));
}

#[test]
fn l1_table_too_small_for_the_virtual_size_is_refused() {
    let mut img = valid().build();
    put_u32(&mut img, 36, 0); // l1_size
    assert!(
        matches!(parse(&img), Err(Qcow2Error::MalformedHeader(m)) if m.contains("L1 table has 0 entries"))
    );
}

#[test]
fn oversized_refcount_table_is_refused() {
    let mut img = valid().build();
    put_u32(&mut img, 56, (8 << 20) / CS as u32 + 1); // refcount_table_clusters
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::TableTooLarge {
            what: "refcount table",
            ..
        })
    ));
}

#[test]
fn misaligned_table_offsets_are_refused() {
    let mut img = valid().build();
    let l1 = get_u64(&img, 40);
    put_u64(&mut img, 40, l1 + 512); // l1_table_offset
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::Misaligned {
            what: "L1 table",
            ..
        })
    ));
    let mut img = valid().build();
    put_u64(&mut img, 48, CS as u64 + 8); // refcount_table_offset
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::Misaligned {
            what: "refcount table",
            ..
        })
    ));
}

#[test]
fn overlapping_tables_are_refused() {
    let mut img = valid().build();
    let rt = get_u64(&img, 48);
    put_u64(&mut img, 40, rt); // L1 on top of the refcount table
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::Overlap {
            what: "refcount table",
            other: "L1 table",
            ..
        })
    ));
    let mut img = valid().build();
    put_u64(&mut img, 40, 0); // L1 on top of the header
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::Overlap {
            what: "L1 table",
            other: "header",
            ..
        })
    ));
}

#[test]
fn tables_beyond_the_end_of_the_image_are_refused() {
    let mut img = valid().build();
    let len = img.len() as u64;
    put_u64(&mut img, 40, len + CS as u64); // l1_table_offset past the end
    assert!(matches!(
        parse(&img),
        Err(Qcow2Error::OffsetBeyondEnd {
            what: "L1 table",
            ..
        })
    ));
}

#[test]
fn unknown_compression_type_is_refused() {
    let mut b = valid();
    b.zstd = true;
    let mut img = b.build();
    img[104] = 7; // compression_type
    assert_eq!(parse(&img), Err(Qcow2Error::UnknownCompressionType(7)));
}

#[test]
fn l1_entry_with_reserved_bits_is_refused() {
    let mut b = valid();
    let mut img = b.build();
    let l1 = get_u64(&img, 40) as usize;
    let entry = get_u64(&img, l1);
    b.l1_entry_override = Some((0, entry | 1 << 2));
    img = b.build();
    assert!(matches!(
        convert(&img, None),
        Err(Qcow2Error::MalformedL1Entry { index: 0, .. })
    ));
}

#[test]
fn misaligned_data_cluster_is_refused() {
    let mut b = valid();
    b.l2_entry_override = Some((5, COPIED | 0x10200));
    assert!(matches!(
        convert(&b.build(), None),
        Err(Qcow2Error::Misaligned {
            what: "data cluster",
            offset: 0x10200,
            ..
        })
    ));
}

#[test]
fn l2_entry_with_reserved_bits_is_refused() {
    let mut b = valid();
    b.l2_entry_override = Some((5, COPIED | 1 << 58 | 0x40000));
    assert!(matches!(
        convert(&b.build(), None),
        Err(Qcow2Error::MalformedL2Entry {
            reason: "reserved bits are set",
            ..
        })
    ));
}

#[test]
fn zero_flag_in_a_version_2_image_is_refused() {
    let mut b = valid().with(9, Cluster::ZeroFlag);
    b.version = 2;
    assert!(matches!(
        convert(&b.build(), None),
        Err(Qcow2Error::MalformedL2Entry {
            reason: "the zero flag is not allowed in a version 2 image",
            ..
        })
    ));
}

#[test]
fn subcluster_both_allocated_and_zero_is_refused() {
    let mut b = Qcow2Builder::new(CB, 4 << 20).with(
        1,
        Cluster::Subclusters {
            alloc: 1,
            zero: 1,
            data: vec![5; CS],
        },
    );
    b.extended_l2 = true;
    assert!(matches!(
        convert(&b.build(), None),
        Err(Qcow2Error::MalformedL2Entry {
            reason: "a subcluster is marked both allocated and zero",
            ..
        })
    ));
}

#[test]
fn compressed_cluster_of_the_wrong_length_is_refused() {
    let mut short =
        flate2::Compress::new_with_window_bits(flate2::Compression::default(), false, 12);
    let mut packed = Vec::with_capacity(2000);
    short
        .compress_vec(&[9u8; 1000], &mut packed, flate2::FlushCompress::Finish)
        .expect("deflate");
    let b = valid().with(11, Cluster::CompressedRaw(packed));
    assert_eq!(
        convert(&b.build(), None),
        Err(Qcow2Error::CompressedLength {
            guest: 11 * CS as u64,
            got: 1000,
            want: CS
        })
    );
}

#[test]
fn truncated_stream_is_refused_at_the_end() {
    let img = valid().build();
    let half = &img[..img.len() / 2];
    assert!(matches!(
        convert(half, None),
        Err(Qcow2Error::Truncated { .. })
    ));
}

#[test]
fn data_cluster_on_top_of_an_l2_table_is_refused() {
    let mut b = valid();
    let img = b.build();
    let l1 = get_u64(&img, 40) as usize;
    let l2 = get_u64(&img, l1) & 0x00ff_ffff_ffff_fe00;
    b.l2_entry_override = Some((5, COPIED | l2));
    assert!(matches!(
        convert(&b.build(), None),
        Err(Qcow2Error::Overlap {
            what: "data cluster",
            other: "L2 table",
            ..
        })
    ));
}

//! Property: any sparse qcow2 layout or raw disk, wrapped in any compression (or none), imports
//! to exactly the raw disk it describes.

use std::io::Write;

use bytes::Bytes;
use cdi_datapath::sink::{HOLE_GRANULE, MemorySink};
use cdi_datapath::source::Source;
use cdi_datapath::{Error, ImportSpec, Progress, import};
use cdi_testdata::qcow2::{Cluster, Layout, Qcow2Builder};
use cdi_testdata::raw::{Rng, text};
use proptest::prelude::*;

struct BytesSource(Bytes, usize);

impl Source for BytesSource {
    fn describe(&self) -> String {
        "test bytes".into()
    }
    fn total_len(&self) -> Option<u64> {
        None
    }
    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = self.0.len().min(self.1);
        Ok(Some(self.0.split_to(n)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Wrapper {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

fn wrap(w: Wrapper, data: &[u8]) -> Vec<u8> {
    match w {
        Wrapper::None => data.to_vec(),
        Wrapper::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        Wrapper::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).expect("xz");
            e.finish().expect("xz")
        }
        Wrapper::Zstd => zstd::encode_all(data, 1).expect("zstd"),
        Wrapper::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).expect("bzip2");
            e.finish().expect("bzip2")
        }
    }
}

fn wrapper() -> impl Strategy<Value = Wrapper> {
    prop_oneof![
        Just(Wrapper::None),
        Just(Wrapper::Gzip),
        Just(Wrapper::Xz),
        Just(Wrapper::Zstd),
        Just(Wrapper::Bzip2)
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::MetadataFirst),
        Just(Layout::L2AfterData),
        Just(Layout::L1Last)
    ]
}

fn build(
    seed: u64,
    cluster_bits: u32,
    clusters: u64,
    extended: bool,
    zstd: bool,
    layout: Layout,
) -> Qcow2Builder {
    let mut rng = Rng::new(seed);
    let cs = 1usize << cluster_bits;
    let virtual_size = clusters * cs as u64 - rng.below(cs as u64 / 2);
    let mut b = Qcow2Builder::new(cluster_bits, virtual_size);
    b.extended_l2 = extended;
    b.zstd = zstd;
    b.layout = layout;
    for g in 0..clusters {
        let c = match rng.below(7) {
            0 => Cluster::Data(text(&mut rng, cs)),
            1 => {
                let mut d = vec![0u8; cs];
                rng.fill(&mut d[..cs / 3]);
                Cluster::Data(d)
            }
            2 => Cluster::Compressed(text(&mut rng, cs)),
            3 => Cluster::ZeroFlag,
            4 if extended => Cluster::Subclusters {
                alloc: rng.next_u64() as u32 & 0x0f0f_0f0f,
                zero: 0xf0f0_0000,
                data: text(&mut rng, cs),
            },
            5 => Cluster::ZeroAllocated(vec![0xee; cs]),
            _ => continue,
        };
        b.clusters.insert(g, c);
    }
    b
}

fn import_bytes(data: Vec<u8>, chunk: usize) -> Vec<u8> {
    import_counting(data, chunk).0
}

/// The image, and how many of its bytes were written (the rest are holes).
fn import_counting(data: Vec<u8>, chunk: usize) -> (Vec<u8>, u64) {
    let (sink, image) = MemorySink::new(None);
    let spec = ImportSpec {
        memory_limit: 64 << 20,
        ..ImportSpec::default()
    };
    let report = import(
        Box::new(BytesSource(Bytes::from(data), chunk)),
        Box::new(sink),
        &spec,
        &Progress::new(),
    )
    .unwrap_or_else(|f| panic!("import failed: {}", f.error));
    let bytes = std::mem::take(&mut image.lock().expect("lock").bytes);
    (bytes, report.written)
}

/// Bytes the writer must write for `disk`: every hole granule that is not all zeros, and a
/// partial last granule.
fn non_zero_granule_bytes(disk: &[u8]) -> u64 {
    disk.chunks(HOLE_GRANULE)
        .filter(|g| g.len() < HOLE_GRANULE || g.iter().any(|&b| b != 0))
        .map(|g| g.len() as u64)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_qcow2_layout_in_any_wrapper_round_trips(
        seed in any::<u64>(),
        cluster_bits in prop_oneof![Just(9u32), Just(12), Just(14), Just(16)],
        clusters in 1u64..40,
        extended in any::<bool>(),
        zstd in any::<bool>(),
        layout in layout(),
        w in wrapper(),
        chunk in 1usize..200_000,
    ) {
        let extended = extended && cluster_bits >= 14;
        let b = build(seed, cluster_bits, clusters, extended, zstd, layout);
        let out = import_bytes(wrap(w, &b.build()), chunk);
        prop_assert!(out == b.expected_raw(), "{:?} {:?} extended={} zstd={}", layout, w, extended, zstd);
    }

    #[test]
    fn any_sparse_raw_disk_in_any_wrapper_round_trips(
        seed in any::<u64>(),
        size in 1usize..3_000_000,
        w in wrapper(),
        chunk in 1usize..300_000,
    ) {
        let disk = cdi_testdata::raw::sparse_disk(seed, size, 8192);
        let (out, written) = import_counting(wrap(w, &disk), chunk);
        prop_assert!(out == disk, "{:?}", w);
        // Equally sparse whatever the chunking: a zero granule split across chunks is a hole.
        prop_assert_eq!(written, non_zero_granule_bytes(&disk), "{:?} chunk={}", w, chunk);
    }
}

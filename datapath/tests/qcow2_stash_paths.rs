//! qcow2 images whose data arrives before the L2 tables that map it: the three ways early
//! clusters are kept (memory, spill file, re-reading a random-access source) all convert exactly.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cdi_datapath::sink::{MemorySink, memory::MemoryImage};
use cdi_datapath::source::{FileSource, Source};
use cdi_datapath::{Error, ImportReport, ImportSpec, Progress, import};
use cdi_testdata::qcow2::{Cluster, Layout, Qcow2Builder};
use cdi_testdata::raw::{Rng, text};

/// An in-memory source that offers no random access, like a download.
struct BytesSource(Option<Bytes>);

impl Source for BytesSource {
    fn describe(&self) -> String {
        "test bytes".into()
    }
    fn total_len(&self) -> Option<u64> {
        None
    }
    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(b) = self.0.as_mut() else {
            return Ok(None);
        };
        if b.is_empty() {
            return Ok(None);
        }
        Ok(Some(b.split_to(b.len().min(100_000))))
    }
}

fn image(layout: Layout) -> Qcow2Builder {
    let mut rng = Rng::new(7);
    let mut b = Qcow2Builder::new(12, 24 << 20);
    b.layout = layout;
    for g in 0..(24 << 20) / 4096u64 {
        let c = match rng.below(6) {
            0 => Cluster::Data(text(&mut rng, 4096)),
            1 => Cluster::Compressed(text(&mut rng, 4096)),
            2 => Cluster::Compressed(vec![b'x'; 100 + rng.below(3000) as usize]),
            3 => Cluster::ZeroFlag,
            _ => continue,
        };
        b.clusters.insert(g, c);
    }
    b
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

fn run(source: Box<dyn Source>, memory_limit: usize) -> (ImportReport, Arc<Mutex<MemoryImage>>) {
    let (sink, image) = MemorySink::new(None);
    let spec = ImportSpec {
        memory_limit,
        spill_dir: std::env::temp_dir(),
        ..ImportSpec::default()
    };
    let report = import(source, Box::new(sink), &spec, &Progress::new()).expect("import succeeds");
    (report, image)
}

#[test]
fn late_l2_tables_in_a_download_are_kept_in_memory_within_the_limit() {
    for layout in [Layout::L2AfterData, Layout::L1Last] {
        let b = image(layout);
        let source = BytesSource(Some(Bytes::from(gzip(&b.build()))));
        let (report, out) = run(Box::new(source), 256 << 20);
        assert_eq!(report.decode.spilled_bytes, 0, "{layout:?}");
        assert!(!report.decode.used_random_access);
        assert!(
            report.decode.qcow2.expect("qcow2 stats").stashed_clusters > 0,
            "{layout:?}"
        );
        assert!(
            out.lock().expect("lock").bytes == b.expected_raw(),
            "{layout:?} content"
        );
    }
}

#[test]
fn late_l2_tables_beyond_the_memory_limit_spill_to_a_file() {
    let b = image(Layout::L2AfterData);
    let source = BytesSource(Some(Bytes::from(b.build())));
    let (report, out) = run(Box::new(source), 1 << 20);
    assert!(
        report.decode.spilled_bytes > 1 << 20,
        "spilled {}",
        report.decode.spilled_bytes
    );
    assert!(out.lock().expect("lock").bytes == b.expected_raw());
}

#[test]
fn late_l2_tables_in_a_local_file_are_reread_instead_of_kept() {
    let b = image(Layout::L1Last);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("late.qcow2");
    std::fs::write(&path, b.build()).expect("write image");
    let source = FileSource::open(&path).expect("open");
    let (report, out) = run(Box::new(source), 1 << 20);
    assert!(report.decode.used_random_access);
    assert_eq!(report.decode.spilled_bytes, 0);
    assert!(out.lock().expect("lock").bytes == b.expected_raw());
}

#[test]
fn metadata_over_the_memory_budget_is_refused_with_a_clear_error() {
    let b = image(Layout::L2AfterData);
    let source = BytesSource(Some(Bytes::from(b.build())));
    let (sink, _) = MemorySink::new(None);
    let spec = ImportSpec {
        memory_limit: 16 << 10,
        ..ImportSpec::default()
    };
    let failure = import(Box::new(source), Box::new(sink), &spec, &Progress::new())
        .expect_err("budget too small");
    assert!(
        matches!(
            failure.error,
            Error::Qcow2(cdi_formats::qcow2::Qcow2Error::MetadataBudget { .. })
        ),
        "{:?}",
        failure.error
    );
}

//! Conformance with `qemu-img` as the oracle for vmdk, vhd, vhdx and vdi: every variant qemu
//! writes (each subformat option), bare and wrapped in gzip, xz and zstd, imports
//! byte-identical to `qemu-img convert -O raw` of the same image, and at least as sparse;
//! from a local file (random access), through the page cache and with direct I/O alike, and
//! from a download-like source (no random access).

mod support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cdi_datapath::sink::{CacheMode, FileSink, TargetOptions};
use cdi_datapath::source::{FileSource, Source};
use cdi_datapath::{ImportReport, ImportSpec, Progress, import};
use cdi_formats::Format;
use cdi_testdata::qemu::{allocated_bytes, compress_file, convert_to_raw_from, raw_to};
use cdi_testdata::raw::sparse_disk;
use support::Download;

/// Not a whole number of any block size, so every format's last block is partial.
const DISK: usize = (6 << 20) + (20 << 10);

struct Work {
    dir: tempfile::TempDir,
    raw: PathBuf,
}

fn work() -> Work {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, sparse_disk(20, DISK, 16 << 10)).expect("write raw");
    Work { dir, raw }
}

impl Work {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `qemu-img convert -O format [args]` of the raw disk.
    fn image(&self, name: &str, format: &str, args: &[&str]) -> PathBuf {
        let out = self.path(name);
        raw_to(format, &self.raw, &out, args);
        out
    }
}

fn import_to(source: Box<dyn Source>, dest: &Path, cache: CacheMode) -> ImportReport {
    let options = TargetOptions {
        cache,
        ..TargetOptions::default()
    };
    let sink = FileSink::create(dest, options).expect("create target");
    let spec = ImportSpec {
        spill_dir: dest.parent().expect("dir").to_path_buf(),
        ..ImportSpec::default()
    };
    import(source, Box::new(sink), &spec, &Progress::new())
        .unwrap_or_else(|f| panic!("importing into {}: {}", dest.display(), f.error))
}

/// Imports `image` (of qemu format `qemu_format`, possibly wrapped as `wrapped`) four ways and
/// asserts each is identical to qemu-img's conversion of `image` and as sparse.
fn conforms(w: &Work, image: &Path, qemu_format: &str, want: Format) {
    let name = image
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let qemu_out = w.path(&format!("{name}.qemu"));
    convert_to_raw_from(qemu_format, image, &qemu_out);
    let expected = std::fs::read(&qemu_out).expect("qemu output");
    let qemu_alloc = allocated_bytes(&qemu_out);

    let mut inputs: Vec<(String, PathBuf)> = vec![("bare".into(), image.to_path_buf())];
    for (tool, ext) in [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")] {
        let wrapped = w.path(&format!("{name}.{ext}"));
        compress_file(tool, image, &wrapped);
        inputs.push((ext.into(), wrapped));
    }
    for (how, input) in inputs {
        let caches: &[CacheMode] = if how == "bare" {
            &[CacheMode::PageCache, CacheMode::Direct]
        } else {
            &[CacheMode::Auto]
        };
        for &cache in caches {
            let out = w.path(&format!("{name}.{how}.{cache:?}.ours"));
            let source = FileSource::open(&input).expect("open source");
            let report = import_to(Box::new(source), &out, cache);
            check(
                &out,
                &expected,
                qemu_alloc,
                &format!("{name} {how} {cache:?}"),
            );
            assert_eq!(report.decode.image_format, Some(want), "{name} {how}");
            assert_eq!(report.sink.final_size, expected.len() as u64);
            std::fs::remove_file(&out).expect("remove output");
        }
    }
    // A download: the length is known, random access is not.
    let out = w.path(&format!("{name}.download.ours"));
    let bytes = Bytes::from(std::fs::read(image).expect("read image"));
    let report = import_to(Box::new(Download::new(bytes)), &out, CacheMode::Auto);
    check(&out, &expected, qemu_alloc, &format!("{name} download"));
    assert!(!report.decode.used_random_access);
    std::fs::remove_file(&out).expect("remove output");
}

fn check(out: &Path, expected: &[u8], qemu_alloc: u64, what: &str) {
    let got = std::fs::read(out).expect("our output");
    assert_eq!(got.len(), expected.len(), "{what}: size");
    assert!(
        got == expected,
        "{what}: content differs from qemu-img convert"
    );
    let ours = allocated_bytes(out);
    assert!(
        ours <= qemu_alloc + (64 << 10),
        "{what}: {ours} bytes allocated, qemu-img {qemu_alloc}"
    );
}

#[test]
fn vmdk_variants_convert_like_qemu_img() {
    let w = work();
    for subformat in ["streamOptimized", "monolithicSparse"] {
        let image = w.image(
            &format!("{subformat}.vmdk"),
            "vmdk",
            &["-o", &format!("subformat={subformat}")],
        );
        conforms(&w, &image, "vmdk", Format::Vmdk);
    }
}

#[test]
fn vhd_variants_convert_like_qemu_img() {
    let w = work();
    for subformat in ["dynamic", "fixed"] {
        let image = w.image(
            &format!("{subformat}.vhd"),
            "vpc",
            &["-o", &format!("subformat={subformat}")],
        );
        conforms(&w, &image, "vpc", Format::Vhd);
    }
    // force_size keeps the exact size instead of rounding to a CHS geometry.
    let image = w.image(
        "forced.vhd",
        "vpc",
        &["-o", "subformat=dynamic,force_size=on"],
    );
    conforms(&w, &image, "vpc", Format::Vhd);
}

#[test]
fn vhdx_variants_convert_like_qemu_img() {
    let w = work();
    let variants: &[(&str, &[&str])] = &[
        ("dynamic.vhdx", &[]),
        ("fixed.vhdx", &["-o", "subformat=fixed"]),
        ("small-blocks.vhdx", &["-o", "block_size=1M"]),
        ("big-log.vhdx", &["-o", "block_size=2M,log_size=2M"]),
        ("zero-state.vhdx", &["-o", "block_state_zero=on"]),
    ];
    for (name, args) in variants {
        let image = w.image(name, "vhdx", args);
        conforms(&w, &image, "vhdx", Format::Vhdx);
    }
}

#[test]
fn vdi_variants_convert_like_qemu_img() {
    let w = work();
    for (name, args) in [
        ("dynamic.vdi", &[][..]),
        ("static.vdi", &["-o", "static=on"][..]),
    ] {
        let image = w.image(name, "vdi", args);
        conforms(&w, &image, "vdi", Format::Vdi);
    }
}

#[test]
fn monolithic_flat_vmdk_is_refused_and_its_extent_imports_as_raw() {
    let w = work();
    let descriptor = w.image("flat.vmdk", "vmdk", &["-o", "subformat=monolithicFlat"]);
    let source = FileSource::open(&descriptor).expect("open");
    let dest = w.path("flat.out");
    let sink = FileSink::create(&dest, TargetOptions::default()).expect("target");
    let failure = import(
        Box::new(source),
        Box::new(sink),
        &ImportSpec::default(),
        &Progress::new(),
    )
    .expect_err("a descriptor naming another file is refused");
    assert_eq!(failure.error.kind(), cdi_datapath::ErrorKind::Unsupported);
    assert!(
        failure.error.to_string().contains("\"flat-flat.vmdk\""),
        "{}",
        failure.error
    );
    assert!(!dest.exists());
    // The extent itself is the raw disk.
    let extent = w.path("flat-flat.vmdk");
    let report = import_to(
        Box::new(FileSource::open(&extent).expect("open")),
        &dest,
        CacheMode::Auto,
    );
    assert_eq!(report.decode.image_format, Some(Format::Raw));
    assert!(std::fs::read(&dest).expect("out") == std::fs::read(&w.raw).expect("raw"));
}

//! Conformance with `qemu-img` as the oracle: every qcow2 variant qemu can write, and every
//! compression wrapper around raw and qcow2, imports byte-identical to `qemu-img convert -O raw`
//! (and to the raw input where the active layer was not changed), and at least as sparse;
//! through the page cache and with direct I/O alike.

use std::path::{Path, PathBuf};
use std::process::Command;

use cdi_datapath::sink::{CacheMode, FileSink, TargetOptions};
use cdi_datapath::source::FileSource;
use cdi_datapath::{ImportReport, ImportSpec, Progress, import};
use cdi_testdata::qemu::{allocated_bytes, compress_file, convert_to_raw, qemu_img, raw_to_qcow2};
use cdi_testdata::raw::sparse_disk;

const DISK: usize = 6 << 20;

struct Work {
    dir: tempfile::TempDir,
    raw: PathBuf,
}

fn work() -> Work {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    let data = sparse_disk(42, DISK, 64 << 10);
    std::fs::write(&raw, &data).expect("write raw");
    // Make the raw file itself sparse where it is zero, as a real image would be.
    let sparse = dir.path().join("sparse.raw");
    let ok = Command::new("cp")
        .args(["--sparse=always"])
        .arg(&raw)
        .arg(&sparse)
        .status()
        .expect("cp");
    assert!(ok.success());
    std::fs::rename(&sparse, &raw).expect("rename");
    Work { dir, raw }
}

impl Work {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ours(src: &Path, dest: &Path, cache: CacheMode) -> ImportReport {
    let source = FileSource::open(src).expect("open source");
    let options = TargetOptions {
        cache,
        ..TargetOptions::default()
    };
    let sink = FileSink::create(dest, options).expect("create target");
    let spec = ImportSpec {
        spill_dir: dest.parent().expect("dir").to_path_buf(),
        ..ImportSpec::default()
    };
    import(Box::new(source), Box::new(sink), &spec, &Progress::new())
        .unwrap_or_else(|f| panic!("importing {}: {}", src.display(), f.error))
}

/// Imports `image` with us and with qemu-img; asserts identical bytes and sparseness.
fn conforms(w: &Work, image: &Path, same_as_input: bool) {
    let name = image
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ours_out = w.path(&format!("{name}.ours"));
    let direct_out = w.path(&format!("{name}.direct"));
    let qemu_out = w.path(&format!("{name}.qemu"));
    let report = ours(image, &ours_out, CacheMode::PageCache);
    let direct_report = ours(image, &direct_out, CacheMode::Direct);
    let qemu_source = match image.extension().and_then(|e| e.to_str()) {
        // qemu-img reads neither gzip nor xz: give it what is inside.
        Some("gz" | "xz" | "zst" | "bz2") => {
            let inner = w.path(
                &name
                    .rsplit_once('.')
                    .expect("ext")
                    .0
                    .replace('.', "-inner."),
            );
            let tool = match image.extension().and_then(|e| e.to_str()) {
                Some("gz") => "gzip",
                Some("xz") => "xz",
                Some("zst") => "zstd",
                _ => "bzip2",
            };
            let out = Command::new(tool)
                .args(["-dc"])
                .arg(image)
                .output()
                .expect("decompress");
            std::fs::write(&inner, out.stdout).expect("inner");
            inner
        }
        _ => image.to_path_buf(),
    };
    convert_to_raw(&qemu_source, &qemu_out);
    let a = std::fs::read(&ours_out).expect("ours");
    let b = std::fs::read(&qemu_out).expect("qemu");
    assert_eq!(a.len(), b.len(), "{name}: size");
    assert!(a == b, "{name}: content differs from qemu-img convert");
    if same_as_input {
        assert!(
            a == std::fs::read(&w.raw).expect("raw"),
            "{name}: content differs from the raw input"
        );
    }
    let (ours_alloc, qemu_alloc) = (allocated_bytes(&ours_out), allocated_bytes(&qemu_out));
    assert!(
        ours_alloc <= qemu_alloc + (64 << 10),
        "{name}: {ours_alloc} bytes allocated, qemu-img {qemu_alloc}"
    );
    assert_eq!(report.sink.final_size, b.len() as u64);
    // Direct I/O: the same bytes, just as sparse.
    assert!(
        std::fs::read(&direct_out).expect("direct") == a,
        "{name}: direct I/O output differs"
    );
    assert_eq!(
        allocated_bytes(&direct_out),
        ours_alloc,
        "{name}: direct I/O output allocated differently"
    );
    assert_eq!(direct_report.written, report.written);
}

fn qcow2(w: &Work, name: &str, args: &[&str]) -> PathBuf {
    let out = w.path(name);
    raw_to_qcow2(&w.raw, &out, args);
    out
}

#[test]
fn qcow2_variants_convert_like_qemu_img() {
    let w = work();
    let variants: &[(&str, &[&str])] = &[
        ("v3.qcow2", &[]),
        ("v2.qcow2", &["-o", "compat=0.10"]),
        ("c512.qcow2", &["-o", "cluster_size=512"]),
        ("c4k.qcow2", &["-o", "cluster_size=4096"]),
        ("c2m.qcow2", &["-o", "cluster_size=2M"]),
        ("zlib.qcow2", &["-c"]),
        ("zlib-c4k.qcow2", &["-c", "-o", "cluster_size=4096"]),
        ("zstd.qcow2", &["-c", "-o", "compression_type=zstd"]),
        ("extl2.qcow2", &["-o", "extended_l2=on"]),
        (
            "extl2-zstd.qcow2",
            &["-c", "-o", "extended_l2=on,compression_type=zstd"],
        ),
        ("meta-prealloc.qcow2", &["-o", "preallocation=metadata"]),
    ];
    for (name, args) in variants {
        let img = qcow2(&w, name, args);
        qemu_img(&["check", img.to_str().expect("utf8")]);
        conforms(&w, &img, true);
    }
}

#[test]
fn dirty_lazy_refcount_image_converts() {
    let w = work();
    let img = qcow2(&w, "lazy.qcow2", &["-o", "lazy_refcounts=on"]);
    // Set the dirty bit (incompatible feature bit 0), as a crashed writer leaves it.
    let mut bytes = std::fs::read(&img).expect("read");
    bytes[79] |= 1;
    std::fs::write(&img, bytes).expect("write");
    assert!(qemu_img(&["info", img.to_str().expect("utf8")]).contains("lazy refcounts: true"));
    conforms(&w, &img, true);
}

#[test]
fn image_with_an_internal_snapshot_converts_its_active_layer() {
    let w = work();
    let img = qcow2(&w, "snap.qcow2", &[]);
    let p = img.to_str().expect("utf8");
    qemu_img(&["snapshot", "-c", "before", p]);
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x55 0 64k",
            "-c",
            "write -z 1M 512k",
            "-c",
            "write -P 0x66 5M 128k",
            p,
        ])
        .output()
        .expect("qemu-io");
    assert!(
        io.status.success(),
        "{}",
        String::from_utf8_lossy(&io.stderr)
    );
    assert!(qemu_img(&["snapshot", "-l", p]).contains("before"));
    conforms(&w, &img, false);
}

#[test]
fn zero_clusters_with_and_without_allocation_convert() {
    let w = work();
    let img = qcow2(&w, "zeros.qcow2", &[]);
    let p = img.to_str().expect("utf8");
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -z 0 1M",
            "-c",
            "write -z -u 2M 1M",
            "-c",
            "write -P 0x11 4M 64k",
            p,
        ])
        .output()
        .expect("qemu-io");
    assert!(
        io.status.success(),
        "{}",
        String::from_utf8_lossy(&io.stderr)
    );
    conforms(&w, &img, false);
}

#[test]
fn every_compression_wrapper_around_raw_and_qcow2_converts() {
    let w = work();
    let q = qcow2(&w, "inner.qcow2", &[]);
    let qc = qcow2(&w, "innerc.qcow2", &["-c"]);
    for (tool, ext) in [
        ("gzip", "gz"),
        ("xz", "xz"),
        ("zstd", "zst"),
        ("bzip2", "bz2"),
    ] {
        for src in [&w.raw, &q, &qc] {
            let stem = src
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let wrapped = w.path(&format!("{stem}.{ext}"));
            compress_file(tool, src, &wrapped);
            conforms(&w, &wrapped, true);
        }
    }
}

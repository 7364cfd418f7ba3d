//! Importing the formats beyond qcow2 end to end through the data path: OVA appliances (one
//! disk found and imported; several, none, or a cut archive refused), refusals that leave
//! nothing behind, sizes checked against the target before writing, a fixed vhd over a stream,
//! and the stash spilling when a vhdx's tables wait for its metadata.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cdi_datapath::sink::memory::MemoryImage;
use cdi_datapath::sink::{FileSink, MemorySink, TargetOptions};
use cdi_datapath::source::{FileSource, Source};
use cdi_datapath::{Error, ErrorKind, ImportFailure, ImportReport, ImportSpec, Progress, import};
use cdi_formats::Format;
use cdi_testdata::qemu::{convert_to_raw_from, raw_to};
use cdi_testdata::raw::sparse_disk;
use support::Download;

const DISK: usize = 4 << 20;

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("disk.raw"), sparse_disk(9, DISK, 32 << 10)).expect("raw");
        Work { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An image of the raw disk in `format` and what qemu-img converts it back to.
    fn image(&self, name: &str, format: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let img = self.path(name);
        raw_to(format, &self.path("disk.raw"), &img, args);
        let back = self.path(&format!("{name}.raw"));
        convert_to_raw_from(format, &img, &back);
        let pair = (read(&img), read(&back));
        std::fs::remove_file(&img).expect("rm");
        std::fs::remove_file(&back).expect("rm");
        pair
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

/// Imports the file `src` into a file target beside it.
fn import_file(src: &Path, spec: &ImportSpec) -> Result<ImportReport, ImportFailure> {
    let source = FileSource::open(src).expect("open");
    let dest = src.with_file_name("out.img");
    let sink = FileSink::create(&dest, TargetOptions::default()).expect("target");
    import(Box::new(source), Box::new(sink), spec, &Progress::new())
}

fn import_memory(
    source: Box<dyn Source>,
    capacity: Option<u64>,
    spec: &ImportSpec,
) -> (Result<ImportReport, ImportFailure>, Arc<Mutex<MemoryImage>>) {
    let (sink, image) = MemorySink::new(capacity);
    (
        import(source, Box::new(sink), spec, &Progress::new()),
        image,
    )
}

/// Nothing in `dir` but the files named.
fn only(dir: &Path, names: &[&str]) {
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(left, want, "files left in {}", dir.display());
}

// ------------------------------------------------------------------------------------- OVA

fn ovf(files: &[(&str, &str)], disks: &[&str]) -> String {
    let files: String = files
        .iter()
        .map(|(id, href)| format!("    <File ovf:href=\"{href}\" ovf:id=\"{id}\"/>\n"))
        .collect();
    let disks: String = disks
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "    <Disk ovf:capacity=\"4\" ovf:diskId=\"vmdisk{i}\" ovf:fileRef=\"{id}\"/>\n"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?>\n<Envelope xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\n\
         <References>\n{files}</References>\n<DiskSection>\n{disks}</DiskSection>\n</Envelope>\n"
    )
}

/// A tar of the entries given, in order.
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

#[test]
fn an_ova_with_one_vmdk_imports_its_disk() {
    let w = Work::new();
    let (vmdk, want) = w.image("disk.vmdk", "vmdk", &["-o", "subformat=streamOptimized"]);
    let descriptor = ovf(&[("file1", "vm-disk1.vmdk")], &["file1"]);
    let ova = tar(&[
        ("vm.ovf", descriptor.as_bytes()),
        ("vm-disk1.vmdk", &vmdk),
        ("vm.mf", b"SHA256(vm.ovf)= 00\n"),
    ]);
    let src = w.path("vm.ova");
    std::fs::write(&src, &ova).expect("write");
    let report = import_file(&src, &ImportSpec::default()).expect("imports");
    assert_eq!(report.decode.archive, Some(Format::Ova));
    assert_eq!(report.decode.image_format, Some(Format::Vmdk));
    assert!(read(&w.path("out.img")) == want);
    // The same over a download.
    let (result, image) = import_memory(Box::new(Download::new(ova)), None, &ImportSpec::default());
    result.expect("imports");
    assert!(image.lock().expect("lock").bytes == want);
}

#[test]
fn an_ova_whose_disk_is_another_format_or_compressed_imports() {
    let w = Work::new();
    let (vhdx, want) = w.image("disk.vhdx", "vhdx", &[]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vhdx).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let descriptor = ovf(&[("f", "./disk.vhdx.gz")], &["f"]);
    let ova = tar(&[
        ("appliance.ovf", descriptor.as_bytes()),
        ("disk.vhdx.gz", &gz),
    ]);
    let src = w.path("vm.ova");
    std::fs::write(&src, &ova).expect("write");
    let report = import_file(&src, &ImportSpec::default()).expect("imports");
    assert_eq!(report.decode.layers, vec![Format::Gzip]);
    assert_eq!(report.decode.image_format, Some(Format::Vhdx));
    assert!(read(&w.path("out.img")) == want);
}

#[test]
fn an_ova_with_several_disks_is_refused_listing_them() {
    let w = Work::new();
    let descriptor = ovf(&[("a", "disk-a.vmdk"), ("b", "disk-b.vmdk")], &["a", "b"]);
    let ova = tar(&[
        ("vm.ovf", descriptor.as_bytes()),
        ("disk-a.vmdk", b"x"),
        ("disk-b.vmdk", b"y"),
    ]);
    let src = w.path("vm.ova");
    std::fs::write(&src, &ova).expect("write");
    let failure = import_file(&src, &ImportSpec::default()).expect_err("refused");
    assert_eq!(failure.error.kind(), ErrorKind::Unsupported);
    let message = failure.error.to_string();
    assert!(
        message.contains("2 disk images (\"disk-a.vmdk\", \"disk-b.vmdk\")"),
        "{message}"
    );
    only(w.dir.path(), &["disk.raw", "vm.ova"]);
}

#[test]
fn an_ova_without_its_disk_or_cut_short_is_refused_and_leaves_nothing() {
    let w = Work::new();
    let (vmdk, _) = w.image("disk.vmdk", "vmdk", &["-o", "subformat=streamOptimized"]);
    let descriptor = ovf(&[("file1", "vm-disk1.vmdk")], &["file1"]);
    let missing = tar(&[("vm.ovf", descriptor.as_bytes()), ("other.vmdk", &vmdk)]);
    let whole = tar(&[("vm.ovf", descriptor.as_bytes()), ("vm-disk1.vmdk", &vmdk)]);
    let cut = whole[..whole.len() / 2].to_vec();
    for (name, bytes, want) in [
        ("missing.ova", missing, "the archive has no such file"),
        ("cut.ova", cut, "truncated"),
    ] {
        let src = w.path(name);
        std::fs::write(&src, &bytes).expect("write");
        let failure = import_file(&src, &ImportSpec::default()).expect_err(name);
        assert_eq!(failure.error.kind(), ErrorKind::InvalidImage, "{name}");
        assert!(
            failure.error.to_string().contains(want),
            "{name}: {}",
            failure.error
        );
        std::fs::remove_file(&src).expect("rm");
        only(w.dir.path(), &["disk.raw"]);
    }
}

// ------------------------------------------------------------------------------- refusals

#[test]
fn refused_images_of_every_format_leave_nothing_behind() {
    let w = Work::new();
    let (mut vmdk, _) = w.image("a.vmdk", "vmdk", &["-o", "subformat=monolithicSparse"]);
    let at = vmdk
        .windows(18)
        .position(|x| x == b"parentCID=ffffffff")
        .expect("descriptor");
    vmdk[at + 10..at + 18].copy_from_slice(b"12345678");
    let (mut vhdx, _) = w.image("a.vhdx", "vhdx", &[]);
    for h in [64 << 10, 128 << 10] {
        vhdx[h + 48..h + 64].fill(0x11); // a log GUID: a log to replay
        let c = cdi_formats::vhdx::crc32c_skipping(&vhdx[h..h + 4096], 4);
        vhdx[h + 4..h + 8].copy_from_slice(&c.to_le_bytes());
    }
    let (mut vdi, _) = w.image("a.vdi", "vdi", &[]);
    vdi[0x4c..0x50].copy_from_slice(&4u32.to_le_bytes()); // differencing
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "parent.vmdk",
            vmdk,
            "depends on a parent image (parentCID=12345678)",
        ),
        ("log.vhdx", vhdx, "the vhdx log is not empty"),
        ("diff.vdi", vdi, "vdi image type 4 is not supported"),
    ];
    for (name, bytes, want) in cases {
        let src = w.path(name);
        std::fs::write(&src, &bytes).expect("write");
        let failure = import_file(&src, &ImportSpec::default()).expect_err(name);
        assert_eq!(failure.error.kind(), ErrorKind::Unsupported, "{name}");
        assert!(
            failure.error.to_string().contains(want),
            "{name}: {}",
            failure.error
        );
        assert!(
            failure.target_state.contains("removed"),
            "{}",
            failure.target_state
        );
        std::fs::remove_file(&src).expect("rm");
        only(w.dir.path(), &["disk.raw"]);
    }
}

#[test]
fn images_larger_than_the_target_are_refused_before_a_byte_is_written() {
    let w = Work::new();
    for (name, format, args) in [
        ("big.vhdx", "vhdx", &[][..]),
        ("big.vmdk", "vmdk", &["-o", "subformat=streamOptimized"][..]),
        ("big.vdi", "vdi", &[][..]),
        ("big.vhd", "vpc", &["-o", "subformat=fixed"][..]),
    ] {
        let (img, _) = w.image(name, format, args);
        let (result, image) = import_memory(
            Box::new(Download::new(img)),
            Some(1 << 20),
            &ImportSpec::default(),
        );
        let failure = result.expect_err(name);
        assert!(
            matches!(
                failure.error,
                Error::TooLarge {
                    capacity: 1048576,
                    ..
                }
            ),
            "{name}: {}",
            failure.error
        );
        assert_eq!(image.lock().expect("lock").writes, 0, "{name}");
    }
}

#[test]
fn a_fixed_vhd_over_a_stream_fills_a_target_of_exactly_its_size() {
    let w = Work::new();
    let (vhd, want) = w.image("fixed.vhd", "vpc", &["-o", "subformat=fixed"]);
    assert_eq!(vhd.len(), want.len() + 512, "the disk, then the footer");
    let (result, image) = import_memory(
        Box::new(Download::new(vhd)),
        Some(want.len() as u64),
        &ImportSpec::default(),
    );
    let report = result.expect("imports");
    assert_eq!(report.decode.image_format, Some(Format::Vhd));
    assert_eq!(report.decode.image_size, want.len() as u64);
    assert!(image.lock().expect("lock").bytes == want);
}

#[test]
fn vhdx_tables_waiting_for_their_metadata_spill_beyond_the_memory_limit() {
    let w = Work::new();
    let (vhdx, want) = w.image("disk.vhdx", "vhdx", &[]);
    let spec = ImportSpec {
        memory_limit: 1 << 20,
        spill_dir: w.dir.path().to_path_buf(),
        ..ImportSpec::default()
    };
    // Whole MiB pieces: qemu's 1 MiB metadata region then reaches the decoder as it arrived.
    // Cut unevenly it is gathered into one piece first, a copy that alone would be over the
    // quarter of this 1 MiB limit the decoder's bookkeeping may use.
    let download = Download(Bytes::from(vhdx), 1 << 20);
    let (result, image) = import_memory(Box::new(download), None, &spec);
    let report = result.expect("imports");
    assert!(
        report.decode.spilled_bytes > 0,
        "spilled {}",
        report.decode.spilled_bytes
    );
    assert!(image.lock().expect("lock").bytes == want);
}

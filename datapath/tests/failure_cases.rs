//! Failures never leave an image that looks complete: truncated streams, full disks, checksum
//! mismatches, images too large for the target, and formats we refuse.

use std::path::{Path, PathBuf};
use std::process::Command;

use cdi_datapath::sink::{
    BlockSink, CacheMode, MemorySink, RangeSet, Sink, SinkReport, TargetOptions, ZeroMode,
    open_target,
};
use cdi_datapath::source::FileSource;
use cdi_datapath::{
    Algorithm, Error, ErrorKind, FormatChoice, ImportFailure, ImportReport, ImportSpec,
    PendingChecksum, Progress, import,
};
use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, sparse_disk, text};
use sha2::Digest;

fn image() -> Qcow2Builder {
    let mut rng = Rng::new(99);
    let mut b = Qcow2Builder::new(16, 8 << 20);
    for g in 0..128u64 {
        match rng.below(3) {
            0 => {
                b.clusters
                    .insert(g, Cluster::Compressed(text(&mut rng, 65536)));
            }
            1 => {
                let mut d = vec![0u8; 65536];
                rng.fill(&mut d);
                b.clusters.insert(g, Cluster::Data(d));
            }
            _ => {}
        }
    }
    b
}

fn run(
    src: &Path,
    dest: &Path,
    spec: &ImportSpec,
    options: TargetOptions,
) -> Result<ImportReport, ImportFailure> {
    let source = FileSource::open(src).expect("open");
    let sink = open_target(dest, options).expect("target");
    import(Box::new(source), sink, spec, &Progress::new())
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

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("join").expect("write");
    out.stdout
}

#[test]
fn truncated_streams_fail_and_leave_nothing() {
    let q = image().build();
    let raw = sparse_disk(1, 4 << 20, 65536);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("img.qcow2", q.clone()),
        ("img.qcow2.gz", compress("gzip", &q)),
        ("img.raw.xz", compress("xz", &raw)),
        ("img.raw.zst", compress("zstd", &raw)),
        ("img.raw.bz2", compress("bzip2", &raw)),
    ];
    for (name, bytes) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join(name);
        std::fs::write(&src, &bytes[..bytes.len() / 2]).expect("write");
        let failure = run(
            &src,
            &dir.path().join("disk.img"),
            &ImportSpec::default(),
            TargetOptions::default(),
        )
        .expect_err(name);
        assert!(
            matches!(
                failure.error.kind(),
                ErrorKind::InvalidImage | ErrorKind::Network
            ),
            "{name}: {}",
            failure.error
        );
        only(dir.path(), &[name]);
    }
}

#[test]
fn checksum_mismatch_leaves_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let spec = ImportSpec {
        checksum: Some(format!("sha256:{}", "a".repeat(64)).parse().expect("valid")),
        ..ImportSpec::default()
    };
    let failure = run(
        &src,
        &dir.path().join("disk.img"),
        &spec,
        TargetOptions::default(),
    )
    .expect_err("mismatch");
    assert_eq!(failure.error.kind(), ErrorKind::ChecksumMismatch);
    assert!(
        failure.target_state.contains("removed the partial file"),
        "{}",
        failure.target_state
    );
    only(dir.path(), &["img.qcow2"]);
}

#[test]
fn every_checksum_algorithm_matches_the_coreutils_digest_of_the_compressed_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.raw.gz");
    std::fs::write(&src, compress("gzip", &sparse_disk(2, 2 << 20, 65536))).expect("write");
    for (algo, tool) in [
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha256", "sha256sum"),
        ("sha512", "sha512sum"),
    ] {
        let out = Command::new(tool).arg(&src).output().expect(tool);
        let hex = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_string();
        let spec = ImportSpec {
            checksum: Some(format!("{algo}:{hex}").parse().expect("valid")),
            ..ImportSpec::default()
        };
        let dest = dir.path().join(format!("{algo}.img"));
        run(&src, &dest, &spec, TargetOptions::default())
            .unwrap_or_else(|f| panic!("{algo}: {}", f.error));
    }
}

#[test]
fn a_checksum_set_while_the_import_runs_is_checked_beside_the_first_and_reported_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.raw.gz");
    let bytes = compress("gzip", &sparse_disk(3, 2 << 20, 65536));
    std::fs::write(&src, &bytes).expect("write");
    let md5 = format!("md5:{}", hex::encode(md5::Md5::digest(&bytes)));
    let sha256 = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let spec = |pending: &str| {
        let late = PendingChecksum::new();
        late.set(pending.parse().expect("valid")).expect("first");
        ImportSpec {
            checksum: Some(md5.parse().expect("valid")),
            digest: Some(Algorithm::Sha256),
            pending_checksum: Some(late),
            ..ImportSpec::default()
        }
    };
    // Both digests are computed; the checksum's algorithm is the one reported.
    let report = run(
        &src,
        &dir.path().join("ok.img"),
        &spec(&sha256),
        TargetOptions::default(),
    )
    .unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(report.digest.map(|d| d.to_string()), Some(md5.clone()));
    // A wrong late digest fails the import like a wrong checksum, and leaves nothing.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let failure = run(
        &src,
        &dir.path().join("bad.img"),
        &spec(&wrong),
        TargetOptions::default(),
    )
    .expect_err("mismatch");
    assert_eq!(failure.error.kind(), ErrorKind::ChecksumMismatch);
    // One of an algorithm the import did not compute cannot be checked: refused, not ignored.
    let sha1 = format!("sha1:{}", "0".repeat(40));
    let failure = run(
        &src,
        &dir.path().join("sha1.img"),
        &spec(&sha1),
        TargetOptions::default(),
    )
    .expect_err("unverifiable");
    assert!(
        failure.error.to_string().contains("cannot be checked"),
        "{}",
        failure.error
    );
    only(dir.path(), &["img.raw.gz", "ok.img"]);
}

#[test]
fn a_pending_checksum_keeps_the_first_value_it_was_given() {
    let late = PendingChecksum::new();
    let a: cdi_datapath::Checksum = format!("sha256:{}", "a".repeat(64)).parse().expect("valid");
    let b: cdi_datapath::Checksum = format!("sha256:{}", "b".repeat(64)).parse().expect("valid");
    late.set(a.clone()).expect("first");
    late.set(a.clone()).expect("the same again");
    assert_eq!(late.set(b), Err(a.clone()));
    assert_eq!(late.get(), Some(a));
}

#[test]
fn full_disk_fails_with_no_space_and_aborts_the_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let (sink, image) = MemorySink::new(None);
    let source = FileSource::open(&src).expect("open");
    let failure = import(
        Box::new(source),
        Box::new(sink.fail_after(1 << 20)),
        &ImportSpec::default(),
        &Progress::new(),
    )
    .expect_err("no space");
    assert_eq!(
        failure.error.kind(),
        ErrorKind::NoSpace,
        "{}",
        failure.error
    );
    let image = image.lock().expect("lock");
    assert!(image.aborted && !image.committed && image.bytes.is_empty());
}

/// A real ENOSPC on a 2 MiB tmpfs, where this machine lets us mount one (root in CI).
#[test]
fn full_tmpfs_fails_with_no_space_and_leaves_nothing() {
    let mnt = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("tmpfs cannot be mounted here; the in-memory full-disk test covers ENOSPC");
        return;
    }
    let src_dir = tempfile::tempdir().expect("tempdir");
    let src = src_dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    // tmpfs takes direct I/O on recent kernels and refuses it on older ones: either way the
    // outcome is the same.
    let outcomes: Vec<_> = [CacheMode::PageCache, CacheMode::Direct]
        .into_iter()
        .map(|cache| {
            let options = TargetOptions {
                cache,
                ..TargetOptions::default()
            };
            let result = run(
                &src,
                &mnt.path().join("disk.img"),
                &ImportSpec::default(),
                options,
            );
            let listing: Vec<PathBuf> = std::fs::read_dir(mnt.path())
                .expect("dir")
                .flatten()
                .map(|e| e.path())
                .collect();
            (cache, result, listing)
        })
        .collect();
    let _ = Command::new("umount").arg(mnt.path()).status();
    for (cache, result, listing) in outcomes {
        let failure = result.expect_err("2 MiB cannot hold the image");
        assert_eq!(
            failure.error.kind(),
            ErrorKind::NoSpace,
            "{cache:?}: {}",
            failure.error
        );
        assert!(
            listing.is_empty(),
            "{cache:?}: left on the full filesystem: {listing:?}"
        );
    }
}

#[test]
fn image_larger_than_the_requested_size_is_refused_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let options = TargetOptions {
        requested_size: Some(4 << 20),
        ..TargetOptions::default()
    };
    let failure = run(
        &src,
        &dir.path().join("disk.img"),
        &ImportSpec::default(),
        options,
    )
    .expect_err("too large");
    assert!(
        matches!(
            failure.error,
            Error::TooLarge {
                needed: 8388608,
                capacity: 4194304
            }
        ),
        "{}",
        failure.error
    );
    assert_eq!(
        failure.target_state,
        "removed the partial file ".to_string()
            + &dir
                .path()
                .join(".disk.img.cdi-partial")
                .display()
                .to_string()
    );
    only(dir.path(), &["img.qcow2"]);
}

#[test]
fn raw_stream_larger_than_the_requested_size_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.raw.gz");
    std::fs::write(&src, compress("gzip", &sparse_disk(3, 3 << 20, 65536))).expect("write");
    let options = TargetOptions {
        requested_size: Some(2 << 20),
        ..TargetOptions::default()
    };
    let failure = run(
        &src,
        &dir.path().join("disk.img"),
        &ImportSpec::default(),
        options,
    )
    .expect_err("too large");
    assert_eq!(failure.error.kind(), ErrorKind::TooLarge);
    only(dir.path(), &["img.raw.gz"]);
}

#[test]
fn plain_raw_larger_than_the_target_is_refused_before_a_byte_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.raw");
    let data = sparse_disk(5, 6 << 20, 65536);
    std::fs::write(&src, &data).expect("write");
    let options = TargetOptions {
        requested_size: Some(2 << 20),
        ..TargetOptions::default()
    };
    let failure = run(
        &src,
        &dir.path().join("disk.img"),
        &ImportSpec::default(),
        options,
    )
    .expect_err("too large");
    // Refused on the source's announced length, not after the first 2 MiB went out.
    assert!(
        matches!(failure.error, Error::TooLarge { needed, capacity: 2097152 } if needed == data.len() as u64),
        "{}",
        failure.error
    );
    only(dir.path(), &["img.raw"]);
}

#[test]
fn recognised_but_unsupported_formats_are_refused_not_copied() {
    let mut dmg = vec![0u8; 8192];
    dmg[8192 - 512..8192 - 508].copy_from_slice(b"koly");
    let cases: [(&str, Vec<u8>); 6] = [
        (
            "qcow version 1",
            [b"QFI\xfb\0\0\0\x01".to_vec(), vec![0; 4088]].concat(),
        ),
        ("qed", [b"QED\0".to_vec(), vec![0; 4092]].concat()),
        (
            "cloop",
            [
                b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0\n".to_vec(),
                vec![0; 4000],
            ]
            .concat(),
        ),
        ("Apple dmg", dmg),
        (
            "Parallels",
            [b"WithoutFreeSpace".to_vec(), vec![0; 4080]].concat(),
        ),
        (
            "Bochs",
            [b"Bochs Virtual HD Image".to_vec(), vec![0; 4074]].concat(),
        ),
    ];
    for (format, bytes) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("img");
        std::fs::write(&src, &bytes).expect("write");
        let failure = run(
            &src,
            &dir.path().join("disk.img"),
            &ImportSpec::default(),
            TargetOptions::default(),
        )
        .expect_err(format);
        let message = failure.error.to_string();
        assert!(
            message.starts_with(&format!("{format} ")) && message.contains("qemu-img convert"),
            "{format}: {message}"
        );
        assert_eq!(failure.error.kind(), ErrorKind::Unsupported, "{format}");
        only(dir.path(), &["img"]);
    }
}

#[test]
fn a_dmg_over_a_stream_is_refused_at_its_trailer_and_leaves_nothing() {
    let mut dmg = sparse_disk(3, 1 << 20, 4096);
    let n = dmg.len();
    dmg[n - 512..n - 508].copy_from_slice(b"koly");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.dmg.gz");
    std::fs::write(&src, compress("gzip", &dmg)).expect("write");
    let failure = run(
        &src,
        &dir.path().join("disk.img"),
        &ImportSpec::default(),
        TargetOptions::default(),
    )
    .expect_err("dmg");
    assert_eq!(failure.error.kind(), ErrorKind::Unsupported);
    assert!(
        failure.error.to_string().starts_with("Apple dmg"),
        "{}",
        failure.error
    );
    only(dir.path(), &["img.dmg.gz"]);
}

#[test]
fn headers_of_the_new_formats_that_are_all_zero_are_refused_specifically() {
    let mut vdi = vec![0u8; 4096];
    vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "vmdk",
            [b"KDMV".to_vec(), vec![0; 4092]].concat(),
            "vmdk sparse extent version 0 is not supported",
        ),
        ("vdi", vdi, "vdi version 0x00000000 is not supported"),
        (
            "vhd",
            [b"conectix".to_vec(), vec![0; 4088]].concat(),
            "vhd footer checksum",
        ),
        (
            "vhdx",
            [b"vhdxfile".to_vec(), vec![0; 4088]].concat(),
            "vhdx header section is truncated",
        ),
    ];
    for (format, bytes, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("img");
        std::fs::write(&src, &bytes).expect("write");
        let failure = run(
            &src,
            &dir.path().join("disk.img"),
            &ImportSpec::default(),
            TargetOptions::default(),
        )
        .expect_err(format);
        assert!(
            failure.error.to_string().starts_with(want),
            "{format}: {}",
            failure.error
        );
        only(dir.path(), &["img"]);
    }
}

#[test]
fn format_raw_override_copies_a_disk_that_starts_with_a_magic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("looks-like.qcow2");
    let mut bytes = image().build();
    bytes.truncate(200_000);
    std::fs::write(&src, &bytes).expect("write");
    let spec = ImportSpec {
        format: FormatChoice::Raw,
        ..ImportSpec::default()
    };
    let dest = dir.path().join("disk.img");
    run(&src, &dest, &spec, TargetOptions::default()).expect("raw copy");
    assert!(std::fs::read(&dest).expect("read") == bytes);
}

#[test]
fn block_target_gets_zero_ranges_punched_or_skipped() {
    let b = image();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, b.build()).expect("write");
    for (mode, zeroed, cache) in [
        (ZeroMode::Punch, true, CacheMode::PageCache),
        (ZeroMode::Write, true, CacheMode::PageCache),
        (ZeroMode::Skip, false, CacheMode::PageCache),
        (ZeroMode::Punch, true, CacheMode::Direct),
        (ZeroMode::Skip, false, CacheMode::Direct),
        (ZeroMode::Write, true, CacheMode::Auto),
    ] {
        let dev = dir.path().join(format!("dev-{mode:?}-{cache:?}"));
        std::fs::write(&dev, vec![0xffu8; 10 << 20]).expect("device");
        let options = TargetOptions {
            zero_mode: mode,
            cache,
            ..TargetOptions::default()
        };
        let sink = BlockSink::open(&dev, options).expect("open");
        let report = import(
            Box::new(FileSource::open(&src).expect("src")),
            Box::new(sink),
            &ImportSpec::default(),
            &Progress::new(),
        )
        .unwrap_or_else(|f| panic!("{mode:?}: {}", f.error));
        let out = std::fs::read(&dev).expect("read");
        assert_eq!(out.len(), 10 << 20, "{mode:?}: devices are never resized");
        let want = b.expected_raw();
        if zeroed {
            assert!(out[..8 << 20] == want[..], "{mode:?}");
            assert!(report.sink.zeroed > 0);
        } else {
            let data_equal = want
                .chunks(65536)
                .zip(out.chunks(65536))
                .all(|(w, o)| w.iter().all(|&x| x == 0) || w == o);
            assert!(data_equal, "{mode:?}: data written");
            assert!(
                out[..8 << 20].contains(&0xff),
                "{mode:?}: zero ranges were skipped"
            );
        }
        assert!(
            out[8 << 20..].iter().all(|&x| x == 0xff),
            "{mode:?}: past the image untouched"
        );
    }
}

/// A loop device, detached when dropped.
struct LoopDevice(PathBuf);

impl LoopDevice {
    /// Attaches `backing`; `None` where this machine lets us attach none (not root, no loop
    /// driver, no `losetup`).
    fn attach(backing: &Path) -> Option<Self> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .ok()?;
        let name = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && name.starts_with("/dev/"))
            .then(|| LoopDevice(PathBuf::from(name.trim())))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// A real block device (a loop device) gets the exact image in every cache mode: direct writes
/// through io_uring, through writer threads or the page cache, zero ranges punched.
#[test]
fn a_real_block_device_gets_the_image_in_every_cache_mode() {
    let b = image();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, b.build()).expect("write");
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0xffu8; 10 << 20]).expect("backing");
    let Some(dev) = LoopDevice::attach(&backing) else {
        eprintln!("no loop device can be attached here; block sinks are tested on files");
        return;
    };
    let want = b.expected_raw();
    for cache in [CacheMode::Auto, CacheMode::Direct, CacheMode::PageCache] {
        std::fs::write(&dev.0, vec![0xffu8; 10 << 20]).expect("fill the device");
        let options = TargetOptions {
            cache,
            ..TargetOptions::default()
        };
        let report = run(&src, &dev.0, &ImportSpec::default(), options)
            .unwrap_or_else(|f| panic!("{cache:?}: {}", f.error));
        assert_eq!(report.sink.final_size, 8 << 20, "{cache:?}");
        let out = std::fs::read(&dev.0).expect("read the device");
        assert_eq!(out.len(), 10 << 20, "{cache:?}: a device is never resized");
        assert!(out[..8 << 20] == want[..], "{cache:?}: image differs");
        assert!(
            out[8 << 20..].iter().all(|&x| x == 0xff),
            "{cache:?}: past the image untouched"
        );
    }
}

#[test]
fn failed_import_to_a_block_target_wipes_its_start_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let dev = dir.path().join("dev");
    std::fs::write(&dev, vec![0xffu8; 10 << 20]).expect("device");
    let sink = BlockSink::open(&dev, TargetOptions::default()).expect("open");
    // Everything is written before the checksum turns out wrong.
    let spec = ImportSpec {
        checksum: Some(format!("md5:{}", "0".repeat(32)).parse().expect("valid")),
        ..ImportSpec::default()
    };
    let failure = import(
        Box::new(FileSource::open(&src).expect("src")),
        Box::new(sink),
        &spec,
        &Progress::new(),
    )
    .expect_err("checksum");
    assert!(
        failure
            .target_state
            .contains("holds a partial image; its first 1048576 bytes were zeroed"),
        "{}",
        failure.target_state
    );
    let out = std::fs::read(&dev).expect("read");
    assert!(out[..1 << 20].iter().all(|&x| x == 0));
}

#[test]
fn refusal_found_before_writing_leaves_a_block_target_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    let q = image().build();
    // Cut: the L2 table points past the end of the (known-length) file.
    std::fs::write(&src, &q[..q.len() * 3 / 4]).expect("write truncated");
    let dev = dir.path().join("dev");
    std::fs::write(&dev, vec![0xffu8; 10 << 20]).expect("device");
    let sink = BlockSink::open(&dev, TargetOptions::default()).expect("open");
    let failure = import(
        Box::new(FileSource::open(&src).expect("src")),
        Box::new(sink),
        &ImportSpec::default(),
        &Progress::new(),
    )
    .expect_err("truncated");
    assert!(
        matches!(
            failure.error,
            Error::Qcow2(cdi_formats::qcow2::Qcow2Error::OffsetBeyondEnd { .. })
        ),
        "{}",
        failure.error
    );
    assert!(
        failure.target_state.ends_with("was not modified"),
        "{}",
        failure.target_state
    );
    assert!(
        std::fs::read(&dev)
            .expect("read")
            .iter()
            .all(|&x| x == 0xff)
    );
}

#[test]
fn preallocated_file_target_is_fully_allocated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    let dest = dir.path().join("disk.img");
    let options = TargetOptions {
        preallocate: true,
        requested_size: Some(16 << 20),
        ..TargetOptions::default()
    };
    let report = run(&src, &dest, &ImportSpec::default(), options).expect("import");
    assert!(report.sink.preallocated);
    assert_eq!(std::fs::metadata(&dest).expect("meta").len(), 16 << 20);
    assert!(cdi_testdata::qemu::allocated_bytes(&dest) >= 16 << 20);
}

/// Hands writes on to `inner`, truncating the source file at the first one (the source shrinks
/// while the import is under way) and, with `regrow`, growing it back to that length at once.
struct ShrinkSourceOnFirstWrite {
    inner: Box<dyn Sink>,
    source: PathBuf,
    keep: u64,
    shrunk: bool,
    regrow: Option<u64>,
}

impl Sink for ShrinkSourceOnFirstWrite {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capacity(&self) -> Option<u64> {
        self.inner.capacity()
    }
    fn write_at(&mut self, offset: u64, run: &[bytes::Bytes]) -> Result<(), Error> {
        if !self.shrunk {
            self.shrunk = true;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.source)
                .expect("open source");
            f.set_len(self.keep).expect("truncate source");
            if let Some(len) = self.regrow {
                f.set_len(len).expect("regrow source");
            }
        }
        self.inner.write_at(offset, run)
    }
    fn preferred_run(&self) -> usize {
        self.inner.preferred_run()
    }
    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error> {
        self.inner.commit(image_size, written)
    }
    fn abort(&mut self) -> String {
        self.inner.abort()
    }
}

#[test]
fn a_source_file_that_shrinks_or_is_cut_and_regrown_during_the_import_fails_it_cleanly() {
    // Mapped, as cdictl reads local files: the vanished pages must not kill the process.
    cdi_datapath::install_truncation_guard().expect("guard");
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("disk.raw");
    let mut data = vec![0u8; 8 << 20];
    Rng::new(7).fill(&mut data);
    let sum: cdi_datapath::Checksum =
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)))
            .parse()
            .expect("checksum");
    let full = Some(data.len() as u64);
    // (checksum, length the file is grown back to at once after the cut)
    for (checksum, regrow) in [(None, None), (Some(sum), None), (None, full)] {
        std::fs::write(&src, &data).expect("write source");
        let dest = dir.path().join("out.raw");
        let source = FileSource::open(&src).expect("open");
        let sink = ShrinkSourceOnFirstWrite {
            inner: open_target(&dest, TargetOptions::default()).expect("target"),
            source: src.clone(),
            keep: 1 << 20,
            shrunk: false,
            regrow,
        };
        let spec = ImportSpec {
            checksum,
            ..ImportSpec::default()
        };
        // Reading the vanished bytes must neither kill the process (SIGBUS) nor pass them off
        // as the image; grown back (zeros past the cut, the right length, no fault), the
        // file's change is what fails it.
        let failure = import(Box::new(source), Box::new(sink), &spec, &Progress::new())
            .expect_err("the source changed");
        match regrow {
            None => assert!(
                matches!(failure.error, Error::SourceShrank(_)),
                "unexpected error: {}",
                failure.error
            ),
            Some(_) => assert!(
                matches!(failure.error, Error::SourceChanged(_)),
                "unexpected error: {}",
                failure.error
            ),
        }
        assert_eq!(failure.error.kind(), ErrorKind::Io);
        only(dir.path(), &["disk.raw"]);
    }
}

#[test]
fn an_archive_source_that_shrinks_before_it_is_read_fails_the_extraction_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("disk.tar");
    let mut tar = tar::Builder::new(Vec::new());
    let mut payload = vec![0u8; 4 << 20];
    Rng::new(11).fill(&mut payload);
    let mut header = tar::Header::new_gnu();
    header.set_size(payload.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "disk.img", &payload[..])
        .expect("append");
    std::fs::write(&src, tar.into_inner().expect("tar")).expect("write tar");
    let dest = dir.path().join("data");
    std::fs::create_dir(&dest).expect("dest");
    let source = FileSource::open(&src).expect("open");
    // Opened at full length, then cut: the chunks past the cut are gone when they are read.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .expect("open for truncation");
    f.set_len(1 << 20).expect("truncate");
    let failure = cdi_datapath::extract(
        Box::new(source),
        &dest,
        &ImportSpec::default(),
        &Progress::new(),
    )
    .expect_err("the source shrank");
    assert!(
        matches!(failure.error, Error::SourceShrank(_)),
        "unexpected error: {}",
        failure.error
    );
    only(&dest, &[]);
}

/// A real file target whose storage reports EIO at a chosen step: on a write once `after`
/// bytes went through, or at the commit (the final flush), as a failing disk would.
struct EioTarget {
    inner: Box<dyn Sink>,
    path: PathBuf,
    after: Option<u64>,
    at_commit: bool,
}

impl EioTarget {
    fn eio(&self, op: &'static str) -> Error {
        Error::target(op, &self.path, std::io::Error::from_raw_os_error(5))
    }
}

impl Sink for EioTarget {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capacity(&self) -> Option<u64> {
        self.inner.capacity()
    }
    fn write_at(&mut self, offset: u64, run: &[bytes::Bytes]) -> Result<(), Error> {
        let len: u64 = run.iter().map(|b| b.len() as u64).sum();
        if let Some(left) = self.after.as_mut() {
            if *left < len {
                return Err(self.eio("writing"));
            }
            *left -= len;
        }
        self.inner.write_at(offset, run)
    }
    fn preferred_run(&self) -> usize {
        self.inner.preferred_run()
    }
    fn commit(&mut self, image_size: u64, written: &RangeSet) -> Result<SinkReport, Error> {
        if self.at_commit {
            return Err(self.eio("flushing"));
        }
        self.inner.commit(image_size, written)
    }
    fn abort(&mut self) -> String {
        self.inner.abort()
    }
}

#[test]
fn eio_from_the_target_while_writing_or_at_the_commit_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path().join("img.qcow2");
    std::fs::write(&src, image().build()).expect("write");
    for (after, at_commit) in [(Some(0), false), (Some(1 << 20), false), (None, true)] {
        let dest = dir.path().join("out.raw");
        let sink = EioTarget {
            inner: open_target(&dest, TargetOptions::default()).expect("target"),
            path: dest.clone(),
            after,
            at_commit,
        };
        let failure = import(
            Box::new(FileSource::open(&src).expect("open")),
            Box::new(sink),
            &ImportSpec::default(),
            &Progress::new(),
        )
        .expect_err("EIO");
        assert_eq!(failure.error.kind(), ErrorKind::Io, "{}", failure.error);
        assert!(
            failure.error.to_string().contains("Input/output error"),
            "{}",
            failure.error
        );
        assert!(
            failure.target_state.contains("removed"),
            "{}",
            failure.target_state
        );
        only(dir.path(), &["img.qcow2"]);
    }
}

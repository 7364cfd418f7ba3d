//! `qemu-img` as the conformance oracle: helpers that run it and fail loudly when it is absent
//! (and the command-line compressors that wrap its images).

use std::path::Path;
use std::process::Command;

/// Runs `qemu-img` with `args`, panicking with its stderr when it fails: tests call this and a
/// missing oracle must fail the test, not skip it (CI installs qemu-utils).
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running qemu-img {args:?}: {e} (apt-get install qemu-utils)"));
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Converts `src` (any format) to raw at `dst` with qemu-img.
pub fn convert_to_raw(src: &Path, dst: &Path) {
    qemu_img(&["convert", "-O", "raw", path(src), path(dst)]);
}

/// Converts `src` of the given format (`qemu-img`'s name: vmdk, vpc, vhdx, vdi, ...) to raw at
/// `dst`. Naming the format matters for a fixed vhd, which `qemu-img` would otherwise probe as
/// raw and copy with its footer.
pub fn convert_to_raw_from(format: &str, src: &Path, dst: &Path) {
    qemu_img(&["convert", "-f", format, "-O", "raw", path(src), path(dst)]);
}

/// Converts a raw file to `format` (`qemu-img`'s name) with extra `qemu-img convert` arguments
/// (e.g. `-o subformat=streamOptimized`).
pub fn raw_to(format: &str, src: &Path, dst: &Path, extra: &[&str]) {
    let mut args = vec!["convert", "-f", "raw", "-O", format];
    args.extend_from_slice(extra);
    args.push(path(src));
    args.push(path(dst));
    qemu_img(&args);
}

/// `qemu-img convert -O format extra` of the raw disk `raw`: the image, and what `qemu-img
/// convert -f format -O raw` makes of it (the content an import must produce).
pub fn image_of(format: &str, extra: &[&str], raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("disk.raw");
    std::fs::write(&src, raw).expect("write raw");
    let img = dir.path().join("disk.img");
    raw_to(format, &src, &img, extra);
    let back = dir.path().join("back.raw");
    convert_to_raw_from(format, &img, &back);
    (
        std::fs::read(&img).expect("read image"),
        std::fs::read(&back).expect("read raw"),
    )
}

/// Compresses `src` into `dest` with a command-line compressor (`gzip`, `xz` (two threads),
/// `zstd`, `bzip2`), as users make wrapped images.
pub fn compress_file(tool: &str, src: &Path, dest: &Path) {
    let out = Command::new(tool)
        .arg("-c")
        .args(if tool == "xz" { &["-T2"][..] } else { &[][..] })
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(out.status.success(), "{tool} failed");
    std::fs::write(dest, out.stdout).expect("write wrapped");
}

/// Converts a raw file to qcow2 with extra `qemu-img convert` arguments (e.g. `-c`, `-o ...`).
pub fn raw_to_qcow2(src: &Path, dst: &Path, extra: &[&str]) {
    let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(extra);
    args.push(path(src));
    args.push(path(dst));
    qemu_img(&args);
}

/// Bytes actually allocated on disk for `file` (st_blocks × 512).
pub fn allocated_bytes(file: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file)
        .map(|m| m.blocks() * 512)
        .unwrap_or_else(|e| panic!("{file:?}: {e}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

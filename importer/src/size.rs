//! CDI's size arithmetic (filesystem overhead), and how much space the target really has.

use std::path::Path;

const MIB: u64 = 1 << 20;

/// Space usable by the image on a filesystem of `available` bytes with `overhead` reserved:
/// `round_down(ceil(available / (1 + overhead)), 1 MiB)`, as CDI's `GetUsableSpace`.
pub fn usable_space(overhead: f64, available: u64) -> u64 {
    let usable = (available as f64 / (1.0 + overhead)).ceil() as u64;
    usable / MIB * MIB
}

// The controller inflates PVC requests with this; it lives here, tested against upstream's
// numbers, until the controller crate shares it.
#[allow(dead_code)]
/// PVC request that holds `requested` bytes of image: `ceil(round_up(requested, 1 MiB) × (1 +
/// overhead))`, as CDI's `GetRequiredSpace`.
pub fn required_space(overhead: f64, requested: u64) -> u64 {
    (requested.div_ceil(MIB) as f64 * MIB as f64 * (1.0 + overhead)).ceil() as u64
}

/// Free bytes on the filesystem holding `dir`.
pub fn filesystem_available(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail * st.f_frsize)
}

/// Size of a block device (or a regular file standing in for one).
pub fn device_size(path: &Path) -> std::io::Result<u64> {
    use std::io::Seek;
    std::fs::File::open(path)?.seek(std::io::SeekFrom::End(0))
}

/// Parses a Kubernetes quantity (`1138166334`, `1Gi`, `500M`, `1.5Gi`) into bytes.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * mult).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_arithmetic_matches_upstream() {
        // Upstream inflates a 1Gi `storage` request to 1138166334 on Filesystem (Appendix A).
        assert_eq!(required_space(0.06, 1 << 30), 1_138_166_334);
        assert_eq!(usable_space(0.06, 1_138_166_334), 1 << 30);
        assert_eq!(usable_space(0.0, (1 << 30) + 12345), 1 << 30);
        assert_eq!(required_space(0.0, 1), MIB);
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("1138166334"), Some(1_138_166_334));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("10X"), None);
        assert_eq!(parse_quantity("abc"), None);
    }
}

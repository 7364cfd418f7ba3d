//! Kubernetes resource quantities as byte counts, and CDI's filesystem-overhead arithmetic.
//!
//! Shared by the controller (which inflates claim sizes) and the workers (which size images), so
//! both sides agree to the byte with upstream's numbers (1Gi at 6 % overhead is 1138166334).
#![forbid(unsafe_code)]

const MIB: u64 = 1 << 20;

/// Parses a quantity (`1138166334`, `1Gi`, `500M`, `1.5Gi`, `1e9`) into bytes, rounding a
/// fractional byte up. `None` for anything else, including negative values and overflow.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (multiplier, exponent): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        e if e.starts_with(['e', 'E']) => (1, e[1..].parse().ok()?),
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().ok()?;
    let scale = 10u128.checked_pow(fraction.len() as u32)?;
    let numerator = mantissa
        .checked_mul(multiplier)?
        .checked_mul(10u128.checked_pow(exponent)?)?;
    u64::try_from(numerator.div_ceil(scale)).ok()
}

/// The claim size that holds `requested` bytes of image with `overhead` (0.06 for 6 %) reserved
/// for the filesystem: `ceil(round_up(requested, 1 MiB) × (1 + overhead))`, as upstream's
/// `GetRequiredSpace`.
pub fn required_space(overhead: f64, requested: u64) -> u64 {
    (requested.div_ceil(MIB) as f64 * MIB as f64 * (1.0 + overhead)).ceil() as u64
}

/// The image size that fits a filesystem of `available` bytes with `overhead` reserved:
/// `round_down(ceil(available / (1 + overhead)), 1 MiB)`, as upstream's `GetUsableSpace`.
pub fn usable_space(overhead: f64, available: u64) -> u64 {
    let usable = (available as f64 / (1.0 + overhead)).ceil() as u64;
    usable / MIB * MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes_parse() {
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("1138166334"), Some(1_138_166_334));
        assert_eq!(parse_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes("0.5"), Some(1), "a fractional byte rounds up");
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in ["", "Gi", "-1Gi", "1Xi", "1..5", "99999999999Ei"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn one_gibibyte_inflates_to_upstreams_request() {
        assert_eq!(required_space(0.06, 1 << 30), 1_138_166_334);
        assert_eq!(required_space(0.0, 1 << 30), 1 << 30);
    }

    #[test]
    fn usable_space_undoes_the_inflation_to_whole_mebibytes() {
        assert_eq!(usable_space(0.06, 1_138_166_334), 1 << 30);
        assert_eq!(usable_space(0.0, (1 << 30) + 5), 1 << 30);
    }
}

//! Fast all-zero checks, shared by the qcow2 stash and the sinks' hole detection.

/// Returns true when every byte of `buf` is zero.
///
/// Works on 16-byte words so the compiler can vectorise it; this runs over every byte an import
/// writes, so it must stay far faster than the disk.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for chunk in &mut chunks {
        let mut acc = 0u128;
        for word in chunk.chunks_exact(16) {
            let mut w = [0u8; 16];
            w.copy_from_slice(word);
            acc |= u128::from_ne_bytes(w);
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::is_zero;

    #[test]
    fn detects_zero_and_nonzero_at_every_position() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 4096]));
        for pos in [0usize, 15, 16, 63, 64, 4000, 4095] {
            let mut buf = vec![0u8; 4096];
            buf[pos] = 1;
            assert!(!is_zero(&buf), "byte {pos} set");
        }
        let mut odd = vec![0u8; 77];
        assert!(is_zero(&odd));
        odd[76] = 9;
        assert!(!is_zero(&odd));
    }
}

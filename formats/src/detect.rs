//! Format detection by magic bytes, as upstream CDI does, plus the formats it lacks (bzip2) and
//! the ones it converts but we do not yet (recognised so that they are refused, never copied raw).

/// How many leading bytes [`detect`] looks at. VDI's magic sits at 0x40, everything else earlier.
pub const DETECT_LEN: usize = 512;

/// What the leading bytes of a stream say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    Qcow2,
    /// QEMU's original qcow (version 1).
    Qcow1,
    Qed,
    Vmdk,
    Vdi,
    Vhd,
    Vhdx,
    /// No known magic: raw disk or ISO image, copied as it is.
    Raw,
}

impl Format {
    /// Compression wrappers, which are peeled off before the image format is looked at again.
    pub fn is_compression(self) -> bool {
        matches!(
            self,
            Format::Gzip | Format::Xz | Format::Zstd | Format::Bzip2
        )
    }

    /// Disk formats that are recognised but cannot be converted yet.
    pub fn is_unsupported_image(self) -> bool {
        matches!(
            self,
            Format::Qcow1 | Format::Qed | Format::Vmdk | Format::Vdi | Format::Vhd | Format::Vhdx
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Bzip2 => "bzip2",
            Format::Qcow2 => "qcow2",
            Format::Qcow1 => "qcow (version 1)",
            Format::Qed => "qed",
            Format::Vmdk => "vmdk",
            Format::Vdi => "vdi",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Raw => "raw",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn at(head: &[u8], offset: usize, magic: &[u8]) -> bool {
    head.get(offset..offset + magic.len()) == Some(magic)
}

/// Names the format of a stream from its first bytes (up to [`DETECT_LEN`]; fewer at EOF).
pub fn detect(head: &[u8]) -> Format {
    // gzip: ID1 ID2 and CM=8 (deflate), the only method defined.
    if at(head, 0, &[0x1f, 0x8b, 0x08]) {
        return Format::Gzip;
    }
    if at(head, 0, &[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Format::Xz;
    }
    // zstd frame, or a skippable frame (0x184D2A50..5F little-endian) as pzstd writes first.
    if at(head, 0, &[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
    {
        return Format::Zstd;
    }
    // bzip2: "BZh" + block size digit + block or end-of-stream magic.
    if head.len() >= 10
        && at(head, 0, b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || head[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        return Format::Bzip2;
    }
    if at(head, 0, b"QFI\xfb") {
        return match head.get(4..8) {
            Some([0, 0, 0, 1]) => Format::Qcow1,
            _ => Format::Qcow2,
        };
    }
    if at(head, 0, b"QED\0") {
        return Format::Qed;
    }
    if at(head, 0, b"KDMV") || at(head, 0, b"# Disk DescriptorFile") || at(head, 0, b"COWD") {
        return Format::Vmdk;
    }
    if at(head, 0x40, &[0x7f, 0x10, 0xda, 0xbe]) {
        return Format::Vdi;
    }
    if at(head, 0, b"conectix") {
        return Format::Vhd;
    }
    if at(head, 0, b"vhdxfile") {
        return Format::Vhdx;
    }
    Format::Raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_magic() {
        let mut vdi = vec![0u8; 512];
        vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        let cases: Vec<(Vec<u8>, Format)> = vec![
            (vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0], Format::Gzip),
            (b"\xfd7zXZ\0\0\x04".to_vec(), Format::Xz),
            (vec![0x28, 0xb5, 0x2f, 0xfd, 0x24], Format::Zstd),
            (vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0], Format::Zstd),
            (b"BZh91AY&SY\0\0".to_vec(), Format::Bzip2),
            (b"QFI\xfb\0\0\0\x03".to_vec(), Format::Qcow2),
            (b"QFI\xfb\0\0\0\x02".to_vec(), Format::Qcow2),
            (b"QFI\xfb\0\0\0\x01".to_vec(), Format::Qcow1),
            (b"QED\0....".to_vec(), Format::Qed),
            (b"KDMV\x01\0\0\0".to_vec(), Format::Vmdk),
            (b"# Disk DescriptorFile\n".to_vec(), Format::Vmdk),
            (vdi, Format::Vdi),
            (b"conectix\0\0".to_vec(), Format::Vhd),
            (b"vhdxfile".to_vec(), Format::Vhdx),
            (vec![0xeb, 0x63, 0x90, 0x10], Format::Raw),
            (vec![], Format::Raw),
        ];
        for (head, want) in cases {
            assert_eq!(
                detect(&head),
                want,
                "head {:02x?}",
                &head[..head.len().min(8)]
            );
        }
    }

    #[test]
    fn near_misses_are_raw() {
        assert_eq!(
            detect(&[0x1f, 0x8b, 0x07]),
            Format::Raw,
            "gzip with unknown method"
        );
        assert_eq!(detect(b"BZh0"), Format::Raw, "bzip2 with bad block size");
        assert_eq!(detect(b"QFI"), Format::Raw, "truncated qcow magic");
    }
}

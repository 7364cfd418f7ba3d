//! Format detection by magic bytes, as upstream CDI does, plus the formats it lacks (bzip2, OVA,
//! ISO) and the image formats we refuse (recognised so that they are refused with a clear
//! message, never copied raw). Two formats keep their magic at the end of the file: a fixed vhd
//! (its footer) and Apple's dmg (its `koly` trailer); [`detect_tail`] looks there.

/// How many leading bytes [`detect`] looks at: ISO 9660's volume descriptor sits at 0x8001,
/// everything else in the first sector (or, for OVA, the first tar header and its name).
pub const DETECT_LEN: usize = 0x8800;

/// How many trailing bytes [`detect_tail`] looks at: one sector.
pub const TAIL_LEN: usize = 512;

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
    /// A tar whose first entry is an OVF descriptor: a virtual appliance holding disk images.
    Ova,
    /// An ISO 9660 image: copied as it is.
    Iso,
    /// A compressed loop image (Knoppix).
    Cloop,
    /// Apple's disk image (found by its trailer).
    Dmg,
    Parallels,
    Bochs,
    /// No known magic: a raw disk, copied as it is.
    Raw,
    /// cdi-rs's clone stream (`clonestream`): never returned by [`detect`], only named by a
    /// caller that knows its bytes are one.
    CloneStream,
}

impl Format {
    /// Compression wrappers, which are peeled off before the image format is looked at again.
    pub fn is_compression(self) -> bool {
        matches!(
            self,
            Format::Gzip | Format::Xz | Format::Zstd | Format::Bzip2
        )
    }

    /// Why a recognised image format is refused, or `None` when we take it.
    pub fn refusal(self) -> Option<&'static str> {
        Some(match self {
            Format::Qcow1 => {
                "qcow version 1 images are not supported: convert it first with `qemu-img \
                 convert -O qcow2 SRC DST`"
            }
            Format::Qed => {
                "qed images are not supported: convert it first with `qemu-img convert -O qcow2 \
                 SRC DST`"
            }
            Format::Cloop => {
                "cloop (compressed loop) images are not supported: convert it first with \
                 `qemu-img convert -O qcow2 SRC DST`"
            }
            Format::Dmg => {
                "Apple dmg images are not supported: convert it first with `qemu-img convert -O \
                 qcow2 SRC DST`"
            }
            Format::Parallels => {
                "Parallels images are not supported: convert it first with `qemu-img convert -O \
                 qcow2 SRC DST`"
            }
            Format::Bochs => {
                "Bochs images are not supported: convert it first with `qemu-img convert -O \
                 qcow2 SRC DST`"
            }
            _ => return None,
        })
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
            Format::Ova => "ova",
            Format::Iso => "iso",
            Format::Cloop => "cloop",
            Format::Dmg => "dmg",
            Format::Parallels => "parallels",
            Format::Bochs => "bochs",
            Format::Raw => "raw",
            Format::CloneStream => "cdi clone stream",
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
    if at(head, 0, b"WithoutFreeSpace") || at(head, 0, b"WithouFreSpacExt") {
        return Format::Parallels;
    }
    if at(head, 0, b"Bochs Virtual HD Image") {
        return Format::Bochs;
    }
    if at(head, 0, b"#!/bin/sh")
        && head
            .get(..256.min(head.len()))
            .is_some_and(|h| h.windows(14).any(|w| w == b"modprobe cloop"))
    {
        return Format::Cloop;
    }
    if is_ova(head) {
        return Format::Ova;
    }
    if at(head, 0x8001, b"CD001") {
        return Format::Iso;
    }
    Format::Raw
}

/// A tar (ustar magic at 257) whose first entry is named `*.ovf`, directly or through a pax or
/// GNU long-name header in front of it.
fn is_ova(head: &[u8]) -> bool {
    if !at(head, 257, b"ustar") {
        return false;
    }
    let ends_ovf = |name: &[u8]| {
        let name = name.split(|&b| b == 0 || b == b'\n').next().unwrap_or(&[]);
        name.len() >= 4 && name[name.len() - 4..].eq_ignore_ascii_case(b".ovf")
    };
    if ends_ovf(&head[..100]) {
        return true;
    }
    // A pax ('x') or GNU long name ('L') header: the name is in the data block that follows.
    if matches!(head.get(156), Some(b'x' | b'L')) {
        let data = head.get(512..1024).unwrap_or(&[]);
        if head[156] == b'L' {
            return ends_ovf(data);
        }
        return data
            .split(|&b| b == b'\n')
            .filter_map(|rec| {
                rec.windows(5)
                    .position(|w| w == b"path=")
                    .map(|i| &rec[i + 5..])
            })
            .any(ends_ovf);
    }
    false
}

/// Names a format from the last [`TAIL_LEN`] bytes of a stream: a fixed vhd's footer or a dmg's
/// trailer. `None` when neither is there.
pub fn detect_tail(tail: &[u8]) -> Option<Format> {
    let sector = tail.get(tail.len().checked_sub(TAIL_LEN)?..)?;
    if sector.starts_with(b"conectix") {
        return Some(Format::Vhd);
    }
    if sector.starts_with(b"koly") {
        return Some(Format::Dmg);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_magic() {
        let mut vdi = vec![0u8; 512];
        vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        let mut iso = vec![0u8; 0x8800];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        let mut ova = vec![0u8; 1024];
        ova[..8].copy_from_slice(b"vm.ovf\0\0");
        ova[257..263].copy_from_slice(b"ustar\0");
        let mut tar = ova.clone();
        tar[..8].copy_from_slice(b"disk.img");
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
            (b"WithoutFreeSpace\0".to_vec(), Format::Parallels),
            (b"Bochs Virtual HD Image\0".to_vec(), Format::Bochs),
            (
                b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0".to_vec(),
                Format::Cloop,
            ),
            (iso, Format::Iso),
            (ova, Format::Ova),
            (tar, Format::Raw),
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

    #[test]
    fn an_ova_behind_a_pax_header_is_recognised() {
        let mut head = vec![0u8; 2048];
        head[..20].copy_from_slice(b"PaxHeaders/x.ovf\0\0\0\0");
        head[156] = b'x';
        head[257..263].copy_from_slice(b"ustar\0");
        let rec = b"30 path=appliance/vm-one.OVF\n";
        head[512..512 + rec.len()].copy_from_slice(rec);
        head[..20].fill(0);
        assert_eq!(detect(&head), Format::Ova);
    }

    #[test]
    fn trailers_name_fixed_vhd_and_dmg() {
        let mut tail = vec![0u8; 1024];
        assert_eq!(detect_tail(&tail), None);
        tail[512..520].copy_from_slice(b"conectix");
        assert_eq!(detect_tail(&tail), Some(Format::Vhd));
        tail[512..520].copy_from_slice(b"koly\0\0\0\x04");
        assert_eq!(detect_tail(&tail), Some(Format::Dmg));
        assert_eq!(detect_tail(&tail[..100]), None);
    }
}

//! Tar headers as OVA writers produce them: ustar (with the name prefix), pax extended headers
//! (`path` and `size` records) and GNU long names. Every header's checksum is verified.

use super::error::OvaError;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    /// A pax extended header for the next entry.
    PaxLocal,
    /// A pax header for every following entry (ignored: OVA writers do not use it for names).
    PaxGlobal,
    /// A GNU long name for the next entry.
    GnuLongName,
    Other(u8),
}

/// One 512-byte tar header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarHeader {
    pub name: String,
    pub size: u64,
    pub kind: EntryKind,
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256: the high bit of the first byte set, the rest a big-endian number.
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(v)
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl TarHeader {
    /// Parses the header block found at `offset` of the archive; `None` for an all-zero block
    /// (the end of the archive).
    pub fn parse(block: &[u8], offset: u64) -> Result<Option<TarHeader>, OvaError> {
        let bad = |reason: &str| OvaError::BadTarHeader {
            offset,
            reason: reason.into(),
        };
        let block = block
            .get(..512)
            .ok_or_else(|| bad("shorter than 512 bytes"))?;
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let stored = octal(&block[148..156]).ok_or_else(|| bad("unreadable checksum"))?;
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
            .sum();
        if stored != sum {
            return Err(bad("checksum mismatch"));
        }
        let size = octal(&block[124..136]).ok_or_else(|| bad("unreadable size"))?;
        let mut name = text(&block[0..100]);
        if &block[257..262] == b"ustar" && block[263] == b'0' {
            let prefix = text(&block[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let kind = match block[156] {
            b'0' | 0 | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'x' => EntryKind::PaxLocal,
            b'g' => EntryKind::PaxGlobal,
            b'L' => EntryKind::GnuLongName,
            other => EntryKind::Other(other),
        };
        Ok(Some(TarHeader { name, size, kind }))
    }
}

/// The `path` and `size` a pax extended header sets for the next entry.
pub fn pax_overrides(data: &[u8]) -> Result<(Option<String>, Option<u64>), OvaError> {
    let bad = |reason: String| OvaError::BadTarHeader { offset: 0, reason };
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("a pax record without a length".into()))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > space + 1 && n <= rest.len())
            .ok_or_else(|| bad("a pax record with a bad length".into()))?;
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
                b"size" => {
                    size = Some(
                        std::str::from_utf8(value)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| bad("a pax size that is not a number".into()))?,
                    )
                }
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[156] = kind;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    #[test]
    fn ustar_headers_parse_and_checksums_are_checked() {
        let h = header("vm.ovf", 1234, b'0');
        assert_eq!(
            TarHeader::parse(&h, 0),
            Ok(Some(TarHeader {
                name: "vm.ovf".into(),
                size: 1234,
                kind: EntryKind::File
            }))
        );
        let mut bad = h.clone();
        bad[0] = b'w';
        assert!(matches!(
            TarHeader::parse(&bad, 512),
            Err(OvaError::BadTarHeader { offset: 512, .. })
        ));
        assert_eq!(TarHeader::parse(&[0u8; 512], 0), Ok(None));
    }

    #[test]
    fn base256_sizes_and_pax_records_parse() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 1;
        field[10] = 2;
        assert_eq!(octal(&field), Some(0x201));
        let records = b"23 path=dir/disk1.vmdk\n15 size=123456\n";
        assert_eq!(
            pax_overrides(records),
            Ok((Some("dir/disk1.vmdk".into()), Some(123456)))
        );
        assert!(pax_overrides(b"99 path=x\n").is_err());
    }
}

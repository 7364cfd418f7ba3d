//! The qcow2 header and its extensions: parsed field by field and validated before any data is
//! looked at, so that refusals happen before a single byte reaches the target.

use super::error::Qcow2Error;
use super::limits::*;

const MAGIC: [u8; 4] = *b"QFI\xfb";
const V2_HEADER_LEN: usize = 72;
const V3_MIN_HEADER_LEN: usize = 104;

/// Bytes needed to learn the cluster size (magic, version, backing file fields, cluster_bits).
pub const HEADER_PEEK_LEN: usize = 24;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

const EXT_END: u32 = 0;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;

/// How compressed clusters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate (RFC 1951) with a 4 KiB window, qemu's default.
    Zlib,
    Zstd,
}

/// A validated qcow2 header: every field the converter relies on has been range-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub virtual_size: u64,
    pub l1_entries: u64,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u64,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub refcount_order: u32,
    pub header_length: u64,
    pub compression: CompressionType,
}

/// Reads the cluster size from the first [`HEADER_PEEK_LEN`] bytes, so a caller knows how much
/// to read before calling [`Header::parse`] with the whole first cluster.
pub fn cluster_size_from_prefix(prefix: &[u8]) -> Result<u64, Qcow2Error> {
    let r = Fields(prefix);
    r.need(HEADER_PEEK_LEN)?;
    if prefix[0..4] != MAGIC {
        return Err(Qcow2Error::BadMagic);
    }
    let bits = r.u32(20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&bits) {
        return Err(Qcow2Error::ClusterBitsOutOfRange(bits));
    }
    Ok(1 << bits)
}

struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn need(&self, n: usize) -> Result<(), Qcow2Error> {
        if self.0.len() < n {
            return Err(Qcow2Error::TruncatedHeader {
                needed: n,
                available: self.0.len(),
            });
        }
        Ok(())
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

impl Header {
    /// Parses and validates the header from the image's first cluster (or as much of the image
    /// as exists, when it is shorter). `image_len` is the total stream length when known; it
    /// lets table offsets past the end be refused up front.
    pub fn parse(cluster0: &[u8], image_len: Option<u64>) -> Result<Header, Qcow2Error> {
        let f = Fields(cluster0);
        f.need(V2_HEADER_LEN)?;
        if cluster0[0..4] != MAGIC {
            return Err(Qcow2Error::BadMagic);
        }
        let version = f.u32(4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::UnsupportedVersion(version));
        }
        let backing_file_offset = f.u64(8);
        let backing_file_size = f.u32(16) as usize;
        let cluster_bits = f.u32(20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBitsOutOfRange(cluster_bits));
        }
        let cluster_size = 1u64 << cluster_bits;
        let virtual_size = f.u64(24);
        let crypt_method = f.u32(32);
        let l1_entries = u64::from(f.u32(36));
        let l1_table_offset = f.u64(40);
        let refcount_table_offset = f.u64(48);
        let refcount_table_clusters = u64::from(f.u32(56));
        let nb_snapshots = f.u32(60);
        let snapshots_offset = f.u64(64);

        let (incompat, compat, refcount_order, header_length, compression_byte) = if version == 3 {
            f.need(V3_MIN_HEADER_LEN)?;
            let header_length = f.u32(100) as usize;
            if header_length < V3_MIN_HEADER_LEN || !header_length.is_multiple_of(8) {
                return Err(Qcow2Error::MalformedHeader(format!(
                    "header_length {header_length} must be at least 104 and a multiple of 8"
                )));
            }
            if header_length as u64 > cluster_size {
                return Err(Qcow2Error::MalformedHeader(format!(
                    "header_length {header_length} is larger than the cluster size {cluster_size}"
                )));
            }
            f.need(header_length)?;
            let compression = if header_length > 104 {
                cluster0[104]
            } else {
                0
            };
            (f.u64(72), f.u64(80), f.u32(96), header_length, compression)
        } else {
            (0, 0, 4, V2_HEADER_LEN, 0)
        };

        // Refusals that say the image is not self-contained or not readable come first: they
        // are the most useful thing to tell a user.
        if backing_file_offset != 0 {
            return Err(Qcow2Error::BackingFile(backing_name(
                cluster0,
                backing_file_offset,
                backing_file_size,
            )));
        }
        if crypt_method != 0 {
            return Err(Qcow2Error::Encrypted(crypt_method));
        }
        if incompat & INCOMPAT_CORRUPT != 0 {
            return Err(Qcow2Error::CorruptBit);
        }
        if incompat & INCOMPAT_DATA_FILE != 0 {
            return Err(Qcow2Error::ExternalDataFile);
        }
        let unknown = incompat & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let names = feature_names(cluster0, header_length, cluster_size, unknown);
            return Err(Qcow2Error::UnknownIncompatibleFeatures {
                bits: unknown,
                names,
            });
        }
        let compression = match (incompat & INCOMPAT_COMPRESSION != 0, compression_byte) {
            (false, 0) => CompressionType::Zlib,
            (false, other) => {
                return Err(Qcow2Error::MalformedHeader(format!(
                    "compression type {other} is set but the compression-type feature bit is not"
                )));
            }
            (true, 0) => CompressionType::Zlib,
            (true, 1) => CompressionType::Zstd,
            (true, other) => return Err(Qcow2Error::UnknownCompressionType(other)),
        };
        if incompat & INCOMPAT_EXTL2 != 0 && cluster_bits < MIN_EXTENDED_L2_CLUSTER_BITS {
            return Err(Qcow2Error::MalformedHeader(format!(
                "extended L2 entries need clusters of at least 16 KiB, this image has {cluster_size}"
            )));
        }
        if refcount_order > MAX_REFCOUNT_ORDER {
            return Err(Qcow2Error::MalformedHeader(format!(
                "refcount_order {refcount_order} is over the maximum of {MAX_REFCOUNT_ORDER}"
            )));
        }
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::VirtualSizeTooLarge {
                size: virtual_size,
                limit: MAX_VIRTUAL_SIZE,
            });
        }
        if nb_snapshots > MAX_SNAPSHOTS {
            return Err(Qcow2Error::MalformedHeader(format!(
                "{nb_snapshots} internal snapshots, over the limit of {MAX_SNAPSHOTS}"
            )));
        }

        let header = Header {
            version,
            cluster_bits,
            virtual_size,
            l1_entries,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            nb_snapshots,
            snapshots_offset,
            incompatible_features: incompat,
            compatible_features: compat,
            refcount_order,
            header_length: header_length as u64,
            compression,
        };
        header.check_tables(image_len)?;
        Ok(header)
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are 128 bits with a subcluster bitmap.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTL2 != 0
    }

    /// Whether the image was left open by a writer with lazy refcounts. Its refcounts may be
    /// stale, but the L1/L2 mapping is authoritative, and the mapping is all we read.
    pub fn dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }

    pub fn l2_entry_bytes(&self) -> u64 {
        if self.extended_l2() { 16 } else { 8 }
    }

    /// Guest bytes one L2 table maps.
    pub fn l2_coverage(&self) -> u64 {
        self.cluster_size() / self.l2_entry_bytes() * self.cluster_size()
    }

    pub fn l1_table_bytes(&self) -> u64 {
        self.l1_entries * 8
    }

    pub fn refcount_table_bytes(&self) -> u64 {
        self.refcount_table_clusters * self.cluster_size()
    }

    /// L1 entries that map guest offsets below the virtual size; later ones are never read.
    pub fn l1_entries_needed(&self) -> u64 {
        self.virtual_size.div_ceil(self.l2_coverage())
    }

    fn check_tables(&self, image_len: Option<u64>) -> Result<(), Qcow2Error> {
        let cs = self.cluster_size();
        let l1_bytes = self.l1_table_bytes();
        if l1_bytes > MAX_L1_TABLE_BYTES {
            return Err(Qcow2Error::TableTooLarge {
                what: "L1 table",
                bytes: l1_bytes,
                limit: MAX_L1_TABLE_BYTES,
            });
        }
        if self.l1_entries < self.l1_entries_needed() {
            return Err(Qcow2Error::MalformedHeader(format!(
                "L1 table has {} entries but the virtual size {} needs {}",
                self.l1_entries,
                self.virtual_size,
                self.l1_entries_needed()
            )));
        }
        let rt_bytes = self.refcount_table_bytes();
        if rt_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(Qcow2Error::TableTooLarge {
                what: "refcount table",
                bytes: rt_bytes,
                limit: MAX_REFCOUNT_TABLE_BYTES,
            });
        }
        let mut tables: Vec<(&'static str, u64, u64)> = vec![("header", 0, cs)];
        if self.l1_entries > 0 {
            tables.push(("L1 table", self.l1_table_offset, l1_bytes));
        }
        if self.refcount_table_clusters > 0 {
            tables.push(("refcount table", self.refcount_table_offset, rt_bytes));
        }
        if self.nb_snapshots > 0 {
            tables.push(("snapshot table", self.snapshots_offset, 1));
        }
        for &(what, offset, len) in &tables[1..] {
            if !offset.is_multiple_of(cs) {
                return Err(Qcow2Error::Misaligned {
                    what,
                    offset,
                    cluster_size: cs,
                });
            }
            if offset >= MAX_HOST_OFFSET {
                return Err(Qcow2Error::MalformedHeader(format!(
                    "{what} offset {offset:#x} is beyond the addressable range"
                )));
            }
            if let Some(image_len) = image_len
                && offset + len > image_len
            {
                return Err(Qcow2Error::OffsetBeyondEnd {
                    what,
                    offset,
                    len: image_len,
                });
            }
        }
        for (i, &(what, offset, len)) in tables.iter().enumerate() {
            for &(other, o_off, o_len) in &tables[..i] {
                if offset < o_off + o_len && o_off < offset + len {
                    return Err(Qcow2Error::Overlap {
                        what,
                        offset,
                        other,
                    });
                }
            }
        }
        Ok(())
    }
}

fn backing_name(cluster0: &[u8], offset: u64, size: usize) -> String {
    let size = size.min(MAX_BACKING_NAME_BYTES);
    usize::try_from(offset)
        .ok()
        .and_then(|start| cluster0.get(start..start.checked_add(size)?))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_else(|| format!("name at offset {offset:#x}"))
}

/// Names the given incompatible feature bits from the image's feature-name table extension,
/// falling back to "bit N" for bits the image does not name.
fn feature_names(cluster0: &[u8], header_length: usize, cluster_size: u64, bits: u64) -> String {
    let mut names: Vec<String> = Vec::new();
    let table = extension(cluster0, header_length, cluster_size, EXT_FEATURE_NAMES);
    for bit in 0..64 {
        if bits & (1 << bit) == 0 {
            continue;
        }
        let named = table.and_then(|t| {
            t.chunks_exact(48).find_map(|e| {
                (e[0] == 0 && u32::from(e[1]) == bit).then(|| {
                    let raw = &e[2..48];
                    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                    String::from_utf8_lossy(&raw[..end]).into_owned()
                })
            })
        });
        names.push(named.map_or(format!("bit {bit}"), |n| format!("{n:?} (bit {bit})")));
    }
    names.join(", ")
}

/// Finds one header extension's payload. Extensions follow the header inside the first cluster.
fn extension(cluster0: &[u8], mut at: usize, cluster_size: u64, want: u32) -> Option<&[u8]> {
    let end = cluster0.len().min(cluster_size as usize);
    while at + 8 <= end {
        let kind = u32::from_be_bytes(cluster0[at..at + 4].try_into().ok()?);
        let len = u32::from_be_bytes(cluster0[at + 4..at + 8].try_into().ok()?) as usize;
        if kind == EXT_END {
            return None;
        }
        let data = cluster0.get(at + 8..(at + 8).checked_add(len)?)?;
        if kind == want {
            return Some(data);
        }
        at = at + 8 + len.div_ceil(8) * 8;
    }
    None
}

//! Every way a qcow2 image is refused, each with a message that says what was wrong.

/// Why a qcow2 image cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    #[error("qcow2 header is truncated: need {needed} bytes, the image has {available}")]
    TruncatedHeader { needed: usize, available: usize },
    #[error("not a qcow2 image (bad magic)")]
    BadMagic,
    #[error("qcow2 version {0} is not supported (only versions 2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error(
        "qcow2 cluster_bits {0} is out of range (must be 9..=21, i.e. 512 B to 2 MiB clusters)"
    )]
    ClusterBitsOutOfRange(u32),
    #[error(
        "the image has a backing file ({0:?}); images that depend on another image cannot be \
         imported: flatten it first with `qemu-img convert -O qcow2 SRC DST`"
    )]
    BackingFile(String),
    #[error(
        "the image keeps its data in an external data file; convert it to a self-contained \
         image first with `qemu-img convert`"
    )]
    ExternalDataFile,
    #[error(
        "the image is encrypted (method {0}); decrypt it first, e.g. `qemu-img convert \
         --object secret,... --image-opts ... -O qcow2`"
    )]
    Encrypted(u32),
    #[error("the image is marked corrupt; repair it with `qemu-img check -r all` first")]
    CorruptBit,
    #[error(
        "the image uses unknown incompatible features {names} (bits {bits:#x}); refusing to guess"
    )]
    UnknownIncompatibleFeatures { bits: u64, names: String },
    #[error("qcow2 header is malformed: {0}")]
    MalformedHeader(String),
    #[error("qcow2 compression type {0} is unknown (0 = zlib, 1 = zstd)")]
    UnknownCompressionType(u8),
    #[error("qcow2 virtual size {size} exceeds the limit of {limit} bytes")]
    VirtualSizeTooLarge { size: u64, limit: u64 },
    #[error("qcow2 {what} is {bytes} bytes, over the limit of {limit}")]
    TableTooLarge {
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("qcow2 {what} at offset {offset:#x} is not aligned to the cluster size {cluster_size}")]
    Misaligned {
        what: &'static str,
        offset: u64,
        cluster_size: u64,
    },
    #[error("qcow2 {what} at offset {offset:#x} lies beyond the end of the image ({len} bytes)")]
    OffsetBeyondEnd {
        what: &'static str,
        offset: u64,
        len: u64,
    },
    #[error("qcow2 {what} at offset {offset:#x} overlaps the {other}")]
    Overlap {
        what: &'static str,
        offset: u64,
        other: &'static str,
    },
    #[error("qcow2 L1 entry {index} is malformed ({entry:#018x}): reserved bits are set")]
    MalformedL1Entry { index: u64, entry: u64 },
    #[error("qcow2 L2 entry for guest offset {guest:#x} is malformed ({entry:#018x}): {reason}")]
    MalformedL2Entry {
        guest: u64,
        entry: u64,
        reason: &'static str,
    },
    #[error(
        "compressed cluster for guest offset {guest:#x} decodes to {got} bytes, expected {want}"
    )]
    CompressedLength { guest: u64, got: usize, want: usize },
    #[error("compressed cluster for guest offset {guest:#x} is corrupt: {reason}")]
    CompressedCorrupt { guest: u64, reason: String },
    #[error(
        "the qcow2 stream ended at byte {len} but the image refers to data at {needed:#x}: the \
         download is truncated or the image is damaged"
    )]
    Truncated { needed: u64, len: u64 },
    #[error(
        "host cluster at {offset:#x} is referenced again after its bytes were released; this \
         layout needs random access (import from a local file) or a larger memory limit"
    )]
    ClusterReleased { offset: u64 },
    #[error(
        "image metadata needs more than the memory budget of {budget} bytes; raise the memory \
         limit"
    )]
    MetadataBudget { budget: usize },
}

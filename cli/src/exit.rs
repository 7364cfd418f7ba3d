//! Exit codes, one per class of failure, so scripts can tell bad input from a bad network.

use cdi_datapath::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// Bad arguments (clap also uses 2).
pub const USAGE: u8 = 2;
/// The image is invalid, unsupported, or too large for the target.
pub const BAD_INPUT: u8 = 3;
/// The checksum did not match.
pub const CHECKSUM: u8 = 4;
/// Writing the target failed (I/O error, no space).
pub const IO: u8 = 5;
/// The source could not be fetched (network, HTTP error, not found).
pub const NETWORK: u8 = 6;

pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidImage | ErrorKind::Unsupported | ErrorKind::TooLarge => BAD_INPUT,
        ErrorKind::ChecksumMismatch => CHECKSUM,
        ErrorKind::NoSpace | ErrorKind::Io => IO,
        ErrorKind::Network | ErrorKind::NotFound | ErrorKind::Auth => NETWORK,
        ErrorKind::Config => USAGE,
    }
}

/// What to do about a failure of this kind, in one sentence.
pub fn advice(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidImage => {
            "the image is damaged or not what it claims to be; fetch it again or repair it with qemu-img"
        }
        ErrorKind::Unsupported => {
            "convert the image to a supported form (raw or self-contained qcow2) and retry"
        }
        ErrorKind::TooLarge => "use a larger target (or a larger --size)",
        ErrorKind::ChecksumMismatch => {
            "the download is corrupt or the checksum is wrong; check both and retry"
        }
        ErrorKind::NoSpace => "free space on the target or use a larger volume",
        ErrorKind::Io => "check the target path and its permissions",
        ErrorKind::Network => "check the URL and the network, then retry",
        ErrorKind::NotFound => "check that the source path or URL exists",
        ErrorKind::Auth => {
            "check the credentials, extra headers and CA certificates for the source"
        }
        ErrorKind::Config => "check the options given",
    }
}

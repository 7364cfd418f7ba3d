//! OVA virtual appliances: a tar holding an OVF descriptor (first) and the disk images it
//! references. This module parses, without I/O, what the data path needs to find the one disk:
//! tar headers (ustar, pax and GNU long names), and the OVF's list of disk files. The data path
//! walks the tar and hands the disk's bytes to that disk's own decoder.

mod error;
pub mod limits;
mod ovf;
mod tar;

pub use error::OvaError;
pub use ovf::disk_files;
pub use tar::{EntryKind, TarHeader, pax_overrides};

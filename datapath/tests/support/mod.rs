//! Helpers shared by the data path's integration tests.

use bytes::Bytes;
use cdi_datapath::Error;
use cdi_datapath::source::Source;

/// A source with the length known up front and no random access, as a download is: uneven
/// pieces of [`Download::PIECE`] bytes, or of the size given.
pub struct Download(pub Bytes, pub usize);

impl Download {
    /// Not a multiple of any block or sector size, as pieces off a network are not.
    pub const PIECE: usize = 300_001;

    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Download(bytes.into(), Self::PIECE)
    }
}

impl Source for Download {
    fn describe(&self) -> String {
        "download".into()
    }
    fn total_len(&self) -> Option<u64> {
        Some(self.0.len() as u64)
    }
    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = self.0.len().min(self.1);
        Ok(Some(self.0.split_to(n)))
    }
}

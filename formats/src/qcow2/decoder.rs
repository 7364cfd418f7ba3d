//! qcow2 behind the common decoder contract: the stream converter fed cluster by cluster, its
//! sink forwarding to the contract's [`Output`].

use bytes::{Bytes, BytesMut};

use super::compressed::CompressedCluster;
use super::header::{Header, cluster_size_from_prefix};
use super::stream::{ConvertSink, StreamConverter, StreamError};
use crate::decoder::{
    DecodeError, Decoder, DecoderSpec, DecoderStats, OpenContext, Output, OutputClosed, Stash,
};
use crate::detect::Format;

/// How the data path makes a qcow2 decoder.
pub const SPEC: DecoderSpec = DecoderSpec {
    format: Format::Qcow2,
    head_len,
    open,
};

/// The header cluster.
fn head_len(prefix: &[u8]) -> Result<usize, DecodeError> {
    Ok(cluster_size_from_prefix(prefix)? as usize)
}

fn open(head: &[u8], ctx: OpenContext) -> Result<Box<dyn Decoder>, DecodeError> {
    let header = Header::parse(head, ctx.image_len)?;
    let cs = header.cluster_size() as usize;
    Ok(Box::new(Qcow2Decoder {
        virtual_size: header.virtual_size,
        cs,
        converter: Some(StreamConverter::new(
            header,
            ctx.image_len,
            ctx.stash,
            ctx.budget,
        )),
        carry: BytesMut::new(),
        ended: false,
    }))
}

struct Forward<'a>(&'a mut dyn Output);

impl ConvertSink for Forward<'_> {
    type Error = OutputClosed;
    fn data(&mut self, guest_offset: u64, bytes: Bytes) -> Result<(), OutputClosed> {
        self.0.data(guest_offset, bytes)
    }
    fn compressed(&mut self, cluster: CompressedCluster) -> Result<(), OutputClosed> {
        self.0.compressed(cluster.into())
    }
}

fn stream_error(e: StreamError<OutputClosed>) -> DecodeError {
    match e {
        StreamError::Image(e) => DecodeError::Qcow2(e),
        StreamError::Stash(io) => DecodeError::Stash(io),
        StreamError::Sink(_) => DecodeError::Closed,
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Qcow2Decoder {
    virtual_size: u64,
    cs: usize,
    converter: Option<StreamConverter<Box<dyn Stash + Send>>>,
    /// A partial cluster, completed by the next piece.
    carry: BytesMut,
    /// A partial cluster was fed: it was the last.
    ended: bool,
}

impl Qcow2Decoder {
    fn feed_cluster(&mut self, cluster: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        if self.ended {
            // Bytes after a partial cluster cannot exist in a stream fed in order.
            return Ok(());
        }
        self.ended = cluster.len() < self.cs;
        match self.converter.as_mut() {
            Some(c) => c
                .feed_cluster(cluster, &mut Forward(out))
                .map_err(stream_error),
            None => Ok(()),
        }
    }
}

impl Decoder for Qcow2Decoder {
    fn virtual_size(&self) -> Option<u64> {
        Some(self.virtual_size)
    }

    fn block_align(&self) -> usize {
        self.cs
    }

    fn feed(&mut self, mut bytes: Bytes, out: &mut dyn Output) -> Result<(), DecodeError> {
        if !self.carry.is_empty() {
            let take = (self.cs - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes.split_to(take));
            if self.carry.len() < self.cs {
                return Ok(());
            }
            let cluster = std::mem::take(&mut self.carry).freeze();
            self.feed_cluster(cluster, out)?;
        }
        while bytes.len() >= self.cs {
            let cluster = bytes.split_to(self.cs);
            self.feed_cluster(cluster, out)?;
        }
        if !bytes.is_empty() {
            self.carry.extend_from_slice(&bytes);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Output) -> Result<DecoderStats, DecodeError> {
        if !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry).freeze();
            self.feed_cluster(last, out)?;
        }
        let Some(converter) = self.converter.take() else {
            return Ok(DecoderStats::default());
        };
        let (stats, stash) = converter.finish(&mut Forward(out)).map_err(stream_error)?;
        Ok(DecoderStats {
            compressed_blocks: stats.compressed_clusters,
            stashed_pieces: stats.stashed_clusters,
            from_stash: stats.from_stash,
            peak_metadata_bytes: stats.peak_metadata_bytes,
            spilled_bytes: stash.spilled_bytes(),
            qcow2: Some(stats),
        })
    }
}

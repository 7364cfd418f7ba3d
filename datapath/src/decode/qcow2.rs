//! Drives the sans-IO qcow2 converter: reads the stream in cluster-aligned blocks, picks a stash,
//! and decodes compressed clusters on a small worker pool while the stream goes on.

use std::io::Read;

use bytes::Bytes;
use cdi_formats::qcow2::{
    ClusterStash, CompressedCluster, ConvertSink, HEADER_PEEK_LEN, Header, StreamConverter,
    StreamError, cluster_size_from_prefix, decompress_cluster_into,
};
use crossbeam_channel::{Receiver, Sender, bounded};

use super::layers::read_error;
use super::stash::{SourceStash, SpillStash};
use super::{ChannelReader, DecodeConfig, DecodeReport, read_full};
use crate::buffer::BufferPool;
use crate::error::Error;
use crate::sink::writer::WriteOp;

/// Bytes read per step: a multiple of every cluster size (512 B to 2 MiB).
const BLOCK: usize = 4 << 20;

struct Outputs<'a> {
    writes: &'a Sender<WriteOp>,
    compressed: &'a Sender<CompressedCluster>,
}

impl ConvertSink for Outputs<'_> {
    type Error = Error;

    fn data(&mut self, guest_offset: u64, bytes: Bytes) -> Result<(), Error> {
        self.writes
            .send(WriteOp {
                offset: guest_offset,
                bytes,
            })
            .map_err(|_| Error::Cancelled)
    }

    fn compressed(&mut self, cluster: CompressedCluster) -> Result<(), Error> {
        self.compressed.send(cluster).map_err(|_| Error::Cancelled)
    }
}

fn stream_error(e: StreamError<Error>) -> Error {
    match e {
        StreamError::Image(e) => Error::Qcow2(e),
        StreamError::Stash(io) => Error::Source(io),
        StreamError::Sink(e) => e,
    }
}

/// Where the qcow2 bytes come from.
pub(crate) enum Input {
    /// The source's own chunks (no compression around the image): clusters are handed on as
    /// slices of them, without a copy, and the source's random access may stand in for the
    /// stash.
    Chunks(ChannelReader),
    /// The output of a decompressor, read into pooled blocks.
    Stream(Box<dyn Read + Send>, BufferPool),
}

/// Decompressed blocks kept for reuse: as many as the writer's queue and run can hold.
const POOLED_BLOCKS: usize = 8;

impl Input {
    pub(crate) fn stream(reader: Box<dyn Read + Send>) -> Self {
        Input::Stream(reader, BufferPool::new(BLOCK, POOLED_BLOCKS))
    }
}

impl Input {
    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Input::Chunks(r) => r,
            Input::Stream(r, _) => r,
        }
    }

    /// Up to `BLOCK` bytes, a whole number of `cs`-byte clusters unless the stream ends.
    fn next_block(&mut self, cs: usize) -> std::io::Result<Option<Bytes>> {
        match self {
            Input::Chunks(r) => r.next_block(cs, BLOCK),
            Input::Stream(r, pool) => pool.read_from(r),
        }
    }
}

/// Converts the qcow2 stream `input`.
pub(crate) fn convert(
    mut input: Input,
    cfg: &DecodeConfig,
    writes: &Sender<WriteOp>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let direct = matches!(input, Input::Chunks(_));
    let layers = report.layers.clone();
    let mut prefix = vec![0u8; HEADER_PEEK_LEN];
    let n = read_full(input.reader(), &mut prefix).map_err(|e| read_error(&layers, e))?;
    prefix.truncate(n);
    let cs = cluster_size_from_prefix(&prefix)? as usize;
    let mut cluster0 = prefix;
    cluster0.resize(cs, 0);
    let n = read_full(input.reader(), &mut cluster0[HEADER_PEEK_LEN..])
        .map_err(|e| read_error(&layers, e))?;
    cluster0.truncate(HEADER_PEEK_LEN + n);
    let image_len = if direct { cfg.source_len } else { None };
    let header = Header::parse(&cluster0, image_len)?;
    if let Some(capacity) = cfg.capacity
        && header.virtual_size > capacity
    {
        return Err(Error::TooLarge {
            needed: header.virtual_size,
            capacity,
        });
    }
    report.image_size = header.virtual_size;
    tracing::debug!(?header, "qcow2 header accepted");

    // Memory split: a quarter for mappings, half for the stash, the rest for pipeline buffers.
    let budget = cfg.memory_limit / 4;
    let stash: Box<dyn ClusterStash + Send> = match (&cfg.random_access, direct) {
        (Some(source), true) => {
            report.used_random_access = true;
            Box::new(SourceStash::new(source.clone(), header.cluster_size()))
        }
        _ => Box::new(SpillStash::new(cfg.memory_limit / 2, cfg.spill_dir.clone())),
    };
    let converter = StreamConverter::new(header, image_len, stash, budget);

    let workers = cfg.threads.max(1);
    let (ctx, crx) = bounded::<CompressedCluster>(workers * 8);
    std::thread::scope(|scope| -> Result<(), Error> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let crx = crx.clone();
                let writes = writes.clone();
                scope.spawn(move || decompress_worker(crx, writes))
            })
            .collect();
        drop(crx);
        let result = run(
            converter, cluster0, &mut input, &layers, writes, &ctx, report,
        );
        drop(ctx);
        let mut worker_error = None;
        for h in handles {
            if let Err(e) = h.join().unwrap_or(Err(Error::Cancelled)) {
                worker_error.get_or_insert(e);
            }
        }
        match (result, worker_error) {
            // A worker's real error explains a cancelled send on this side.
            (Err(Error::Cancelled), Some(e)) | (Ok(()), Some(e)) => Err(e),
            (r, _) => r,
        }
    })
}

fn run(
    mut converter: StreamConverter<Box<dyn ClusterStash + Send>>,
    cluster0: Vec<u8>,
    input: &mut Input,
    layers: &[cdi_formats::Format],
    writes: &Sender<WriteOp>,
    compressed: &Sender<CompressedCluster>,
    report: &mut DecodeReport,
) -> Result<(), Error> {
    let mut out = Outputs { writes, compressed };
    let cs = converter.header().cluster_size() as usize;
    let first_len = cluster0.len();
    converter
        .feed_cluster(Bytes::from(cluster0), &mut out)
        .map_err(stream_error)?;
    if first_len == cs {
        while let Some(block) = input.next_block(cs).map_err(|e| read_error(layers, e))? {
            let n = block.len();
            for at in (0..n).step_by(cs) {
                let cluster = block.slice(at..(at + cs).min(n));
                converter
                    .feed_cluster(cluster, &mut out)
                    .map_err(stream_error)?;
            }
            if !n.is_multiple_of(cs) {
                // A partial cluster only ends the stream.
                break;
            }
        }
    }
    let (stats, stash) = converter.finish(&mut out).map_err(stream_error)?;
    report.qcow2 = Some(stats);
    report.spilled_bytes = stash.spilled_bytes();
    Ok(())
}

/// Page-aligned cluster buffers a decompress worker keeps for reuse (more are made while the
/// writer still holds these).
const WORKER_BUFFERS: usize = 8;

fn decompress_worker(
    jobs: Receiver<CompressedCluster>,
    writes: Sender<WriteOp>,
) -> Result<(), Error> {
    // Clusters are decoded into page-aligned buffers, so a direct-I/O target writes them as
    // they are instead of copying each one.
    let mut pool: Option<BufferPool> = None;
    for job in jobs {
        let pool = match &pool {
            Some(p) if p.capacity() == job.cluster_size => p,
            _ => pool.insert(BufferPool::new(job.cluster_size, WORKER_BUFFERS)),
        };
        let mut buf = pool.buffer();
        buf.fill_with(job.cluster_size, |out| decompress_cluster_into(&job, out))?;
        let bytes = pool
            .freeze(buf)
            .slice(..job.guest_len.min(job.cluster_size));
        writes
            .send(WriteOp {
                offset: job.guest_offset,
                bytes,
            })
            .map_err(|_| Error::Cancelled)?;
    }
    Ok(())
}

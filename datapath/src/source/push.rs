//! A source fed from outside the pipeline: an HTTP request body, the PATCHes of a resumable
//! upload, any async task. The feeding side holds a [`PushSender`] and awaits each send, so a
//! slow pipeline slows the client down (back-pressure) instead of filling memory; the pipeline
//! reads a [`PushSource`] like any other source.
//!
//! ```text
//!  async task ── send(&[u8]) ──► 1 MiB pooled buffer ──full──► bounded queue ──► PushSource
//! ```
//!
//! Bytes are gathered into page-aligned 1 MiB pooled buffers before they are queued, so the
//! pipeline sees the same chunks it gets from a file or a download however small the pieces a
//! network stack hands over. The stream ends cleanly only through [`PushSender::finish`]: a
//! sender dropped without it (a client that went away) makes the source report a stream that
//! ended early, and [`PushSender::fail`] ends it with a given error, so the import fails and
//! its target is removed.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{BufferPool, CHUNK, Source, chunk_pool};
use crate::buffer::AlignedBuf;
use crate::error::Error;

/// Full chunks queued between the sender and the pipeline.
const QUEUE: usize = 8;

enum Pushed {
    Data(Bytes),
    End,
    Failed(Error),
}

/// The pipeline stopped reading (the import failed or finished); its result says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the import is no longer reading its source")]
pub struct PipelineClosed;

/// Makes a connected sender and source. `total_len` is the stream's length when the client
/// announced it (Content-Length, Upload-Length): it drives the progress percentage.
pub fn push_channel(
    describe: impl Into<String>,
    total_len: Option<u64>,
) -> (PushSender, PushSource) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let pool = chunk_pool();
    (
        PushSender {
            tx,
            pool,
            pending: None,
            accepted: 0,
        },
        PushSource {
            rx,
            describe: describe.into(),
            total_len,
            ended: false,
        },
    )
}

/// The feeding side of a [`PushSource`].
#[derive(Debug)]
pub struct PushSender {
    tx: mpsc::Sender<Pushed>,
    pool: BufferPool,
    /// The chunk being filled.
    pending: Option<AlignedBuf>,
    /// Bytes taken so far, including those still in `pending`.
    accepted: u64,
}

impl std::fmt::Debug for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pushed::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Pushed::End => f.write_str("End"),
            Pushed::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

impl PushSender {
    /// Bytes taken so far: where a resumed upload continues.
    pub fn offset(&self) -> u64 {
        self.accepted
    }

    /// Takes `data`, waiting while the pipeline's queue is full.
    ///
    /// Cancel-safe: a send dropped while it waits (a client that disconnected) has taken
    /// exactly [`offset`](Self::offset) bytes so far and lost none of them, so a resumed
    /// upload continues from there.
    pub async fn send(&mut self, mut data: &[u8]) -> Result<(), PipelineClosed> {
        while !data.is_empty() {
            if self.pending.as_ref().is_some_and(|b| b.len() == CHUNK) {
                self.flush().await?;
            }
            let buf = self.pending.get_or_insert_with(|| self.pool.buffer());
            let n = buf.extend_from_slice(data);
            data = &data[n..];
            self.accepted += n as u64;
        }
        if self.pending.as_ref().is_some_and(|b| b.len() == CHUNK) {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues the partly filled chunk, if any. Cancel-safe: the chunk stays pending until the
    /// queue has room for it.
    pub async fn flush(&mut self) -> Result<(), PipelineClosed> {
        if self.pending.as_ref().is_none_or(|b| b.is_empty()) {
            return Ok(());
        }
        let permit = self.tx.reserve().await.map_err(|_| PipelineClosed)?;
        if let Some(buf) = self.pending.take() {
            permit.send(Pushed::Data(self.pool.freeze(buf)));
        }
        Ok(())
    }

    /// Ends the stream cleanly: everything was sent.
    pub async fn finish(mut self) -> Result<(), PipelineClosed> {
        self.flush().await?;
        self.tx.send(Pushed::End).await.map_err(|_| PipelineClosed)
    }

    /// Ends the stream with `error`: the import fails with it and removes its target.
    pub async fn fail(self, error: Error) {
        // A pipeline that already stopped has its own error; nothing more to say.
        let _ = self.tx.send(Pushed::Failed(error)).await;
    }

    /// True once the pipeline stopped reading.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The pipeline's side: chunks in the order they were sent.
#[derive(Debug)]
pub struct PushSource {
    rx: mpsc::Receiver<Pushed>,
    describe: String,
    total_len: Option<u64>,
    ended: bool,
}

impl Source for PushSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn total_len(&self) -> Option<u64> {
        self.total_len
    }

    fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.ended {
            return Ok(None);
        }
        // The pipeline reads on its own threads, never inside the async runtime.
        match self.rx.blocking_recv() {
            Some(Pushed::Data(chunk)) => Ok(Some(chunk)),
            Some(Pushed::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(Pushed::Failed(error)) => {
                self.ended = true;
                Err(error)
            }
            None => {
                self.ended = true;
                Err(Error::SourceTruncated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// Reads `source` to its end on a plain thread, as the pipeline does.
    fn drain(mut source: PushSource) -> std::thread::JoinHandle<Result<Vec<u8>, Error>> {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            while let Some(chunk) = source.next_chunk()? {
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })
    }

    #[test]
    fn small_pieces_arrive_whole_and_in_order_as_full_chunks() {
        let (mut tx, mut rx) = push_channel("test", Some(3 * CHUNK as u64));
        let data: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 251) as u8).collect();
        let feeder = std::thread::spawn(move || {
            runtime().block_on(async {
                for piece in data.chunks(16 * 1024 + 7) {
                    tx.send(piece).await?;
                }
                assert_eq!(tx.offset(), 3 * CHUNK as u64);
                tx.finish().await
            })
        });
        let mut sizes = Vec::new();
        let mut out = Vec::new();
        while let Some(chunk) = rx.next_chunk().expect("chunk") {
            sizes.push(chunk.len());
            out.extend_from_slice(&chunk);
        }
        feeder.join().expect("feeder").expect("sent");
        assert_eq!(sizes, vec![CHUNK; 3]);
        let expected: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 251) as u8).collect();
        assert_eq!(out, expected);
        assert_eq!(rx.total_len(), Some(3 * CHUNK as u64));
    }

    #[test]
    fn a_sender_dropped_without_finish_reads_as_a_truncated_stream() {
        let (mut tx, rx) = push_channel("test", None);
        let reader = drain(rx);
        runtime().block_on(async {
            tx.send(b"partial").await.expect("sent");
            tx.flush().await.expect("flushed");
        });
        drop(tx);
        let err = reader.join().expect("reader").expect_err("truncated");
        assert!(matches!(err, Error::SourceTruncated), "{err}");
    }

    #[test]
    fn a_failed_stream_ends_with_the_given_error() {
        let (mut tx, rx) = push_channel("test", None);
        let reader = drain(rx);
        runtime().block_on(async {
            tx.send(b"abc").await.expect("sent");
            tx.fail(Error::Config("checksum header is malformed".into()))
                .await;
        });
        let err = reader.join().expect("reader").expect_err("failed");
        assert!(err.to_string().contains("checksum header"), "{err}");
    }

    #[test]
    fn sending_after_the_pipeline_stopped_says_so() {
        let (mut tx, rx) = push_channel("test", None);
        drop(rx);
        let r = runtime().block_on(async { tx.send(&vec![0u8; CHUNK]).await });
        assert_eq!(r, Err(PipelineClosed));
        assert!(tx.is_closed());
    }

    #[test]
    fn a_full_queue_holds_the_sender_back() {
        let (mut tx, mut rx) = push_channel("test", None);
        let rt = runtime();
        // QUEUE full chunks fit; the next one waits for the reader.
        rt.block_on(async {
            for _ in 0..QUEUE {
                tx.send(&vec![1u8; CHUNK]).await.expect("queued");
            }
        });
        let blocked = rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                tx.send(&vec![2u8; CHUNK]),
            )
            .await
            .is_err()
        });
        assert!(blocked, "the sender went past a full queue");
        // The cancelled send lost nothing: its chunk is still pending and counted once.
        assert_eq!(tx.offset(), (QUEUE as u64 + 1) * CHUNK as u64);
        rt.block_on(async {
            let reader = std::thread::spawn(move || {
                let mut total = 0;
                while let Some(chunk) = rx.next_chunk().expect("chunk") {
                    total += chunk.len();
                }
                total
            });
            tx.finish().await.expect("finished");
            assert_eq!(reader.join().expect("reader"), (QUEUE + 1) * CHUNK);
        });
    }
}

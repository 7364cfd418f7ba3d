//! A range of the file as a request body, read on a thread of its own and hashed on the way,
//! so a streamed PATCH costs one read of each byte and the hash runs beside the TLS
//! encryption instead of before it.
//!
//! ```text
//!  file[offset..offset+len] ──read 256 KiB, hash──► bounded channel ──► request body
//! ```
//!
//! The thread ends when it has sent the whole range (and returns the hash state that now covers
//! it) or when the request drops the body (a broken connection; the hash state is then of no
//! use, since the server says how much it took).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use bytes::Bytes;
use cdi_datapath::checksum::Hasher;

use super::progress::Meter;

/// Pieces read and handed to the connection at a time; the progress display moves by these.
const PIECE: usize = 256 << 10;
/// Pieces read ahead of the connection.
const READ_AHEAD: usize = 8;

/// How the reading ended.
#[derive(Debug)]
pub enum Read {
    /// Every byte of the range went into the body: the hash state covers it.
    Whole(Box<Hasher>),
    /// The request stopped taking the body before its end.
    Dropped,
}

/// A streamed body of `file[offset..offset + len]` and the thread that reads it, hashing into
/// `hasher` (the state of the hash just before `offset`).
pub fn range_body(
    file: Arc<File>,
    offset: u64,
    len: u64,
    mut hasher: Hasher,
    meter: Arc<Meter>,
) -> std::io::Result<(reqwest::Body, JoinHandle<std::io::Result<Read>>)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    let reader = std::thread::Builder::new()
        .name("upload-read".into())
        .spawn(move || {
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let want = (end - at).min(PIECE as u64) as usize;
                let mut piece = vec![0u8; want];
                if let Err(e) = file.read_exact_at(&mut piece, at) {
                    let note = std::io::Error::new(e.kind(), e.to_string());
                    let _ = tx.blocking_send(Err(note));
                    return Err(e);
                }
                hasher.update(&piece);
                if tx.blocking_send(Ok(Bytes::from(piece))).is_err() {
                    return Ok(Read::Dropped);
                }
                at += want as u64;
            }
            Ok(Read::Whole(Box::new(hasher)))
        })?;
    let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let body = futures_util::StreamExt::inspect(pieces, move |piece| {
        if let Ok(piece) = piece {
            meter
                .in_flight
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
    });
    Ok((reqwest::Body::wrap_stream(body), reader))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use cdi_datapath::Algorithm;
    use futures_util::StreamExt;
    use http_body_util::BodyExt;

    use super::*;

    fn sha256(data: &[u8]) -> String {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish_hex()
    }

    #[tokio::test]
    async fn the_body_is_the_range_and_the_hash_continues_from_the_state_given() {
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&data).expect("write");
        let file = Arc::new(f.reopen().expect("reopen"));
        let (from, len) = (100_000u64, 1_000_000u64);
        let mut before = Hasher::new(Algorithm::Sha256);
        before.update(&data[..from as usize]);
        let meter = Arc::new(Meter::default());
        let (body, reader) = range_body(file, from, len, before, Arc::clone(&meter)).expect("body");
        let sent = body.collect().await.expect("body").to_bytes();
        assert_eq!(&sent[..], &data[from as usize..(from + len) as usize]);
        assert_eq!(meter.in_flight.load(Ordering::Relaxed), len);
        match reader.join().expect("reader").expect("read") {
            Read::Whole(h) => assert_eq!(h.finish_hex(), sha256(&data[..(from + len) as usize])),
            Read::Dropped => panic!("the whole range was taken"),
        }
    }

    #[tokio::test]
    async fn a_body_dropped_early_ends_the_reader_without_a_hash() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&vec![7u8; 8 << 20]).expect("write");
        let file = Arc::new(f.reopen().expect("reopen"));
        let meter = Arc::new(Meter::default());
        let hasher = Hasher::new(Algorithm::Sha256);
        let (body, reader) = range_body(file, 0, 8 << 20, hasher, meter).expect("body");
        let mut stream = body.into_data_stream();
        let first = stream.next().await.expect("a piece").expect("data");
        assert_eq!(first.len(), PIECE);
        drop(stream);
        assert!(matches!(reader.join().expect("reader"), Ok(Read::Dropped)));
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_range_fails_the_body_and_the_reader() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&[1u8; 1000]).expect("write");
        let file = Arc::new(f.reopen().expect("reopen"));
        let meter = Arc::new(Meter::default());
        let hasher = Hasher::new(Algorithm::Sha256);
        let (body, reader) = range_body(file, 0, 5000, hasher, meter).expect("body");
        assert!(body.collect().await.is_err());
        let e = reader.join().expect("reader").expect_err("short file");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}

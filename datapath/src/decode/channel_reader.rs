//! A `Read` over chunks arriving on a channel from the source thread.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use crossbeam_channel::Receiver;

/// What the source thread sends.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Bytes),
    /// The source ended cleanly; without it, a closed channel means the source failed.
    End,
}

#[derive(Debug)]
pub(crate) struct ChannelReader {
    rx: Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

impl ChannelReader {
    pub fn new(rx: Receiver<Chunk>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl ChannelReader {
    fn recv(&mut self) -> io::Result<Option<Bytes>> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(Chunk::Data(b)) => Ok(Some(b)),
            Ok(Chunk::End) => {
                self.ended = true;
                Ok(None)
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the source stopped before the end of the stream",
            )),
        }
    }

    /// The first `n` bytes not yet read (fewer at the end of the stream), without consuming.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.current.len() < n {
            let mut head = bytes::BytesMut::from(&self.current[..]);
            while head.len() < n {
                match self.recv()? {
                    Some(b) => head.extend_from_slice(&b),
                    None => break,
                }
            }
            self.current = head.freeze();
        }
        Ok(&self.current[..n.min(self.current.len())])
    }

    /// The next piece of the stream whose length is a multiple of `multiple` (shorter only at
    /// the end of the stream), at most `max` bytes long (`max` itself a multiple of
    /// `multiple`). It is a slice of the chunk as it arrived whenever that chunk holds at
    /// least `multiple` bytes; a block that straddles chunks is copied together.
    pub fn next_block(&mut self, multiple: usize, max: usize) -> io::Result<Option<Bytes>> {
        debug_assert!(multiple > 0 && max >= multiple && max.is_multiple_of(multiple));
        while self.current.is_empty() {
            match self.recv()? {
                Some(b) => self.current = b,
                None => return Ok(None),
            }
        }
        if self.current.len() >= multiple {
            let n = self.current.len().min(max) / multiple * multiple;
            return Ok(Some(self.current.split_to(n)));
        }
        let mut block = bytes::BytesMut::with_capacity(multiple);
        block.extend_from_slice(&std::mem::take(&mut self.current));
        while block.len() < multiple {
            let Some(b) = self.recv()? else { break };
            let take = (multiple - block.len()).min(b.len());
            block.extend_from_slice(&b[..take]);
            self.current = b.slice(take..);
        }
        Ok(Some(block.freeze()))
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.recv()? {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    fn reader(chunks: &[Bytes]) -> ChannelReader {
        let (tx, rx) = unbounded();
        for c in chunks {
            tx.send(Chunk::Data(c.clone())).expect("ok");
        }
        tx.send(Chunk::End).expect("ok");
        ChannelReader::new(rx)
    }

    #[test]
    fn blocks_are_whole_multiples_until_the_end_and_lose_nothing() {
        let data: Vec<u8> = (0..=255u8).cycle().take(61).collect();
        let sizes = [3usize, 5, 1, 7, 0, 9, 20, 16];
        let mut chunks = Vec::new();
        let mut at = 0;
        for s in sizes {
            chunks.push(Bytes::copy_from_slice(&data[at..at + s]));
            at += s;
        }
        let mut r = reader(&chunks);
        let mut out = Vec::new();
        let mut lens = Vec::new();
        while let Some(b) = r.next_block(4, 8).expect("ok") {
            lens.push(b.len());
            out.extend_from_slice(&b);
        }
        assert_eq!(out, data);
        let (last, rest) = lens.split_last().expect("ok");
        assert!(
            rest.iter().all(|&n| n % 4 == 0 && n > 0 && n <= 8),
            "{lens:?}"
        );
        assert_eq!(*last, 61 % 4, "{lens:?}");
    }

    #[test]
    fn blocks_inside_a_chunk_are_not_copied() {
        let chunk = Bytes::from(vec![7u8; 64]);
        let mut r = reader(std::slice::from_ref(&chunk));
        let first = r.next_block(16, 32).expect("ok").expect("ok");
        let second = r.next_block(16, 32).expect("ok").expect("ok");
        assert_eq!(first.as_ptr(), chunk.as_ptr());
        assert_eq!(second.as_ptr(), chunk[32..].as_ptr());
        assert!(r.next_block(16, 32).expect("ok").is_none());
    }

    #[test]
    fn a_closed_channel_without_end_is_an_error() {
        let (tx, rx) = unbounded();
        tx.send(Chunk::Data(Bytes::from_static(b"abc")))
            .expect("ok");
        drop(tx);
        let mut r = ChannelReader::new(rx);
        let err = r.next_block(4, 4).expect_err("fails");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}

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

    /// The next piece of the stream as it arrived, without copying it.
    pub fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        loop {
            match self.recv()? {
                Some(b) if b.is_empty() => continue,
                other => return Ok(other),
            }
        }
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

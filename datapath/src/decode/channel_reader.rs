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

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(b)) => self.current = b,
                Ok(Chunk::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the source stopped before the end of the stream",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

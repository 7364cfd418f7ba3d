//! The upload server's form parser must not panic on any body, and must read the same parts
//! and bytes however the body is cut into pieces, since the network decides that.
#![no_main]

use cdi_uploadserver::multipart::{Event, FormError, FormParser, PartHead};
use libfuzzer_sys::fuzz_target;

const BOUNDARY: &str = "b0undary";

/// What a form reads as: its parts with their whole bodies, then how it ended.
type Reading = (Vec<(PartHead, Vec<u8>)>, Result<(), FormError>);

fn read(body: &[u8], piece_lens: &[u8]) -> Reading {
    let mut parser = FormParser::new(BOUNDARY);
    let mut parts: Vec<(PartHead, Vec<u8>)> = Vec::new();
    let mut rest = body;
    let mut finished = false;
    let mut lens = piece_lens.iter().map(|&n| usize::from(n).max(1)).cycle();
    loop {
        loop {
            match parser.next_event() {
                Ok(None) => break,
                Ok(Some(Event::Part(head))) => parts.push((head, Vec::new())),
                Ok(Some(Event::Data(data))) => match parts.last_mut() {
                    Some((_, body)) => body.extend_from_slice(&data),
                    None => panic!("data before any part"),
                },
                Ok(Some(Event::End)) => return (parts, Ok(())),
                Err(e) => return (parts, Err(e)),
            }
        }
        if rest.is_empty() {
            assert!(!finished, "the parser wants more input after the body ended");
            parser.finish();
            finished = true;
            continue;
        }
        let n = if piece_lens.is_empty() {
            rest.len()
        } else {
            lens.next().unwrap_or(1).min(rest.len())
        };
        parser.feed(&rest[..n]);
        rest = &rest[n..];
    }
}

fuzz_target!(|input: (Vec<u8>, &[u8])| {
    let (piece_lens, body) = input;
    let whole = read(body, &[]);
    let pieces = read(body, &piece_lens);
    match (&whole.1, &pieces.1) {
        (Ok(()), _) | (_, Ok(())) => assert_eq!(whole, pieces, "the split changed the form"),
        (Err(a), Err(b)) => assert_eq!(a, b, "the split changed the error"),
    }
});

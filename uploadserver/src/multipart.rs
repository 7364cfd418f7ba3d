//! A streaming reader of `multipart/form-data` bodies (RFC 7578, framed as RFC 2046 says), for
//! the form routes. Sans-IO: bytes are fed in as they arrive and come out as events, a part's
//! body in pieces as received, never collected. What has to be held is bounded: the preamble,
//! one part's headers, and a partial delimiter at the end of a piece.
//!
//! ```text
//!  preamble  CRLF? "--" boundary CRLF  headers CRLF CRLF  body  CRLF "--" boundary ...  "--" boundary "--"
//!  (dropped)       └──────── Part(head) ───────────────┘  Data…  └ next part                └ End
//! ```

use bytes::{Bytes, BytesMut};

/// Most bytes before the first boundary: clients send none, RFC 2046 allows some.
pub const MAX_PREAMBLE_BYTES: usize = 16 << 10;
/// Most bytes of one part's header section, which is held until its blank line arrives.
pub const MAX_PART_HEADER_BYTES: usize = 16 << 10;
/// Longest boundary (RFC 2046 says 70 characters).
pub const MAX_BOUNDARY_LEN: usize = 70;
/// Most bytes after the closing boundary. Clients send a line end at most; more means the
/// boundary occurs inside the data and the form was cut short there.
pub const MAX_EPILOGUE_BYTES: usize = 1024;

/// What is wrong with a form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The request's `Content-Type` is not a multipart form with a usable boundary.
    #[error("{0}")]
    ContentType(String),
    /// No boundary near the start of the body.
    #[error("no boundary in the first {MAX_PREAMBLE_BYTES} bytes of the form")]
    NoBoundary,
    /// A part's header section does not end within the limit.
    #[error("a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")]
    HeadersTooLong,
    /// A part's headers cannot be read.
    #[error("malformed part headers: {0}")]
    Headers(String),
    /// Something other than `--` or a line end after a boundary.
    #[error("unexpected bytes after a boundary")]
    AfterBoundary,
    /// The body ended before the closing boundary.
    #[error("the form ended {0} (no closing boundary)")]
    Truncated(&'static str),
    /// The body goes on after the closing boundary.
    #[error(
        "more than {MAX_EPILOGUE_BYTES} bytes follow the closing boundary: the boundary occurs inside the data; choose one that does not"
    )]
    AfterEnd,
}

/// The headers of one part that the server reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHead {
    /// `name` of its `Content-Disposition`.
    pub name: Option<String>,
    /// `filename` of its `Content-Disposition` (never used as a path).
    pub filename: Option<String>,
    /// `Content-Transfer-Encoding`, which RFC 7578 deprecates.
    pub transfer_encoding: Option<String>,
}

/// What the next bytes of the form are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part starts; its body follows as [`Event::Data`] until the next `Part` or `End`.
    Part(PartHead),
    /// A piece of the current part's body.
    Data(Bytes),
    /// The closing boundary and the end of the body: the form is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    /// Just after a delimiter: `--` (the end) or the rest of its line.
    AfterDelimiter,
    Headers,
    Body,
    /// After the closing boundary: counting what follows until the body ends.
    Epilogue(usize),
    End,
}

/// Where the next delimiter is.
enum Found {
    At(usize),
    /// Here, unless what follows it (not received yet) says otherwise.
    Maybe(usize),
    Nowhere,
}

/// The parser of one form body.
#[derive(Debug)]
pub struct FormParser {
    /// `CRLF -- boundary`, which ends a part body.
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
    eof: bool,
}

impl FormParser {
    pub fn new(boundary: &str) -> FormParser {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        // The first delimiter may open the body with no line end before it.
        let mut buf = BytesMut::with_capacity(64 << 10);
        buf.extend_from_slice(b"\r\n");
        FormParser {
            delimiter,
            buf,
            state: State::Preamble,
            eof: false,
        }
    }

    /// More of the body.
    pub fn feed(&mut self, data: &[u8]) {
        match &mut self.state {
            State::End => {}
            State::Epilogue(n) => *n += data.len(),
            _ => self.buf.extend_from_slice(data),
        }
    }

    /// The body has ended.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// The next event; `None` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, FormError> {
        loop {
            match self.state {
                State::End => return Ok(Some(Event::End)),
                State::Epilogue(n) if n > MAX_EPILOGUE_BYTES => return Err(FormError::AfterEnd),
                State::Epilogue(_) if self.eof => {
                    self.state = State::End;
                    return Ok(Some(Event::End));
                }
                State::Epilogue(_) => return Ok(None),
                State::Preamble => match self.find_delimiter() {
                    Found::At(at) => {
                        let _ = self.buf.split_to(at + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    _ if self.buf.len() > MAX_PREAMBLE_BYTES + self.delimiter.len() => {
                        return Err(FormError::NoBoundary);
                    }
                    _ if self.eof => return Err(FormError::NoBoundary),
                    _ => return Ok(None),
                },
                State::AfterDelimiter => {
                    if self.buf.starts_with(b"--") {
                        self.state = State::Epilogue(self.buf.len() - 2);
                        self.buf = BytesMut::new();
                        continue;
                    }
                    // Transport padding (spaces and tabs), then the line end.
                    let padding = self
                        .buf
                        .iter()
                        .take_while(|&&b| b == b' ' || b == b'\t')
                        .count();
                    let rest = &self.buf[padding..];
                    let undecided = self.buf[..] == *b"-" || rest.is_empty() || rest == b"\r";
                    if rest.starts_with(b"\r\n") {
                        let _ = self.buf.split_to(padding + 2);
                        self.state = State::Headers;
                    } else if !undecided {
                        return Err(FormError::AfterBoundary);
                    } else if padding > MAX_PART_HEADER_BYTES {
                        return Err(FormError::HeadersTooLong);
                    } else if self.eof {
                        return Err(FormError::Truncated("right after a boundary"));
                    } else {
                        return Ok(None);
                    }
                }
                State::Headers => {
                    let block = if self.buf.starts_with(b"\r\n") {
                        // A part without headers.
                        let _ = self.buf.split_to(2);
                        Bytes::new()
                    } else {
                        match find(&self.buf, b"\r\n\r\n") {
                            Some(at) if at > MAX_PART_HEADER_BYTES => {
                                return Err(FormError::HeadersTooLong);
                            }
                            Some(at) => {
                                let block = self.buf.split_to(at).freeze();
                                let _ = self.buf.split_to(4);
                                block
                            }
                            None if self.buf.len() > MAX_PART_HEADER_BYTES + 4 => {
                                return Err(FormError::HeadersTooLong);
                            }
                            None if self.eof => {
                                return Err(FormError::Truncated("inside a part's headers"));
                            }
                            None => return Ok(None),
                        }
                    };
                    self.state = State::Body;
                    return parse_head(&block).map(|h| Some(Event::Part(h)));
                }
                State::Body => {
                    let keep = match self.find_delimiter() {
                        Found::At(at) => {
                            let data = self.buf.split_to(at).freeze();
                            let _ = self.buf.split_to(self.delimiter.len());
                            self.state = State::AfterDelimiter;
                            if data.is_empty() {
                                continue;
                            }
                            return Ok(Some(Event::Data(data)));
                        }
                        Found::Maybe(at) => self.buf.len() - at,
                        // Keep what may be the start of a delimiter split across pieces.
                        Found::Nowhere => partial_suffix(&self.buf, &self.delimiter),
                    };
                    let ready = self.buf.len() - keep;
                    if ready > 0 {
                        return Ok(Some(Event::Data(self.buf.split_to(ready).freeze())));
                    }
                    if self.eof {
                        return Err(FormError::Truncated("inside a part"));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

impl FormParser {
    /// The first delimiter in the buffer. As in RFC 2046 (and Go's reader), `CRLF--boundary`
    /// is one only when `--` or a line end (after spaces or tabs) follows; otherwise it is
    /// data.
    fn find_delimiter(&self) -> Found {
        let mut from = 0;
        while let Some(rel) = find(&self.buf[from..], &self.delimiter) {
            let at = from + rel;
            let rest = &self.buf[at + self.delimiter.len()..];
            let padding = rest
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            let line = &rest[padding..];
            let decided = if rest.starts_with(b"--") || line.starts_with(b"\r\n") {
                Some(true)
            } else if rest == b"-" || line.is_empty() || line == b"\r" {
                None
            } else {
                Some(false)
            };
            match decided {
                Some(true) => return Found::At(at),
                // At the end of the body the parts' states report what is missing.
                None if self.eof || padding > MAX_PART_HEADER_BYTES => return Found::At(at),
                None => return Found::Maybe(at),
                Some(false) => from = at + 1,
            }
        }
        Found::Nowhere
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(rel) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + rel;
        if haystack.len() - at < needle.len() {
            return None;
        }
        if haystack[at + 1..at + needle.len()] == *rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// How many bytes at the end of `buf` are a proper prefix of `delimiter`. The delimiter holds
/// one CR, its first byte (a boundary has no control characters), so only a suffix that
/// starts with CR can be one.
fn partial_suffix(buf: &[u8], delimiter: &[u8]) -> usize {
    let from = buf.len().saturating_sub(delimiter.len() - 1);
    (from..buf.len())
        .find(|&i| buf[i] == b'\r' && delimiter.starts_with(&buf[i..]))
        .map_or(0, |i| buf.len() - i)
}

/// The boundary of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: Option<&str>) -> Result<String, FormError> {
    let bad = |why: String| Err(FormError::ContentType(why));
    let Some(value) = content_type else {
        return bad("Content-Type must be multipart/form-data with a boundary (got none)".into());
    };
    let (media, params) = value.split_once(';').unwrap_or((value, ""));
    if !media.trim().eq_ignore_ascii_case("multipart/form-data") {
        return bad(format!(
            "Content-Type must be multipart/form-data with a boundary (got {value:?})"
        ));
    }
    let params = parameters(params).map_err(FormError::ContentType)?;
    let Some(boundary) = params
        .into_iter()
        .find_map(|(k, v)| (k == "boundary").then_some(v))
    else {
        return bad(format!("Content-Type {value:?} has no boundary"));
    };
    // RFC 2046's bchars; a space only inside.
    let bchar = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if boundary.is_empty()
        || boundary.len() > MAX_BOUNDARY_LEN
        || !boundary.chars().all(bchar)
        || boundary.ends_with(' ')
    {
        return bad(format!(
            "the boundary {boundary:?} is not 1 to {MAX_BOUNDARY_LEN} of RFC 2046's characters"
        ));
    }
    Ok(boundary)
}

/// `; key=value; key="quoted \" value"` → lowercased keys and their values.
fn parameters(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return Ok(out);
        }
        let Some((key, after)) = rest.split_once('=') else {
            return Err(format!("parameter {rest:?} has no value"));
        };
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let Some(end) = end else {
                return Err(format!("parameter {key} has an unterminated quoted value"));
            };
            value = v;
            rest = &quoted[end..];
        } else {
            let end = after.find(';').unwrap_or(after.len());
            value = after[..end].trim().to_owned();
            rest = &after[end..];
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("parameter {key} is given twice"));
        }
        out.push((key, value));
    }
}

fn parse_head(block: &[u8]) -> Result<PartHead, FormError> {
    let bad = |why: String| Err(FormError::Headers(why));
    let mut head = PartHead::default();
    let mut disposition = false;
    // The block holds the header lines without the last line end.
    let mut lines = block.to_vec();
    lines.extend_from_slice(b"\r\n");
    let lines = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    for line in lines.filter(|_| !block.is_empty()) {
        let Some(line) = line.strip_suffix(b"\r") else {
            return bad("a line ends without CR".into());
        };
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return bad("folded header lines are not supported".into());
        }
        if let Some(&c) = line
            .iter()
            .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return bad(format!("control character 0x{c:02x} in a header"));
        }
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return bad(format!("{line:?} is not a header"));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(format!("{name:?} is not a header name"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            if disposition {
                return bad("two Content-Disposition headers".into());
            }
            disposition = true;
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return bad(format!("Content-Disposition {kind:?} is not form-data"));
            }
            for (key, v) in parameters(params).map_err(FormError::Headers)? {
                match key.as_str() {
                    "name" => head.name = Some(v),
                    "filename" => head.filename = Some(v),
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
            head.transfer_encoding = Some(value.to_owned());
        }
    }
    // RFC 7578 requires it; a part without one is likely a boundary inside the data.
    if head.name.is_none() {
        return bad("a part has no Content-Disposition: form-data; name=…".into());
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `body` fed in pieces of `step` bytes, the data of each part joined.
    fn parse(
        boundary: &str,
        body: &[u8],
        step: usize,
    ) -> Result<Vec<(PartHead, Vec<u8>)>, FormError> {
        let mut p = FormParser::new(boundary);
        let mut parts: Vec<(PartHead, Vec<u8>)> = Vec::new();
        let mut pieces = body.chunks(step);
        loop {
            match p.next_event()? {
                Some(Event::Part(h)) => parts.push((h, Vec::new())),
                Some(Event::Data(d)) => parts.last_mut().expect("a part").1.extend_from_slice(&d),
                Some(Event::End) => return Ok(parts),
                None => match pieces.next() {
                    Some(piece) => p.feed(piece),
                    None => p.finish(),
                },
            }
        }
    }

    fn file_part(data: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ  \r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\\\"b.img\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--XyZ--\r\nepilogue");
        body
    }

    #[test]
    fn parts_come_out_whole_whatever_the_piece_size() {
        // The delimiter's prefixes inside the data must not end the part.
        let data = b"\r\n--XyZ!\r\n--Xy\r\r\n-\r\n--XyZZ--XyZ\r\n--".to_vec();
        for step in [1, 2, 3, 7, 64, 4096] {
            let parts = parse("XyZ", &file_part(&data), step).expect("valid");
            assert_eq!(parts.len(), 2, "step {step}");
            assert_eq!(parts[0].0.name.as_deref(), Some("note"));
            assert_eq!(parts[0].1, b"hi");
            assert_eq!(parts[1].0.name.as_deref(), Some("file"));
            assert_eq!(parts[1].0.filename.as_deref(), Some("a\"b.img"));
            assert_eq!(parts[1].1, data, "step {step}");
        }
    }

    #[test]
    fn truncated_forms_are_errors_at_every_cut() {
        let body = file_part(&[7u8; 300]);
        let end = body.len() - b"--\r\nepilogue".len();
        for cut in 0..end {
            assert!(
                matches!(
                    parse("XyZ", &body[..cut], 5),
                    Err(FormError::Truncated(_) | FormError::NoBoundary)
                ),
                "cut at {cut}: {:?}",
                parse("XyZ", &body[..cut], 5)
            );
        }
        assert!(parse("XyZ", &body[..end + 2], 5).is_ok());
    }

    #[test]
    fn what_is_held_in_memory_is_bounded() {
        let mut huge_head = b"--b\r\nX-Junk: ".to_vec();
        huge_head.resize(huge_head.len() + MAX_PART_HEADER_BYTES + 10, b'a');
        assert_eq!(parse("b", &huge_head, 4096), Err(FormError::HeadersTooLong));
        let preamble = vec![b'a'; MAX_PREAMBLE_BYTES + 100];
        assert_eq!(parse("b", &preamble, 4096), Err(FormError::NoBoundary));
        let mut padding = b"--b".to_vec();
        padding.resize(MAX_PART_HEADER_BYTES + 100, b' ');
        assert_eq!(parse("b", &padding, 4096), Err(FormError::HeadersTooLong));
    }

    #[test]
    fn malformed_part_headers_are_refused() {
        for (head, why) in [
            (
                &b"Content-Disposition: form-data; name=\"fi\0le\""[..],
                "control",
            ),
            (
                b"Content-Disposition: form-data; name=\"file\n",
                "without CR",
            ),
            (
                b"Content-Disposition: form-data; name=\"file",
                "unterminated",
            ),
            (
                b"Content-Disposition: attachment; name=\"file\"",
                "not form-data",
            ),
            (
                b"Content-Disposition: form-data; name=a; name=file",
                "twice",
            ),
            (b"Content-Disposition: form-data\r\n  ; name=file", "folded"),
            (b"no colon here", "not a header"),
        ] {
            let mut body = b"--b\r\n".to_vec();
            body.extend_from_slice(head);
            body.extend_from_slice(b"\r\n\r\ndata\r\n--b--");
            let err = parse("b", &body, 3).expect_err(why);
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        let err = parse("b", b"--b\r\n\r\ndata\r\n--b--", 3).expect_err("no name");
        assert!(err.to_string().contains("no Content-Disposition"), "{err}");
        // A line that only starts like the boundary is not one.
        assert_eq!(parse("b", b"--bX\r\n\r\n\r\n--b--", 3), Ok(Vec::new()));
    }

    #[test]
    fn a_boundary_inside_the_data_is_an_error_not_a_short_image() {
        // A close delimiter inside the data: the rest would be ignored.
        let mut data = vec![1u8; 100];
        data.extend_from_slice(b"\r\n--XyZ--\r\n");
        data.extend_from_slice(&[2u8; 2000]);
        for step in [1, 9, 4096] {
            assert_eq!(
                parse("XyZ", &file_part(&data), step),
                Err(FormError::AfterEnd)
            );
        }
        // A delimiter inside the data starts a part without a name.
        let data = b"abc\r\n--XyZ\r\n\r\nrest".to_vec();
        assert!(matches!(
            parse("XyZ", &file_part(&data), 4),
            Err(FormError::Headers(_))
        ));
    }

    #[test]
    fn content_type_needs_a_form_and_a_valid_boundary() {
        assert_eq!(
            boundary(Some("multipart/form-data; boundary=\"a b\"; charset=utf-8")),
            Ok("a b".into())
        );
        assert_eq!(
            boundary(Some("Multipart/Form-Data;boundary=x-1")),
            Ok("x-1".into())
        );
        for (value, why) in [
            (None, "got none"),
            (
                Some("application/octet-stream"),
                "must be multipart/form-data",
            ),
            (Some("multipart/form-data"), "has no boundary"),
            (Some("multipart/form-data; boundary="), "is not 1 to 70"),
            (Some("multipart/form-data; boundary=\"ab"), "unterminated"),
            (
                Some("multipart/form-data; boundary=a\u{1}b"),
                "is not 1 to 70",
            ),
        ] {
            let err = boundary(value).expect_err(why);
            assert!(err.to_string().contains(why), "{value:?}: {err}");
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
        assert!(boundary(Some(&long)).is_err());
    }
}

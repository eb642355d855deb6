//! Text input as Hadoop reads it, shared by the Dataset reader
//! (`text_file`) and the SQL text tables, so that both agree on every file:
//!
//! - a line ends at `\n`, `\r\n` or a lone `\r` (Hadoop's `LineReader`);
//! - a UTF-8 byte-order mark at the start of a file is not data (Hadoop's
//!   `LineRecordReader` skips it);
//! - a gzip file is any number of concatenated members; NUL bytes padding
//!   the end of the file (tape and block-device habits) are ignored, as
//!   `gzip -d` does; a 0-byte `.gz` file is empty, with a warning.

use std::io::{BufRead, Read};

/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads one line from `reader` into `line` (cleared first), without its
/// line end. Returns the bytes consumed, line end included: 0 means the
/// end of the input. A `\r` followed by `\n` is one line end, even across
/// the reader's buffer boundaries.
///
/// Errors: those of `reader`.
pub fn read_line<R: BufRead + ?Sized>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    line.clear();
    let mut consumed = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(consumed);
        }
        match memchr::memchr2(b'\n', b'\r', available) {
            Some(i) => {
                let cr = available[i] == b'\r';
                line.extend_from_slice(&available[..i]);
                reader.consume(i + 1);
                consumed += i + 1;
                if cr && next_byte(reader)? == Some(b'\n') {
                    reader.consume(1);
                    consumed += 1;
                }
                return Ok(consumed);
            }
            None => {
                let n = available.len();
                line.extend_from_slice(available);
                reader.consume(n);
                consumed += n;
            }
        }
    }
}

/// The next byte of `reader`, not consumed.
fn next_byte<R: BufRead + ?Sized>(reader: &mut R) -> std::io::Result<Option<u8>> {
    loop {
        match reader.fill_buf() {
            Ok(bytes) => return Ok(bytes.first().copied()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The lines of `text`, split at `\n`, `\r\n` and lone `\r`; a line end at
/// the very end does not start another (empty) line. For text cut with
/// [`complete_lines`], whose pieces never split a `\r\n`.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= bytes.len() {
            return None;
        }
        let rest = &bytes[start..];
        let line;
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                line = &text[start..start + i];
                let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
                start += i + if crlf { 2 } else { 1 };
            }
            None => {
                line = &text[start..];
                start = bytes.len();
            }
        }
        Some(line)
    })
}

/// Where the complete lines of `chunk` end, when more bytes may follow:
/// just past the last line end that is certainly whole. A `\r` as the
/// chunk's last byte is not (a `\n` may follow it in the next chunk), so
/// the cut is then before the previous line end. `None` if there is none.
pub fn complete_lines(chunk: &[u8]) -> Option<usize> {
    let searched = match chunk.last() {
        Some(b'\r') => &chunk[..chunk.len() - 1],
        _ => chunk,
    };
    memchr::memrchr2(b'\n', b'\r', searched).map(|i| i + 1)
}

/// Where the first line of `chunk` ends (just past its line end), given
/// that the text before it ended in the middle of a line; `None` if the
/// chunk does not finish that line for certain.
pub fn first_line_end(chunk: &[u8]) -> Option<usize> {
    let i = memchr::memchr2(b'\n', b'\r', chunk)?;
    match (chunk[i], chunk.get(i + 1)) {
        (b'\r', Some(b'\n')) => Some(i + 2),
        // A `\r` as the last byte: the next chunk may start with `\n`.
        (b'\r', None) => None,
        _ => Some(i + 1),
    }
}

/// `text` without a leading byte-order mark.
pub fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// The decompressed bytes of a gzip file read through `inner`: every
/// member in turn (as `MultiGzDecoder`), with NUL bytes after the last
/// member ignored. An empty input is an empty output.
///
/// Errors (as `std::io::Error` of kind `InvalidData` for a bad file):
/// a corrupt member, or data other than NULs after the NUL padding.
pub struct GzipMembers<R: BufRead> {
    state: Gzip<R>,
    /// Members read to their end so far.
    members: usize,
}

enum Gzip<R: BufRead> {
    /// Before the first member, or between members.
    Between(R),
    /// Inside a member.
    Member(Box<flate2::bufread::GzDecoder<R>>),
    /// Nothing more to read (or the reader failed).
    Done,
}

impl<R: BufRead> GzipMembers<R> {
    /// Decompresses what `inner` reads.
    pub fn new(inner: R) -> Self {
        GzipMembers {
            state: Gzip::Between(inner),
            members: 0,
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, Gzip::Done) {
                Gzip::Done => return Ok(0),
                Gzip::Member(mut decoder) => {
                    let n = decoder.read(buf)?;
                    if n > 0 {
                        self.state = Gzip::Member(decoder);
                        return Ok(n);
                    }
                    self.members += 1;
                    self.state = Gzip::Between(decoder.into_inner());
                }
                Gzip::Between(mut inner) => {
                    let mut padding = 0usize;
                    loop {
                        let bytes = inner.fill_buf()?;
                        if bytes.is_empty() {
                            return Ok(0);
                        }
                        let zeros = bytes.iter().take_while(|&&b| b == 0).count();
                        if zeros == 0 {
                            break;
                        }
                        if self.members == 0 {
                            // Padding pads a stream; NULs alone are none.
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "not in gzip format (the file starts with NUL bytes)",
                            ));
                        }
                        inner.consume(zeros);
                        padding += zeros;
                    }
                    if padding > 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "data after {padding} NUL bytes of padding past the end of the gzip stream"
                            ),
                        ));
                    }
                    self.state = Gzip::Member(Box::new(flate2::bufread::GzDecoder::new(inner)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipMembers::new(std::io::BufReader::with_capacity(3, bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Lines by `read_line` through a buffer of `capacity` bytes.
    fn read_all(text: &[u8], capacity: usize) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(capacity, text);
        let mut line = Vec::new();
        let mut out = Vec::new();
        let mut total = 0;
        loop {
            let n = read_line(&mut reader, &mut line).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            out.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(total, text.len());
        out
    }

    /// Lines by cutting `text` into chunks of `size` bytes as the SQL
    /// reader does: carry the unfinished line, finish it with the head of
    /// the next chunk, then hand on the complete lines.
    fn chunked(text: &[u8], size: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut feed = |piece: &[u8]| {
            out.extend(lines(std::str::from_utf8(piece).unwrap()).map(str::to_string))
        };
        for mut chunk in text.chunks(size) {
            if !carry.is_empty() {
                match first_line_end(chunk) {
                    Some(end) => {
                        carry.extend_from_slice(&chunk[..end]);
                        feed(&carry);
                        carry.clear();
                        chunk = &chunk[end..];
                    }
                    None => {
                        carry.extend_from_slice(chunk);
                        continue;
                    }
                }
            }
            match complete_lines(chunk) {
                Some(end) => {
                    feed(&chunk[..end]);
                    carry.extend_from_slice(&chunk[end..]);
                }
                None => carry.extend_from_slice(chunk),
            }
        }
        if !carry.is_empty() {
            feed(&carry);
        }
        out
    }

    #[test]
    fn every_line_end_ends_a_line_however_the_input_is_cut() {
        let cases: [(&[u8], &[&str]); 6] = [
            (b"b1\rb2\rb3", &["b1", "b2", "b3"]),
            (b"a\r\nb\nc\rd\r\n", &["a", "b", "c", "d"]),
            (b"\r\n\r\n", &["", ""]),
            (b"\n\r\r\n", &["", "", ""]),
            (b"x\r", &["x"]),
            (b"", &[]),
        ];
        for (text, expected) in cases {
            for size in 1..=text.len().max(1) + 1 {
                assert_eq!(read_all(text, size), expected, "{text:?} buffer {size}");
                assert_eq!(chunked(text, size), expected, "{text:?} chunks {size}");
            }
        }
    }

    #[test]
    fn a_byte_order_mark_is_stripped_only_at_the_start() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBFhello"), b"hello");
        assert_eq!(strip_bom(b"hello\xEF\xBB\xBF"), b"hello\xEF\xBB\xBF");
        assert_eq!(strip_bom(b"\xEF\xBB"), b"\xEF\xBB");
    }

    #[test]
    fn gzip_members_concatenate_and_nul_padding_is_ignored() {
        let mut two = gzip(b"one\n");
        two.extend(gzip(b"two\n"));
        assert_eq!(gunzip(&two).unwrap(), b"one\ntwo\n");
        let mut padded = two.clone();
        padded.extend([0u8; 1000]);
        assert_eq!(gunzip(&padded).unwrap(), b"one\ntwo\n");
        assert_eq!(gunzip(b"").unwrap(), b"");
    }

    #[test]
    fn bad_gzip_data_is_an_error_not_a_panic() {
        let mut after_padding = gzip(b"one\n");
        after_padding.extend([0, 0, 7]);
        let e = gunzip(&after_padding).unwrap_err();
        assert!(e.to_string().contains("after 2 NUL bytes"), "{e}");
        let full = gzip(b"some text that compresses\n");
        let e = gunzip(&full[..full.len() - 3]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        assert!(gunzip(b"not gzip at all").is_err());
        let e = gunzip(&[0u8; 512]).unwrap_err();
        assert!(e.to_string().contains("not in gzip format"), "{e}");
        let mut trailing_garbage = gzip(b"one\n");
        trailing_garbage.extend(b"garbage");
        assert!(gunzip(&trailing_garbage).is_err());
    }
}

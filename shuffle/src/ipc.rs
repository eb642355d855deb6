//! Arrow IPC streams read back (shuffle blocks, SQL results, spill runs),
//! each message checked against the bytes that are really there before
//! Arrow decodes it.
//!
//! arrow-ipc 59 trusts the lengths a stream declares: its `StreamReader`
//! allocates a message's declared metadata length (up to 2 GiB) and body
//! length (an `i64`, so a negative one is an abort) before reading them,
//! slices buffers at declared offsets with `Buffer::slice_with_length`
//! (which panics out of range), and LZ4-decompresses into a `Vec` with the
//! capacity a buffer's prefix declares. So streams are framed here instead:
//! a message's metadata and body must fit in what is left of the input, its
//! buffers inside its body, and a declared decompressed size within LZ4's
//! format limit; only then do Arrow's message-level decoders see it, on a
//! zero-copy slice of the block.
//!
//! What the framing cannot check cheaply (`arrow_ipc::convert::fb_to_schema`
//! unwraps and `panic!`s on many malformed schemas: a field without a type
//! table, a list without a child, an unknown integer width) is caught as a
//! last line of defence: a panic inside Arrow's decoder becomes a
//! [`Problem`] naming the message, and the stream stops.

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::{CompressionType, MessageHeader};
use arrow_schema::{ArrowError, SchemaRef};
use std::collections::HashMap;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Most rows (or nulls) a batch or one of its arrays may declare. No
/// writer of Riffle's produces a batch near this (shuffle batches are a
/// few thousand rows), and bounding it keeps Arrow's size arithmetic
/// (rows times value width) far from overflow.
const MAX_ROWS: i64 = i32::MAX as i64;

/// Most bytes an LZ4 frame can decompress to per compressed byte: LZ4
/// spends at least one byte per 255 bytes of match, so a larger declared
/// size cannot be genuine (and Arrow reserves the declared size up front).
const MAX_LZ4_RATIO: u64 = 256;

/// What is wrong with a stream, and where.
#[derive(Debug)]
pub(crate) struct Problem {
    /// What is wrong, with the byte offset of the message involved.
    pub(crate) message: String,
    /// Arrow's error, when Arrow's decoder found it.
    pub(crate) source: Option<ArrowError>,
}

impl Problem {
    fn new(message: String) -> Self {
        Problem {
            message,
            source: None,
        }
    }
}

/// Where a stream's bytes come from: all in memory, or read from a file as
/// they are needed.
pub(crate) trait Source {
    /// Bytes not read yet.
    fn remaining(&self) -> u64;
    /// The next `n` bytes; `n` is never more than [`Source::remaining`].
    fn take(&mut self, n: usize) -> std::io::Result<Buffer>;
}

/// A stream held in memory (a fetched block), sliced without copying.
pub(crate) struct InMemory {
    bytes: Buffer,
    at: usize,
}

impl InMemory {
    pub(crate) fn new(bytes: bytes::Bytes) -> Self {
        InMemory {
            bytes: Buffer::from(bytes),
            at: 0,
        }
    }
}

impl Source for InMemory {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    fn take(&mut self, n: usize) -> std::io::Result<Buffer> {
        let piece = self.bytes.slice_with_length(self.at, n);
        self.at += n;
        Ok(piece)
    }
}

/// A stream read from a reader of known length (a spill file); every read
/// is bounded by what is left of it.
pub(crate) struct Reading<R> {
    reader: R,
    remaining: u64,
}

impl<R: Read> Reading<R> {
    pub(crate) fn new(reader: R, len: u64) -> Self {
        Reading {
            reader,
            remaining: len,
        }
    }
}

impl<R: Read> Source for Reading<R> {
    fn remaining(&self) -> u64 {
        self.remaining
    }

    fn take(&mut self, n: usize) -> std::io::Result<Buffer> {
        let mut out = vec![0u8; n];
        self.reader.read_exact(&mut out)?;
        self.remaining -= n as u64;
        Ok(Buffer::from_vec(out))
    }
}

/// One IPC stream, read a message at a time.
pub(crate) struct IpcStream<S> {
    source: S,
    /// Offset of the next message in the stream.
    at: u64,
    schema: SchemaRef,
    dictionaries: HashMap<i64, ArrayRef>,
    /// Set at the end-of-stream marker or after any error: a stream that
    /// failed once is not read further.
    done: bool,
}

/// A message's metadata and body, framed.
struct Framed {
    at: u64,
    metadata: Buffer,
    body: Buffer,
}

impl<S: Source> IpcStream<S> {
    /// Reads the stream's first message, which must be its schema.
    pub(crate) fn open(source: S) -> Result<Self, Problem> {
        let mut stream = IpcStream {
            source,
            at: 0,
            schema: Arc::new(arrow_schema::Schema::empty()),
            dictionaries: HashMap::new(),
            done: false,
        };
        let framed = stream.next_message()?.ok_or_else(|| {
            Problem::new("the stream ends before its schema (no messages)".into())
        })?;
        let message = parse(&framed)?;
        let schema = message.header_as_schema().ok_or_else(|| {
            Problem::new(format!(
                "the first message (byte 0) is a {:?}, not a schema",
                message.header_type()
            ))
        })?;
        if schema.fields().is_none() {
            return Err(Problem::new("the schema has no field list".into()));
        }
        let schema = guarded(framed.at, || Ok(arrow_ipc::convert::fb_to_schema(schema)))?;
        stream.schema = Arc::new(schema);
        Ok(stream)
    }

    /// Where the stream's bytes come from, to add to it between messages.
    pub(crate) fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The stream's schema.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next record batch; `None` after the end-of-stream marker.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>, Problem> {
        let result = self.read_batch();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn read_batch(&mut self) -> Result<Option<RecordBatch>, Problem> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(framed) = self.next_message()? else {
                return Ok(None);
            };
            let message = parse(&framed)?;
            let version = message.version();
            let at = framed.at;
            match message.header_type() {
                MessageHeader::RecordBatch => {
                    let batch = message.header_as_record_batch().ok_or_else(|| {
                        Problem::new(format!("message at byte {at} has no record batch header"))
                    })?;
                    check_batch(at, &batch, &framed.body)?;
                    let (schema, dictionaries) = (self.schema.clone(), &self.dictionaries);
                    return guarded(at, || {
                        arrow_ipc::reader::read_record_batch(
                            &framed.body,
                            batch,
                            schema,
                            dictionaries,
                            None,
                            &version,
                        )
                    })
                    .map(Some);
                }
                MessageHeader::DictionaryBatch => {
                    let dictionary = message.header_as_dictionary_batch().ok_or_else(|| {
                        Problem::new(format!("message at byte {at} has no dictionary header"))
                    })?;
                    // Deltas are appended to the dictionary they extend, so
                    // a stream of tiny deltas costs quadratic time; Arrow's
                    // writers only send them when asked to, and Riffle's
                    // never are.
                    if dictionary.isDelta() {
                        return Err(Problem::new(format!(
                            "message at byte {at} is a delta dictionary, which Riffle never writes"
                        )));
                    }
                    let data = dictionary.data().ok_or_else(|| {
                        Problem::new(format!("dictionary at byte {at} has no data"))
                    })?;
                    check_batch(at, &data, &framed.body)?;
                    let (schema, dictionaries) = (&self.schema, &mut self.dictionaries);
                    guarded(at, || {
                        arrow_ipc::reader::read_dictionary(
                            &framed.body,
                            dictionary,
                            schema,
                            dictionaries,
                            &version,
                        )
                    })?;
                }
                other => {
                    return Err(Problem::new(format!(
                        "message at byte {at} is a {other:?}, expected a record batch"
                    )));
                }
            }
        }
    }

    /// Frames the next message: `None` at the end-of-stream marker, which
    /// must end the input.
    fn next_message(&mut self) -> Result<Option<Framed>, Problem> {
        let at = self.at;
        if self.source.remaining() == 0 {
            return Err(Problem::new(format!(
                "the stream ends at byte {at} without its end-of-stream marker (truncated)"
            )));
        }
        let mut len = self.word(at)?;
        if len == u32::MAX {
            // The continuation marker of the current format; the length
            // follows. (The legacy format has the length alone.)
            len = self.word(at)?;
        }
        if len == 0 {
            let left = self.source.remaining();
            if left != 0 {
                return Err(Problem::new(format!(
                    "{left} bytes follow the end-of-stream marker at byte {at}"
                )));
            }
            return Ok(None);
        }
        let metadata = self.take(u64::from(len), at, "metadata")?;
        let message = arrow_ipc::root_as_message(&metadata).map_err(|e| {
            Problem::new(format!(
                "message at byte {at}: metadata is not a valid flatbuffer: {e}"
            ))
        })?;
        let body_len = u64::try_from(message.bodyLength()).map_err(|_| {
            Problem::new(format!(
                "message at byte {at} declares a negative body length {}",
                message.bodyLength()
            ))
        })?;
        let body = self.take(body_len, at, "body")?;
        Ok(Some(Framed { at, metadata, body }))
    }

    /// A little-endian `u32` of the framing of the message at `at`.
    fn word(&mut self, at: u64) -> Result<u32, Problem> {
        let bytes = self.take(4, at, "length prefix")?;
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes);
        Ok(u32::from_le_bytes(word))
    }

    /// The next `n` bytes, which must be there.
    fn take(&mut self, n: u64, at: u64, what: &str) -> Result<Buffer, Problem> {
        let left = self.source.remaining();
        if n > left {
            return Err(Problem::new(format!(
                "message at byte {at} declares a {n}-byte {what}, but only {left} bytes follow"
            )));
        }
        // n <= remaining, which is an in-memory length or a file's: it fits.
        let n = usize::try_from(n)
            .map_err(|_| Problem::new(format!("message at byte {at}: {what} too large")))?;
        let bytes = self.source.take(n).map_err(|e| Problem {
            message: format!("reading the {what} of the message at byte {at}"),
            source: Some(ArrowError::from(e)),
        })?;
        self.at += n as u64;
        Ok(bytes)
    }
}

/// The flatbuffer of a framed message (verified again: cheap, and it keeps
/// the borrow local instead of self-referential).
fn parse(framed: &Framed) -> Result<arrow_ipc::Message<'_>, Problem> {
    arrow_ipc::root_as_message(&framed.metadata).map_err(|e| {
        Problem::new(format!(
            "message at byte {}: metadata is not a valid flatbuffer: {e}",
            framed.at
        ))
    })
}

/// Checks what Arrow would trust in a batch's metadata: row counts, that
/// every buffer lies inside the body, and declared decompressed sizes.
fn check_batch(at: u64, batch: &arrow_ipc::RecordBatch<'_>, body: &Buffer) -> Result<(), Problem> {
    let bad = |what: String| Err(Problem::new(format!("message at byte {at}: {what}")));
    if !(0..=MAX_ROWS).contains(&batch.length()) {
        return bad(format!("batch declares {} rows", batch.length()));
    }
    for node in batch.nodes().into_iter().flatten() {
        if !(0..=MAX_ROWS).contains(&node.length())
            || !(0..=node.length()).contains(&node.null_count())
        {
            return bad(format!(
                "an array declares {} rows with {} nulls",
                node.length(),
                node.null_count()
            ));
        }
    }
    let compression = match batch.compression() {
        None => None,
        Some(c) if c.codec() == CompressionType::LZ4_FRAME => Some(MAX_LZ4_RATIO),
        // zstd is not compiled in: Arrow refuses such buffers itself.
        Some(c) if c.codec() == CompressionType::ZSTD => None,
        Some(c) => return bad(format!("unknown compression codec {:?}", c.codec())),
    };
    let body_len = body.len() as u64;
    for buffer in batch.buffers().into_iter().flatten() {
        let (offset, len) = (buffer.offset(), buffer.length());
        let range = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .filter(|r| r.end <= body_len);
        let Some(range) = range else {
            return bad(format!(
                "a buffer of {len} bytes at offset {offset} is outside the {body_len}-byte body"
            ));
        };
        let (Some(ratio), false) = (compression, range.is_empty()) else {
            continue;
        };
        // The range is inside the body, which is in memory: it fits usize.
        let start = range.start as usize;
        let Some(prefix) = body
            .get(start..start + 8)
            .filter(|_| range.end - range.start >= 8)
        else {
            return bad(format!(
                "a compressed buffer at offset {offset} is {len} bytes, shorter than its 8-byte length"
            ));
        };
        let mut declared = [0u8; 8];
        declared.copy_from_slice(prefix);
        let declared = i64::from_le_bytes(declared);
        let compressed = range.end - range.start - 8;
        // -1: stored uncompressed; 0: empty.
        let plausible = declared == -1
            || u64::try_from(declared).is_ok_and(|d| d <= compressed.saturating_mul(ratio));
        if !plausible {
            return bad(format!(
                "a compressed buffer of {compressed} bytes declares {declared} bytes decompressed"
            ));
        }
    }
    Ok(())
}

/// Runs one of Arrow's decoders on checked input, a panic inside it
/// becoming a [`Problem`] (see the module documentation for which upstream
/// panics force this).
fn guarded<T>(at: u64, decode: impl FnOnce() -> Result<T, ArrowError>) -> Result<T, Problem> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Problem {
            message: format!("message at byte {at} does not decode"),
            source: Some(e),
        }),
        Err(panic) => {
            let why = riffle_planner::error::panic_message(panic.as_ref());
            Err(Problem::new(format!(
                "message at byte {at} made Arrow's decoder panic: {why}"
            )))
        }
    }
}

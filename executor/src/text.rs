//! Reading text file splits as lines, streamed from an object store.
//!
//! A tokio task streams the object's bytes into a bounded channel; the rayon
//! side reads them through [`ChannelReader`] (a `std::io::Read`), decompresses
//! gzip if needed and cuts lines. At most a few chunks are in flight, so a
//! file of any size is read in constant memory.
//!
//! Split semantics (as Hadoop's `LineRecordReader`): a split owns every line
//! that starts inside `[start, end)`. A split with `start > 0` begins reading
//! at `start - 1` and skips through the first line end, and the last line is
//! read to its end even past `end`. Line ends, the byte-order mark and gzip
//! members follow [`riffle_shuffle::lines`], as the SQL text tables do.

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use riffle_planner::PipelineError;
use riffle_planner::pipeline::{Counters, TaskContext};
use riffle_planner::task::{Compression, FileSplit};
use riffle_shuffle::lines::{self, GzipMembers};
use riffle_shuffle::stores::ObjectStores;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks buffered between the I/O task and the reader.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Bytes per ranged read.
const CHUNK_BYTES: u64 = 4 << 20;

/// A storage failure carried through `std::io::Read`, kept apart from
/// decompression errors (which mean the file itself is bad).
#[derive(Debug, thiserror::Error)]
#[error("object store read failed")]
struct StorageFailure(#[source] object_store::Error);

/// A gzip stream that does not decode (the file itself is bad).
#[derive(Debug, thiserror::Error)]
#[error("corrupt gzip data")]
struct CorruptGzip(#[source] std::io::Error);

/// A blocking reader over chunks sent by an async producer.
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, object_store::Error>>,
    current: Bytes,
}

impl ChannelReader {
    /// Streams bytes `[start, size)` of the object at `path` through a new
    /// tokio task on `runtime`, as ranged reads of [`CHUNK_BYTES`]. The task
    /// ends when the reader is dropped.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
        start: u64,
        size: u64,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        runtime.spawn(async move {
            // Large ranged reads rather than the store's streaming `get`:
            // a few big requests keep both the channel hand-offs and (on S3)
            // the request count low.
            let mut offset = start;
            while offset < size {
                let end = (offset + CHUNK_BYTES).min(size);
                let chunk = store.get_range(&path, offset..end).await;
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
                offset = end;
            }
        });
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(std::io::Error::other(StorageFailure(error))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The lines of one split, as an iterator of `String`s. Lines end at `\n`,
/// `\r\n` or `\r`; bytes that are not UTF-8 are replaced with U+FFFD and counted.
pub struct TextLines {
    split: FileSplit,
    state: State,
    ctx: TaskContext,
    buf: Vec<u8>,
}

enum State {
    /// Not opened yet: opening is deferred to the first `next` so that
    /// building a plan does no I/O.
    Pending {
        stores: ObjectStores,
        runtime: tokio::runtime::Handle,
    },
    Reading {
        reader: Box<dyn BufRead + Send>,
        /// Offset in the (uncompressed) stream of the next line's first byte.
        position: u64,
    },
    Done,
}

impl TextLines {
    /// Lines of `split`, read through `stores` on `runtime`.
    pub fn new(
        split: FileSplit,
        stores: ObjectStores,
        runtime: tokio::runtime::Handle,
        ctx: TaskContext,
    ) -> Self {
        TextLines {
            split,
            state: State::Pending { stores, runtime },
            ctx,
            buf: Vec::new(),
        }
    }

    fn open(
        &mut self,
        stores: &ObjectStores,
        runtime: &tokio::runtime::Handle,
    ) -> Result<State, PipelineError> {
        let input_err = |source: riffle_planner::BoxError| PipelineError::Input {
            path: self.split.url.clone(),
            source,
        };
        let url = url::Url::parse(&self.split.url).map_err(|e| input_err(e.into()))?;
        let (store, path) = stores.resolve(&url).map_err(|e| input_err(e.into()))?;
        let split = &self.split;
        let (reader, position): (Box<dyn BufRead + Send>, u64) = match split.compression {
            Compression::Gzip => {
                let raw = ChannelReader::spawn(runtime, store, path, 0, split.size);
                let gz = GzipMembers::new(BufReader::with_capacity(1 << 16, raw));
                (Box::new(BufReader::with_capacity(1 << 16, gz)), 0)
            }
            Compression::None if split.start == 0 => {
                let raw = ChannelReader::spawn(runtime, store, path, 0, split.size);
                (Box::new(BufReader::with_capacity(1 << 16, raw)), 0)
            }
            Compression::None => {
                let raw = ChannelReader::spawn(runtime, store, path, split.start - 1, split.size);
                let mut reader = BufReader::with_capacity(1 << 16, raw);
                // Skip the tail of the line that started in the previous
                // split (or, from `start - 1`, just the line end before
                // `start`).
                let mut skipped = Vec::new();
                let n =
                    lines::read_line(&mut reader, &mut skipped).map_err(|e| self.read_error(e))?;
                (Box::new(reader), split.start - 1 + n as u64)
            }
        };
        Ok(State::Reading { reader, position })
    }

    fn read_error(&self, error: std::io::Error) -> PipelineError {
        let path = self.split.url.clone();
        let storage = error.get_ref().is_some_and(|e| e.is::<StorageFailure>());
        if !storage && self.split.compression == Compression::Gzip {
            return PipelineError::BadInput {
                path,
                source: Box::new(CorruptGzip(error)),
            };
        }
        PipelineError::Input {
            path,
            source: Box::new(error),
        }
    }
}

impl Iterator for TextLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            // Per line, so a kill stops even a slow consumer within one
            // item; ending drops the reader, which stops the I/O task.
            if !matches!(self.state, State::Done) && self.ctx.stop_if_killed() {
                self.state = State::Done;
            }
            match &mut self.state {
                State::Pending { stores, runtime } => {
                    let (stores, runtime) = (stores.clone(), runtime.clone());
                    match self.open(&stores, &runtime) {
                        Ok(state) => self.state = state,
                        Err(e) => {
                            self.ctx.fail(e);
                            self.state = State::Done;
                        }
                    }
                }
                State::Reading { reader, position } => {
                    let splittable = self.split.compression == Compression::None;
                    if splittable && *position >= self.split.end {
                        self.state = State::Done;
                        continue;
                    }
                    let at_file_start = *position == 0;
                    let n = match lines::read_line(reader, &mut self.buf) {
                        Ok(n) => n,
                        Err(e) => {
                            let e = self.read_error(e);
                            self.ctx.fail(e);
                            self.state = State::Done;
                            continue;
                        }
                    };
                    if n == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    *position += n as u64;
                    let counters = &self.ctx.counters;
                    Counters::add(&counters.bytes_read, n as u64);
                    Counters::add(&counters.records_read, 1);
                    return Some(self.take_line(at_file_start));
                }
                State::Done => return None,
            }
        }
    }
}

impl TextLines {
    /// The line just read, as text; the first line of a file loses its
    /// byte-order mark.
    fn take_line(&mut self, at_file_start: bool) -> String {
        let mut line = std::mem::take(&mut self.buf);
        if at_file_start && line.starts_with(lines::BOM) {
            line.drain(..lines::BOM.len());
        }
        match String::from_utf8(line) {
            Ok(s) => s,
            Err(e) => {
                Counters::add(&self.ctx.counters.invalid_utf8_lines, 1);
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        }
    }
}

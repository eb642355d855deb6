//! Spill runs: encoded records an operator wrote to local disk because its
//! memory reservation could not grow.
//!
//! A run is one Arrow IPC stream of the record column the shuffle uses
//! ([`crate::writer::RECORD_SCHEMA`]), uncompressed (it is written and read
//! once, on local disk, where LZ4 costs more CPU than it saves I/O), in
//! batches small enough that a merge of many runs holds little: the reader
//! keeps one batch of each run in memory.
//!
//! ```text
//!  operator buffer --sort--> RunWriter --IPC stream--> spill file (deleted when dropped)
//!  spill file --RunReader--> one BinaryArray at a time --> k-way merge
//! ```

use crate::error::ShuffleError;
use crate::ipc::{IpcStream, Problem, Reading};
use crate::writer::RECORD_SCHEMA;
use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use riffle_planner::BoxError;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// Writes one run, a batch at a time.
pub struct RunWriter {
    writer: StreamWriter<BufWriter<Counting>>,
    path: String,
}

/// Counts what goes through, so the task can report spilled bytes.
struct Counting {
    inner: Box<dyn Write + Send>,
    bytes: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn spill_error(path: &str, message: &str, e: impl Into<BoxError>) -> ShuffleError {
    ShuffleError::Spill {
        path: path.to_string(),
        message: message.to_string(),
        source: e.into(),
    }
}

impl RunWriter {
    /// Starts a run in `out`, the writer of the spill file at `path`.
    pub fn new(out: Box<dyn Write + Send>, path: &Path) -> Result<Self, ShuffleError> {
        let path = path.display().to_string();
        let out = BufWriter::with_capacity(
            256 << 10,
            Counting {
                inner: out,
                bytes: 0,
            },
        );
        let writer = StreamWriter::try_new(out, &RECORD_SCHEMA)
            .map_err(|e| spill_error(&path, "starting a spill run", e))?;
        Ok(RunWriter { writer, path })
    }

    /// Appends one batch of encoded records.
    pub fn write(&mut self, records: BinaryArray) -> Result<(), ShuffleError> {
        let batch =
            RecordBatch::try_new(RECORD_SCHEMA.clone(), vec![Arc::new(records) as ArrayRef])
                .map_err(|e| spill_error(&self.path, "building a spill batch", e))?;
        self.writer
            .write(&batch)
            .map_err(|e| spill_error(&self.path, "writing a spill run", e))
    }

    /// Ends the run; returns the bytes it took on disk.
    pub fn finish(mut self) -> Result<u64, ShuffleError> {
        self.writer
            .finish()
            .map_err(|e| spill_error(&self.path, "ending a spill run", e))?;
        let mut out = self
            .writer
            .into_inner()
            .map_err(|e| spill_error(&self.path, "ending a spill run", e))?;
        out.flush()
            .map_err(|e| spill_error(&self.path, "ending a spill run", e))?;
        let counting = out
            .into_inner()
            .map_err(|e| spill_error(&self.path, "ending a spill run", e.into_error()))?;
        Ok(counting.bytes)
    }
}

/// Reads one run back, a batch at a time. Each message is checked against
/// the file's length before it is read ([`crate::ipc`]), so a damaged run
/// is an error naming the file, never a panic or an allocation of what a
/// length merely declares.
pub struct RunReader {
    stream: IpcStream<Reading<BufReader<std::fs::File>>>,
    path: String,
}

fn damaged(path: &str, problem: Problem) -> ShuffleError {
    let message = format!("reading a spill run: {}", problem.message);
    match problem.source {
        Some(e) => spill_error(path, &message, e),
        None => spill_error(path, "reading a spill run", problem.message),
    }
}

impl RunReader {
    /// Opens the run written to `path`.
    pub fn open(path: &Path) -> Result<Self, ShuffleError> {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| spill_error(&name, "opening a spill run", e))?;
        let len = file
            .metadata()
            .map_err(|e| spill_error(&name, "opening a spill run", e))?
            .len();
        let source = Reading::new(BufReader::with_capacity(64 << 10, file), len);
        let stream = IpcStream::open(source).map_err(|p| damaged(&name, p))?;
        Ok(RunReader { stream, path: name })
    }
}

impl Iterator for RunReader {
    type Item = Result<BinaryArray, ShuffleError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.stream.next_batch() {
            Ok(batch) => batch?,
            Err(p) => return Some(Err(damaged(&self.path, p))),
        };
        Some(
            batch
                .columns()
                .first()
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .cloned()
                .ok_or_else(|| {
                    spill_error(
                        &self.path,
                        "reading a spill run",
                        "a batch without a binary record column",
                    )
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_batch_for_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let file = std::fs::File::create(&path).unwrap();
        let mut run = RunWriter::new(Box::new(file), &path).unwrap();
        run.write(BinaryArray::from_iter_values([b"a".as_slice(), b"bc"]))
            .unwrap();
        run.write(BinaryArray::from_iter_values([b"d".as_slice()]))
            .unwrap();
        let bytes = run.finish().unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        let back: Vec<Vec<Vec<u8>>> = RunReader::open(&path)
            .unwrap()
            .map(|a| a.unwrap().iter().map(|v| v.unwrap().to_vec()).collect())
            .collect();
        assert_eq!(
            back,
            vec![vec![b"a".to_vec(), b"bc".to_vec()], vec![b"d".to_vec()]]
        );
    }

    #[test]
    fn a_damaged_run_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        std::fs::write(&path, b"not arrow").unwrap();
        let err = match RunReader::open(&path) {
            Err(e) => e,
            Ok(mut r) => r.next().unwrap().unwrap_err(),
        };
        assert!(err.to_string().contains("run"), "{err}");
    }
}

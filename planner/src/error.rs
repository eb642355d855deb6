//! Errors raised while a pipeline runs inside a task.

use thiserror::Error;

/// Why a pipeline operator failed. The variants say whose fault it is, which
/// the scheduler uses to decide whether a retry can help.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PipelineError {
    /// Reading an input failed (I/O, storage); a retry may succeed.
    #[error("reading {path}: {message}")]
    Input {
        /// The file or object that could not be read.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The input itself is bad (a corrupt gzip file): retrying cannot help.
    #[error("bad input in {path}: {message}")]
    BadInput {
        /// The file or object that is bad.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Shuffle data could not be fetched or decoded.
    #[error("shuffle read failed: {0}")]
    Shuffle(String),
    /// A block of a parent shuffle is missing or damaged: its map task must
    /// be rerun.
    #[error("fetch failed for {shuffle} map partition {map_partition} ({data_path}): {message}")]
    FetchFailed {
        /// The shuffle read.
        shuffle: crate::ids::ShuffleId,
        /// The map partition whose output is unreadable.
        map_partition: u32,
        /// The data object that could not be read.
        data_path: String,
        /// What went wrong.
        message: String,
    },
    /// Encoding or decoding a record or a descriptor failed.
    #[error("codec: {0}")]
    Codec(String),
    /// A shipped function could not be instantiated.
    #[error("function {name}: {message}")]
    Function {
        /// The function's descriptive name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The task was killed (its job was cancelled or the attempt was
    /// superseded); its sources stopped early, so whatever the sink saw is
    /// incomplete and must not be committed.
    #[error("task killed")]
    Killed,
    /// A bug in Riffle; please report it.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

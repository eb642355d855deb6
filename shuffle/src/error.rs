//! Shuffle errors. Causes are kept as `source` values (see
//! `riffle_planner::error::report` for the one-line form).

use riffle_planner::BoxError;
use thiserror::Error;

/// Errors reading or writing shuffle data; each names the object involved.
#[derive(Debug, Error)]
pub enum ShuffleError {
    /// The store failed (I/O, network); a retry may help.
    #[error("shuffle store error on {path}")]
    Storage {
        /// The object key.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A map output that should exist does not.
    #[error("shuffle output {path} is missing")]
    Missing {
        /// The object key.
        path: String,
    },
    /// Bytes that fail their checksum or are not a valid Arrow IPC stream
    /// of records.
    #[error("corrupt shuffle block in {path}: {message}")]
    Corrupt {
        /// The object key.
        path: String,
        /// What is wrong.
        message: String,
        /// The decoder's error, if one found it.
        #[source]
        source: Option<BoxError>,
    },
    /// Encoding the map output failed, or a shuffle setting is invalid.
    #[error("encoding shuffle output: {message}")]
    Encode {
        /// What was being encoded, or what is wrong.
        message: String,
        /// The encoder's error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// A spill run could not be written or read back (local disk full, the
    /// spill space cap reached, a damaged file).
    #[error("{message} ({path})")]
    Spill {
        /// The spill file.
        path: String,
        /// What was being done.
        message: String,
        /// The I/O or Arrow error.
        #[source]
        source: BoxError,
    },
}

/// A block that could not be fetched, and why.
#[derive(Debug, Error)]
#[error("fetching map partition {} of {}", block.map_partition, block.path)]
pub struct FetchError {
    /// The block.
    pub block: riffle_planner::task::BlockLocation,
    /// What went wrong.
    #[source]
    pub source: ShuffleError,
}

impl FetchError {
    /// The pipeline error a reader of `shuffle` reports: a missing or
    /// damaged block is a fetch failure naming its map output (which the
    /// driver recomputes); a storage error is an ordinary retryable one.
    pub fn into_pipeline_error(
        self,
        shuffle: riffle_planner::ids::ShuffleId,
    ) -> riffle_planner::PipelineError {
        match self.source {
            ShuffleError::Missing { .. } | ShuffleError::Corrupt { .. } => {
                riffle_planner::PipelineError::FetchFailed {
                    shuffle,
                    map_partition: self.block.map_partition,
                    data_path: self.block.path,
                    source: Box::new(self.source),
                }
            }
            ShuffleError::Storage { .. }
            | ShuffleError::Encode { .. }
            | ShuffleError::Spill { .. } => riffle_planner::PipelineError::Shuffle {
                source: Box::new(self),
            },
        }
    }
}

impl ShuffleError {
    /// An encoding error with no underlying error: `message` says it all.
    pub fn encode_message(message: impl Into<String>) -> Self {
        ShuffleError::Encode {
            message: message.into(),
            source: None,
        }
    }

    /// An encoding error caused by `source` while doing `message`.
    pub fn encode(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ShuffleError::Encode {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn storage(path: &object_store::path::Path, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => ShuffleError::Missing {
                path: path.to_string(),
            },
            source => ShuffleError::Storage {
                path: path.to_string(),
                source,
            },
        }
    }
}

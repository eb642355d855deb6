//! Shuffle errors.

use thiserror::Error;

/// Errors reading or writing shuffle data; each names the object involved.
#[derive(Debug, Error)]
pub enum ShuffleError {
    /// The store failed (I/O, network); a retry may help.
    #[error("shuffle store error on {path}: {source}")]
    Storage {
        /// The object key.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A map output that should exist does not.
    #[error("shuffle output {path} is missing")]
    Missing {
        /// The object key.
        path: String,
    },
    /// Bytes that are not a valid Arrow IPC stream of records.
    #[error("corrupt shuffle block in {path}: {message}")]
    Corrupt {
        /// The object key.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Encoding the map output failed.
    #[error("encoding shuffle output: {0}")]
    Encode(String),
}

/// A block that could not be fetched, and why.
#[derive(Debug, Error)]
#[error("fetching map partition {} of {}: {source}", block.map_partition, block.path)]
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
                    message: self.source.to_string(),
                    data_path: self.block.path,
                }
            }
            ShuffleError::Storage { .. } | ShuffleError::Encode(_) => {
                riffle_planner::PipelineError::Shuffle(self.to_string())
            }
        }
    }
}

impl ShuffleError {
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

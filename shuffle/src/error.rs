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

//! Driver errors: what a job or a dataset operation can fail with.

use riffle_planner::BoxError;
use riffle_planner::ids::{ExecutorId, JobId, ShuffleId, StageId};
use riffle_planner::task::FailureKind;
use riffle_shuffle::stores::StoreUrlError;
use thiserror::Error;

/// Errors returned by the Dataset API and the scheduler. Each names what
/// failed: the path, or the job, stage, task and executor.
#[derive(Debug, Error)]
pub enum DriverError {
    /// An input path is missing or unusable.
    #[error("input {path}: {message}")]
    Input {
        /// The path or URL given.
        path: String,
        /// What is wrong with it.
        message: String,
        /// The store's or the file system's error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// The output location already holds data.
    #[error("output directory {dir} already exists and is not empty")]
    OutputExists {
        /// The output directory.
        dir: String,
    },
    /// A task failed and will not be retried.
    #[error("{job} failed: {stage} task {partition} (attempt {attempt}) on {executor}: {message}")]
    TaskFailed {
        /// The job.
        job: JobId,
        /// The stage.
        stage: StageId,
        /// The partition.
        partition: u32,
        /// The last attempt.
        attempt: u32,
        /// The executor that ran the last attempt.
        executor: ExecutorId,
        /// Why it failed.
        kind: FailureKind,
        /// The cause.
        message: String,
    },
    /// A stage kept losing the map output it reads: after
    /// `attempts` attempts ended in fetch failures (the limit, Spark's
    /// `spark.stage.maxConsecutiveAttempts`) the job gives up.
    #[error(
        "{job} failed: {stage} was attempted {attempts} times and could not read map partition {map_partition} of {shuffle}{written_by}: {message}"
    )]
    StageFailed {
        /// The job.
        job: JobId,
        /// The stage that could not read its input.
        stage: StageId,
        /// Its attempts.
        attempts: u32,
        /// The shuffle whose output was lost.
        shuffle: ShuffleId,
        /// The lost map partition.
        map_partition: u32,
        /// Who wrote the lost output, as " (written by attempt A on
        /// executor-E)", or empty if unknown.
        written_by: String,
        /// The last fetch failure.
        message: String,
    },
    /// The job was cancelled (`cancel_job`, `cancel_all`, its handle, or
    /// Ctrl-C); its tasks were killed and its output deleted.
    #[error("{job} was cancelled")]
    Cancelled {
        /// The job.
        job: JobId,
    },
    /// Storage trouble on the driver (listing inputs, committing output).
    #[error("storage error on {path}: {message}")]
    Storage {
        /// The object or directory.
        path: String,
        /// What was being done.
        message: String,
        /// The store's or the file system's error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// No executor registered in time.
    #[error("{registered} of {wanted} executors registered after waiting {waited:?}; {hint}")]
    NoExecutors {
        /// How long the driver waited.
        waited: std::time::Duration,
        /// Executors registered.
        registered: usize,
        /// Executors needed.
        wanted: usize,
        /// How to start one.
        hint: String,
    },
    /// A SQL statement failed to parse, plan or run.
    #[error("SQL error in `{statement}`: {message}")]
    Sql {
        /// The statement (shortened).
        statement: String,
        /// DataFusion's message, with the position where it has one.
        message: String,
    },
    /// A bad configuration value (master string, option).
    #[error("configuration: {0}")]
    Config(String),
    /// A dataset that cannot be planned (state that does not serialize).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A bug in Riffle; please report it.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl DriverError {
    /// A storage error on `path` while doing `message`, caused by `source`.
    pub(crate) fn storage(
        path: impl Into<String>,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        DriverError::Storage {
            path: path.into(),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An unusable input or output location, as the store table reported it.
    pub(crate) fn input(e: StoreUrlError) -> Self {
        DriverError::Input {
            path: e.url,
            message: e.message,
            source: e.source,
        }
    }

    /// A store that cannot be opened for `path`, as a storage error.
    pub(crate) fn store(e: StoreUrlError) -> Self {
        DriverError::Storage {
            path: e.url,
            message: e.message,
            source: e.source,
        }
    }
}

//! Stage and task descriptors, and the statuses executors send back.
//!
//! A stage's [`StageSpec`] (its operators) is sent to an executor once; each
//! [`TaskSpec`] then carries only the partition, its input split and the
//! map-output locations it reads. Both always travel as bytes
//! ([`encode`]/[`decode`]), in embedded mode too, so a job that runs
//! embedded runs on a cluster unchanged.

use crate::error::PipelineError;
use crate::function::FnRef;
use crate::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes a descriptor to bytes.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PipelineError> {
    bincode::serde::encode_to_vec(value, CONFIG)
        .map_err(|e| PipelineError::codec("encoding a descriptor", e))
}

/// Decodes a descriptor; trailing bytes or a truncated message are errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PipelineError> {
    let (value, used) = crate::codec::decode_bounded(bytes)
        .map_err(|e| PipelineError::codec("decoding a descriptor", e))?;
    if used != bytes.len() {
        return Err(PipelineError::codec_message(format!(
            "decoding a descriptor: {} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Deepest nesting of [`PartitionPlan`]s a decode accepts. A plan nests
/// one level per narrow dataset operation over another's partition, and
/// serde decodes nesting by recursion: without a bound, a few bytes per
/// level of hostile input would overflow the stack (an abort, not an
/// error). 512 levels decode well within a 2 MiB thread stack in a debug
/// build (`hostile_input::deepest_accepted_plan_decodes_on_a_small_stack`).
pub const MAX_PLAN_DEPTH: usize = 512;

thread_local! {
    /// Partition plans being decoded on this thread, outermost first.
    static PLAN_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes a nested partition plan, refusing nesting beyond
/// [`MAX_PLAN_DEPTH`].
fn nested<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    /// Leaves a level however the inner decode ends.
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            PLAN_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    let depth = PLAN_DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let _level = Level;
    if depth > MAX_PLAN_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "partition plans nested deeper than {MAX_PLAN_DEPTH} levels"
        )));
    }
    T::deserialize(deserializer)
}

/// Index of an operator in [`StageSpec::ops`].
pub type OpIndex = u32;

/// Everything about a stage that is the same for all its tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSpec {
    /// The job the stage belongs to.
    pub job: JobId,
    /// The stage.
    pub stage: StageId,
    /// The stage attempt this spec belongs to: a resubmitted stage (lineage
    /// recompute) is planned anew, and executors replace an older
    /// attempt's spec with it (a SQL stage's spec holds its shuffle
    /// readers' block locations).
    pub attempt: u32,
    /// The stage's operators; plans and the sink refer to them by index.
    pub ops: Vec<FnRef>,
    /// What the stage produces.
    pub sink: StageSink,
}

/// What a stage's tasks produce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StageSink {
    /// A map stage: shuffle output through a `ShuffleWriteOp`.
    Shuffle {
        /// The shuffle written.
        shuffle: ShuffleId,
        /// The `ShuffleWriteOp`.
        writer: OpIndex,
        /// Number of reduce partitions.
        partitions: u32,
    },
    /// A result stage: bytes for the driver from a `ResultOp`.
    Result {
        /// The `ResultOp`.
        op: OpIndex,
    },
    /// A result stage that writes each partition as a text file under `dir`
    /// (an object-store URL); the `ResultOp` renders the lines.
    SaveText {
        /// The `ResultOp` rendering the partition as text.
        op: OpIndex,
        /// The output directory URL.
        dir: String,
    },
    /// A map stage whose records are written as Arrow rows by an
    /// `ArrowWriteOp`, all of a task's rows to reduce partition 0: a
    /// `Dataset` read as a SQL table, one table partition per map task.
    Arrow {
        /// The shuffle written.
        shuffle: ShuffleId,
        /// The `ArrowWriteOp`.
        op: OpIndex,
    },
    /// A SQL fragment: a DataFusion physical plan encoded by riffle-sql.
    /// Each task runs one partition of it ([`PartitionPlan::Sql`]); `ops`
    /// is empty.
    Sql {
        /// The encoded fragment.
        plan: Vec<u8>,
        /// What its tasks produce.
        output: SqlOutput,
    },
}

/// What the tasks of a SQL stage produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlOutput {
    /// Arrow IPC bytes of the partition's batches, for the driver.
    Result,
    /// Shuffle output: the fragment's root is a shuffle writer.
    Shuffle {
        /// The shuffle written.
        shuffle: ShuffleId,
    },
    /// One file per task under `dir/_temporary`, which the driver commits
    /// once every task has succeeded (`SqlFrame::write_parquet`).
    Files {
        /// The output directory (an object-store URL).
        dir: String,
        /// The files' format.
        format: FileFormat,
    },
}

/// The format of files a SQL stage writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header line.
    Csv,
}

impl FileFormat {
    /// The file name extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => ".parquet",
            FileFormat::Csv => ".csv",
        }
    }
}

/// How to compute one partition of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PartitionPlan {
    /// A slice of a driver-side collection, decoded by a `SourceOp`.
    Parallelize {
        /// The `SourceOp`.
        op: OpIndex,
        /// The slice's encoded records.
        data: Vec<u8>,
    },
    /// A range of a text file.
    TextFile(FileSplit),
    /// The reduce side of one or more shuffles, combined by a `ReduceOp`.
    Shuffled {
        /// The `ReduceOp`.
        op: OpIndex,
        /// One input per parent shuffle, in the order the op expects.
        inputs: Vec<ShuffleInput>,
    },
    /// A narrow operator applied to another plan.
    Narrow {
        /// The `NarrowOp`.
        op: OpIndex,
        /// Its input.
        #[serde(deserialize_with = "nested")]
        input: Box<PartitionPlan>,
    },
    /// One partition of a SQL stage's fragment.
    Sql {
        /// The partition.
        partition: u32,
    },
    /// Arrow rows written by one SQL map task, turned into typed records
    /// by an `ArrowSourceOp`: a SQL result read as a `Dataset`.
    ArrowBlocks {
        /// The `ArrowSourceOp`.
        op: OpIndex,
        /// The shuffle read (named in fetch failures).
        shuffle: ShuffleId,
        /// The blocks of the task's rows.
        blocks: Vec<BlockLocation>,
    },
    /// Several parent partitions read one after the other (`coalesce`),
    /// chained by a `ConcatOp`.
    Concat {
        /// The `ConcatOp`.
        op: OpIndex,
        /// The parent partitions, in order.
        #[serde(deserialize_with = "nested")]
        inputs: Vec<PartitionPlan>,
    },
}

/// Compression of a text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Plain text, splittable at line ends.
    None,
    /// Gzip (one or more members), read whole.
    Gzip,
}

/// A byte range of a text file. The split owns every line that *starts*
/// inside `[start, end)`; it reads past `end` to finish its last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file's object-store URL.
    pub url: String,
    /// First byte (inclusive).
    pub start: u64,
    /// Last byte (exclusive); the file size for a whole file.
    pub end: u64,
    /// The size of the whole file.
    pub size: u64,
    /// Compression; compressed files are never split.
    pub compression: Compression,
}

/// The blocks of one reduce partition of one shuffle, from every map task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleInput {
    /// The shuffle read.
    pub shuffle: ShuffleId,
    /// The reduce partition read.
    pub partition: u32,
    /// Where its bytes are: exact object keys, never listed.
    pub blocks: Vec<BlockLocation>,
}

/// A byte range inside a map task's data object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockLocation {
    /// The data object's key in the shuffle store.
    pub path: String,
    /// The map partition that wrote it (named in fetch failures).
    pub map_partition: u32,
    /// First byte of the block.
    pub offset: u64,
    /// Length of the block in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of the block's bytes, checked after every fetch so
    /// that a damaged block is refetched from a recomputed map output
    /// instead of being decoded into wrong rows.
    pub checksum: u32,
}

/// One task to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Which task and attempt this is.
    pub id: TaskId,
    /// How to compute its partition.
    pub plan: PartitionPlan,
}

/// What a map task wrote: one data object plus its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStatus {
    /// The data object's key.
    pub data_path: String,
    /// Per reduce partition: byte range and row count.
    pub blocks: Vec<BlockInfo>,
}

impl MapStatus {
    /// Where map task `map`'s block of reduce partition `reduce` is;
    /// `None` when the block is empty (nothing to fetch).
    pub fn block_location(&self, map: u32, reduce: usize) -> Option<BlockLocation> {
        let block = self.blocks.get(reduce).filter(|b| b.len > 0)?;
        Some(BlockLocation {
            path: self.data_path.clone(),
            map_partition: map,
            offset: block.offset,
            len: block.len,
            checksum: block.checksum,
        })
    }
}

/// One reduce partition's block in a map output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// First byte.
    pub offset: u64,
    /// Length in bytes (0 for an empty partition).
    pub len: u64,
    /// Records in the block.
    pub rows: u64,
    /// CRC-32 (IEEE) of the block's bytes.
    pub checksum: u32,
}

/// A task's successful output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskOutput {
    /// A map task's shuffle output.
    Shuffle(MapStatus),
    /// A result task's bytes.
    Result(Vec<u8>),
    /// A `SaveText` task's uncommitted file.
    Written {
        /// The attempt-scoped path written, to be committed by the driver.
        path: String,
    },
}

/// Why a task failed, typed so the scheduler never parses messages: the
/// kind alone says what happens next (Spark's `TaskFailedReason`s).
///
/// | kind | the scheduler |
/// |---|---|
/// | `Retryable` | reruns the task, counting the failure |
/// | `ExecutorLost` | reruns the task elsewhere, not counting it |
/// | `FetchFailed` | recomputes the named map output, then reruns |
/// | `User`, `BadInput`, `Internal` | fails the job |
/// | `Killed` | nothing: the attempt was stopped on purpose |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// I/O or storage trouble, or resources exhausted: retry, preferably
    /// elsewhere.
    Retryable,
    /// The executor running the attempt died, hung or was removed: the
    /// task is not at fault, so the failure does not count towards its
    /// attempt limit (Spark's `ExecutorLostFailure` with
    /// `exitCausedByApp = false`).
    ExecutorLost,
    /// A parent map task's output could not be read (missing or damaged):
    /// its output is lost and must be recomputed from lineage.
    FetchFailed {
        /// The shuffle read.
        shuffle: ShuffleId,
        /// The map partition whose output was unreadable.
        map_partition: u32,
        /// The data object that was unreadable: the driver compares it
        /// with the output it has registered, so that a failure naming
        /// an output already replaced changes nothing.
        data_path: String,
    },
    /// The user's code panicked: retrying runs the same code on the same data.
    User,
    /// The input data is bad (corrupt file): retrying cannot help.
    BadInput,
    /// A bug in Riffle.
    Internal,
    /// The attempt was killed on request (its job was cancelled, or another
    /// attempt superseded it). Not a failure of the task: it never counts
    /// towards a task's failure limit and is never retried by itself.
    Killed,
}

impl FailureKind {
    /// Whether another attempt of the same task could succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FailureKind::Retryable | FailureKind::ExecutorLost | FailureKind::FetchFailed { .. }
        )
    }

    /// Whether the attempt was killed on request rather than failing.
    pub fn is_killed(&self) -> bool {
        matches!(self, FailureKind::Killed)
    }

    /// Whether the failure counts towards the task's attempt limit: only
    /// failures the task itself may have caused do.
    pub fn counts(&self) -> bool {
        !matches!(
            self,
            FailureKind::Killed | FailureKind::ExecutorLost | FailureKind::FetchFailed { .. }
        )
    }
}

/// A failed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// A human-readable cause.
    pub message: String,
}

impl PipelineError {
    /// What the scheduler should do about this error, decided by its
    /// variant alone.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            PipelineError::Input { .. }
            | PipelineError::Shuffle { .. }
            | PipelineError::Spill { .. } => FailureKind::Retryable,
            PipelineError::BadInput { .. } => FailureKind::BadInput,
            PipelineError::FetchFailed {
                shuffle,
                map_partition,
                data_path,
                ..
            } => FailureKind::FetchFailed {
                shuffle: *shuffle,
                map_partition: *map_partition,
                data_path: data_path.clone(),
            },
            PipelineError::Killed => FailureKind::Killed,
            PipelineError::Codec { .. }
            | PipelineError::Function { .. }
            | PipelineError::Internal(_) => FailureKind::Internal,
        }
    }
}

impl From<PipelineError> for TaskFailure {
    fn from(error: PipelineError) -> Self {
        TaskFailure {
            kind: error.failure_kind(),
            // The message crosses the process boundary as text: keep the
            // whole chain so the driver's error names the root cause.
            message: crate::error::report(&error),
        }
    }
}

/// Counters measured while a task ran. Fields missing from an older event
/// log read as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskMetrics {
    /// Wall time of the task in microseconds.
    pub run_micros: u64,
    /// Records produced by the task's sources.
    pub records_read: u64,
    /// Bytes read from files or shuffle.
    pub bytes_read: u64,
    /// Bytes of shuffle output written.
    pub shuffle_bytes_written: u64,
    /// Records of shuffle output written.
    pub shuffle_records_written: u64,
    /// Bytes fetched from shuffle blocks.
    pub shuffle_bytes_read: u64,
    /// Lines that were not valid UTF-8.
    pub invalid_utf8_lines: u64,
    /// Bytes written to spill files (Dataset operators and SQL).
    pub spilled_bytes: u64,
    /// Spill files written.
    pub spill_count: u64,
}

/// The report of one finished task attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task and attempt.
    pub id: TaskId,
    /// The executor that ran it.
    pub executor: ExecutorId,
    /// Its output or failure.
    pub result: Result<TaskOutput, TaskFailure>,
    /// What it measured.
    pub metrics: TaskMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_descriptor_is_an_error() {
        let spec = TaskSpec {
            id: TaskId {
                job: JobId(1),
                stage: StageId(2),
                partition: 3,
                attempt: 0,
            },
            plan: PartitionPlan::TextFile(FileSplit {
                url: "file:///tmp/x".into(),
                start: 0,
                end: 10,
                size: 10,
                compression: Compression::None,
            }),
        };
        let bytes = encode(&spec).unwrap();
        let back: TaskSpec = decode(&bytes).unwrap();
        assert_eq!(back.id, spec.id);
        assert!(decode::<TaskSpec>(&bytes[..bytes.len() - 3]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            decode::<TaskSpec>(&longer)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
    }
}

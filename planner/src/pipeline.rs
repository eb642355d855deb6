//! The type-erased operators a stage is built from.
//!
//! A stage is a tree per partition ([`crate::task::PartitionPlan`]): a source
//! at each leaf (a `parallelize` slice, a file split or a shuffle read),
//! narrow operators fused on top, and one sink at the root. Values flow as
//! ordinary Rust iterators; the boxed iterator of each partition is erased to
//! a [`Partition`] so that operators of any types can be chained by an
//! executor that knows none of them.
//!
//! Sources read lazily and cannot return errors through `Iterator::next`, so
//! they record failures in the task's [`TaskContext`] and end early; the
//! executor checks it before committing any output.
//!
//! A task is killed (job cancelled, attempt superseded) through the same
//! context: [`TaskContext::kill`] raises a flag that sources check before
//! producing each item, so a pipeline stops within one batch of its input
//! and records [`PipelineError::Killed`].

use crate::error::PipelineError;
use crate::memory::{SharedMemory, Unbounded};
use arrow_array::{BinaryArray, RecordBatch};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A boxed iterator of typed values.
pub type BoxIter<T> = Box<dyn Iterator<Item = T> + Send>;

/// An iterator of Arrow batches of encoded records (one shuffle input).
pub type BatchIter = BoxIter<BinaryArray>;

/// One partition's values, with their type erased.
pub struct Partition(Box<dyn Any + Send>);

impl Partition {
    /// Wraps a typed iterator.
    pub fn new<T: 'static>(iter: BoxIter<T>) -> Self {
        Partition(Box::new(iter))
    }

    /// Recovers the typed iterator; fails if the partition holds another type,
    /// which would be a planning bug.
    pub fn into_typed<T: 'static>(self) -> Result<BoxIter<T>, PipelineError> {
        self.0.downcast::<BoxIter<T>>().map(|b| *b).map_err(|_| {
            PipelineError::Internal(format!(
                "partition does not hold values of type {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Per-task state shared by the operators of one running task. Clones share
/// the same state, so the executor keeps one to kill the task from outside.
#[derive(Clone)]
pub struct TaskContext {
    error: Arc<Mutex<Option<PipelineError>>>,
    /// Raised once by `kill`; an atomic rather than part of `error` so that
    /// sources can poll it per item without taking a lock.
    killed: Arc<AtomicBool>,
    /// Counters reported back to the driver with the task status.
    pub counters: Arc<Counters>,
    /// The executor's memory pool and spill directory.
    pub memory: SharedMemory,
}

impl Default for TaskContext {
    /// A context with no memory limit and no spill directory.
    fn default() -> Self {
        TaskContext::new(Arc::new(Unbounded))
    }
}

/// Counters a running task accumulates.
#[derive(Default, Debug)]
pub struct Counters {
    /// Records produced by the sources.
    pub records_read: AtomicU64,
    /// Bytes read from input files or shuffle.
    pub bytes_read: AtomicU64,
    /// Lines that were not valid UTF-8 (decoded with replacement characters).
    pub invalid_utf8_lines: AtomicU64,
    /// Bytes fetched from shuffle blocks (also counted in `bytes_read`).
    pub shuffle_bytes_read: AtomicU64,
    /// Bytes written to spill files.
    pub spilled_bytes: AtomicU64,
    /// Spill files written.
    pub spill_count: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl TaskContext {
    /// A fresh context drawing memory from `memory`.
    pub fn new(memory: SharedMemory) -> Self {
        TaskContext {
            error: Arc::default(),
            killed: Arc::default(),
            counters: Arc::default(),
            memory,
        }
    }

    /// Records the first error; later ones are dropped since the first is the
    /// cause.
    pub fn fail(&self, error: PipelineError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(error);
        }
    }

    /// The first error recorded, if any.
    pub fn take_error(&self) -> Option<PipelineError> {
        self.error.lock().ok().and_then(|mut slot| slot.take())
    }

    /// True once an error has been recorded; sources stop producing then.
    pub fn failed(&self) -> bool {
        self.error.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Asks the task to stop: sources end at their next item and record
    /// [`PipelineError::Killed`]. Idempotent; callable from any thread.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }

    /// Whether [`TaskContext::kill`] was called on this task.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// For sources, before producing an item: true (with
    /// [`PipelineError::Killed`] recorded) if the task was killed, so the
    /// source should end now.
    pub fn stop_if_killed(&self) -> bool {
        let killed = self.is_killed();
        if killed {
            self.fail(PipelineError::Killed);
        }
        killed
    }
}

/// A narrow operator: one partition in, one partition out (map, filter, ...).
pub trait NarrowOp: Send + Sync {
    /// Applies the operator lazily to a partition.
    fn apply(&self, input: Partition, ctx: &TaskContext) -> Result<Partition, PipelineError>;
}

/// Decodes an in-memory `parallelize` slice into a partition.
pub trait SourceOp: Send + Sync {
    /// Builds the partition from the slice's encoded records.
    fn open(&self, data: &[u8], ctx: &TaskContext) -> Result<Partition, PipelineError>;
}

/// Chains several partitions of one type into one (`coalesce`).
pub trait ConcatOp: Send + Sync {
    /// Chains the partitions lazily, in order.
    fn concat(&self, inputs: Vec<Partition>) -> Result<Partition, PipelineError>;
}

/// The reduce side of a shuffle: combines the fetched inputs (one per parent
/// shuffle) into the first partition of the consuming stage.
pub trait ReduceOp: Send + Sync {
    /// Builds the partition from one batch iterator per parent shuffle.
    fn reduce(&self, inputs: Vec<BatchIter>, ctx: &TaskContext)
    -> Result<Partition, PipelineError>;
}

/// Where a shuffle writer hands its records: `(reduce partition, encoded
/// records)`, any number of times per partition, in order.
pub type MapOutputSink<'a> = dyn FnMut(usize, BinaryArray) -> Result<(), PipelineError> + 'a;

/// The map side of a shuffle: splits (and possibly pre-combines) a partition
/// into encoded records per reduce partition.
pub trait ShuffleWriteOp: Send + Sync {
    /// Consumes the partition, handing records to `out` in pieces as they
    /// accumulate (so a map task never holds its whole output decoded);
    /// reduce partitions are below `partitions`.
    fn write(
        &self,
        input: Partition,
        partitions: usize,
        ctx: &TaskContext,
        out: &mut MapOutputSink<'_>,
    ) -> Result<(), PipelineError>;
}

/// The end of a result stage: turns a partition into the bytes returned to
/// the driver (collected records, a count, a partial reduction, text lines).
pub trait ResultOp: Send + Sync {
    /// Consumes the partition.
    fn finish(&self, input: Partition, ctx: &TaskContext) -> Result<Vec<u8>, PipelineError>;
}

/// The end of a map stage whose records become Arrow rows: a `Dataset`
/// read as a SQL table. Each task's rows go to one reduce partition, read
/// back as one partition of the table.
pub trait ArrowWriteOp: Send + Sync {
    /// The Arrow schema of the rows.
    fn schema(&self) -> arrow_schema::SchemaRef;

    /// Consumes the partition, handing its rows to `out` a batch at a time.
    fn write(
        &self,
        input: Partition,
        ctx: &TaskContext,
        out: &mut dyn FnMut(RecordBatch) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError>;
}

/// The start of a stage whose records come from Arrow rows: a SQL result
/// read as a `Dataset`.
pub trait ArrowSourceOp: Send + Sync {
    /// Builds the partition from the fetched batches.
    fn open(
        &self,
        batches: BoxIter<RecordBatch>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{FailureKind, TaskFailure};

    #[test]
    fn kill_is_shared_by_clones_and_recorded_by_sources() {
        let ctx = TaskContext::default();
        let source_side = ctx.clone();
        assert!(!source_side.stop_if_killed());
        assert!(source_side.take_error().is_none());
        ctx.kill();
        assert!(source_side.is_killed());
        assert!(source_side.stop_if_killed());
        let failure = TaskFailure::from(ctx.take_error().unwrap());
        assert_eq!(failure.kind, FailureKind::Killed);
        assert!(!failure.kind.retryable());
        assert!(failure.kind.is_killed());
    }
}

//! Running one task: build the partition's iterators, drive the sink,
//! commit the output.
//!
//! A task can be killed through its [`RunningTask`]: the sources stop at
//! their next item (the flag in the task's `TaskContext`), a SQL task's
//! DataFusion task is aborted, and the task's future reports
//! `FailureKind::Killed` at once. Output is never committed after a kill is
//! seen; a kill that arrives while the commit's write is in flight lets the
//! write finish and reports the output, which the driver then ignores.

use crate::ExecutorEnv;
use crate::cpu::run_cpu;
use crate::shuffle_input::ShuffleBatches;
use crate::sql::{SqlEngine, SqlStage};
use crate::text::TextLines;
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use riffle_planner::PipelineError;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ExecutorId, ShuffleId, StageId, TaskId};
use riffle_planner::pipeline::{
    ArrowSourceOp, ArrowWriteOp, ConcatOp, NarrowOp, Partition, ReduceOp, ResultOp, ShuffleWriteOp,
    SourceOp, TaskContext,
};
use riffle_planner::task::{
    FailureKind, OpIndex, PartitionPlan, StageSink, StageSpec, TaskFailure, TaskMetrics,
    TaskOutput, TaskSpec, TaskStatus,
};
use riffle_shuffle::writer::{EncodedMapOutput, MapOutputBuilder, put_map_output};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// One instantiated operator of a stage.
enum Op {
    Narrow(Box<dyn NarrowOp>),
    Source(Box<dyn SourceOp>),
    Concat(Box<dyn ConcatOp>),
    Reduce(Box<dyn ReduceOp>),
    Write(Box<dyn ShuffleWriteOp>),
    Result(Box<dyn ResultOp>),
    ArrowWrite(Box<dyn ArrowWriteOp>),
    ArrowSource(Box<dyn ArrowSourceOp>),
}

impl Op {
    /// # Safety
    ///
    /// As for [`FnRef::instantiate_any`]: `f` comes from this process or
    /// from this executor's authenticated, build-checked driver.
    unsafe fn instantiate(f: &FnRef) -> Result<Op, PipelineError> {
        // SAFETY: forwarded to our caller.
        let any = unsafe { f.instantiate_any() }?;
        // Try each role in turn; a factory returns exactly one of them.
        macro_rules! roles {
            ($any:ident; $($role:ident => $variant:ident),* $(,)?) => {$(
                let $any = match $any.downcast::<Box<dyn $role>>() {
                    Ok(op) => return Ok(Op::$variant(*op)),
                    Err(other) => other,
                };
            )*};
        }
        roles!(
            any;
            NarrowOp => Narrow,
            SourceOp => Source,
            ConcatOp => Concat,
            ReduceOp => Reduce,
            ShuffleWriteOp => Write,
            ResultOp => Result,
            ArrowWriteOp => ArrowWrite,
            ArrowSourceOp => ArrowSource,
        );
        drop(any);
        Err(PipelineError::Function {
            name: f.name().to_string(),
            message: "factory returned an object of no known operator role".into(),
        })
    }
}

/// A stage instantiated on this executor, shared by all of its tasks that
/// run here. One kind per kind of stage, so a SQL stage never goes through
/// the Dataset pipeline code and a Dataset stage never meets DataFusion.
#[derive(Clone)]
pub(crate) enum StageRuntime {
    /// A Dataset stage: typed operators fused into iterators.
    Pipeline(Arc<PipelineStage>),
    /// A SQL fragment, run by DataFusion.
    Sql(Arc<SqlStage>),
}

impl StageRuntime {
    /// Instantiates `spec`; `sql_engine` is called (once) only for a SQL
    /// stage, so Dataset-only executors never start DataFusion.
    ///
    /// # Safety
    ///
    /// As for [`FnRef::instantiate_any`], for every operator of `spec`.
    pub(crate) unsafe fn new(
        spec: StageSpec,
        sql_engine: impl FnOnce() -> Result<Arc<SqlEngine>, PipelineError>,
    ) -> Result<Self, PipelineError> {
        let StageSpec {
            stage, ops, sink, ..
        } = spec;
        let sink = match sink {
            StageSink::Sql { plan, output } => {
                return Ok(StageRuntime::Sql(Arc::new(SqlStage::new(
                    sql_engine()?,
                    &plan,
                    output,
                )?)));
            }
            StageSink::Shuffle {
                shuffle,
                writer,
                partitions,
            } => PipelineSink::Shuffle {
                shuffle,
                writer,
                partitions,
            },
            StageSink::Arrow { shuffle, op } => PipelineSink::Arrow { shuffle, op },
            StageSink::Result { op } => PipelineSink::Result { op },
            StageSink::SaveText { op, dir } => PipelineSink::SaveText { op, dir },
        };
        let instantiated = ops
            .iter()
            // SAFETY: forwarded to our caller.
            .map(|f| unsafe { Op::instantiate(f) })
            .collect::<Result<_, _>>()?;
        Ok(StageRuntime::Pipeline(Arc::new(PipelineStage {
            stage,
            names: ops.iter().map(|f| f.name().to_string()).collect(),
            ops: instantiated,
            sink,
        })))
    }
}

/// The sink of a Dataset stage: [`StageSink`] without its SQL variant.
enum PipelineSink {
    Shuffle {
        shuffle: ShuffleId,
        writer: OpIndex,
        partitions: u32,
    },
    Arrow {
        shuffle: ShuffleId,
        op: OpIndex,
    },
    Result {
        op: OpIndex,
    },
    SaveText {
        op: OpIndex,
        dir: String,
    },
}

/// A Dataset stage whose operators have been instantiated.
pub(crate) struct PipelineStage {
    stage: StageId,
    /// The operators' descriptive names, for errors.
    names: Vec<String>,
    ops: Vec<Op>,
    sink: PipelineSink,
}

/// What the CPU side of a task produced, with what committing it needs.
enum CpuOutput {
    Map {
        shuffle: ShuffleId,
        encoded: EncodedMapOutput,
    },
    Result(Vec<u8>),
    Text {
        dir: String,
        bytes: Vec<u8>,
    },
}

impl PipelineStage {
    fn op(&self, index: OpIndex) -> Result<&Op, PipelineError> {
        self.ops.get(index as usize).ok_or_else(|| {
            PipelineError::Internal(format!("operator {index} is not in {}", self.stage))
        })
    }

    fn wrong_role(&self, index: OpIndex, role: &str) -> PipelineError {
        let name = self.names.get(index as usize).map_or("?", String::as_str);
        PipelineError::Internal(format!("operator {index} ({name}) is not a {role}"))
    }

    /// Builds the (lazy) partition described by `plan`.
    fn build(
        &self,
        plan: PartitionPlan,
        env: &ExecutorEnv,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        match plan {
            PartitionPlan::Parallelize { op, data } => match self.op(op)? {
                Op::Source(source) => source.open(&data, ctx),
                _ => Err(self.wrong_role(op, "source")),
            },
            PartitionPlan::TextFile(split) => Ok(Partition::new::<String>(Box::new(
                TextLines::new(split, env.stores.clone(), env.runtime.clone(), ctx.clone()),
            ))),
            PartitionPlan::Shuffled { op, inputs } => match self.op(op)? {
                Op::Reduce(reduce) => {
                    let batches = inputs
                        .into_iter()
                        .map(|input| {
                            Box::new(ShuffleBatches::new(
                                input,
                                env.shuffle.clone(),
                                env.runtime.clone(),
                                ctx.clone(),
                            )) as riffle_planner::pipeline::BatchIter
                        })
                        .collect();
                    reduce.reduce(batches, ctx)
                }
                _ => Err(self.wrong_role(op, "reduce operator")),
            },
            PartitionPlan::Narrow { op, input } => {
                let input = self.build(*input, env, ctx)?;
                match self.op(op)? {
                    Op::Narrow(narrow) => narrow.apply(input, ctx),
                    _ => Err(self.wrong_role(op, "narrow operator")),
                }
            }
            PartitionPlan::ArrowBlocks {
                op,
                shuffle,
                blocks,
            } => match self.op(op)? {
                Op::ArrowSource(source) => {
                    let input = riffle_planner::task::ShuffleInput {
                        shuffle,
                        partition: 0,
                        blocks,
                    };
                    let batches = ShuffleBatches::record_batches(
                        input,
                        env.shuffle.clone(),
                        env.runtime.clone(),
                        ctx.clone(),
                    );
                    source.open(Box::new(batches), ctx)
                }
                _ => Err(self.wrong_role(op, "Arrow source")),
            },
            // The plan comes from the driver: a mismatch is its bug, reported
            // rather than assumed away.
            PartitionPlan::Sql { .. } => Err(PipelineError::Internal(format!(
                "a SQL task was sent to Dataset stage {}",
                self.stage
            ))),
            PartitionPlan::Concat { op, inputs } => {
                let parts = inputs
                    .into_iter()
                    .map(|p| self.build(p, env, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                match self.op(op)? {
                    Op::Concat(concat) => concat.concat(parts),
                    _ => Err(self.wrong_role(op, "concat operator")),
                }
            }
        }
    }

    /// The CPU part of a task: compute the partition and drive the sink.
    fn compute(
        &self,
        plan: PartitionPlan,
        env: &ExecutorEnv,
        ctx: &TaskContext,
    ) -> Result<CpuOutput, PipelineError> {
        // Killed while queued for a slot: do not even open the inputs.
        if ctx.stop_if_killed() {
            return Err(PipelineError::Killed);
        }
        let partition = self.build(plan, env, ctx)?;
        match &self.sink {
            PipelineSink::Shuffle {
                shuffle,
                writer,
                partitions,
            } => match self.op(*writer)? {
                Op::Write(w) => {
                    let shuffle_error = |e: riffle_shuffle::ShuffleError| PipelineError::Shuffle {
                        source: Box::new(e),
                    };
                    // Pieces are encoded as they come (they are already
                    // batches of encoded records, so not re-packed), and the
                    // encoded output spills if the pool will not hold it.
                    let mut output = MapOutputBuilder::new(
                        riffle_shuffle::writer::RECORD_SCHEMA.clone(),
                        *partitions as usize,
                        env.shuffle.compression,
                    )
                    .map_err(shuffle_error)?
                    .without_coalescing()
                    .with_spilling(ctx.memory.clone(), ctx.counters.clone());
                    w.write(partition, *partitions as usize, ctx, &mut |p, records| {
                        let batch = arrow_array::RecordBatch::try_new(
                            riffle_shuffle::writer::RECORD_SCHEMA.clone(),
                            vec![Arc::new(records) as arrow_array::ArrayRef],
                        )
                        .map_err(|e| PipelineError::Internal(e.to_string()))?;
                        output.push(p, batch).map_err(shuffle_error)
                    })?;
                    // A kill cut the input short: nothing to finish.
                    if ctx.stop_if_killed() {
                        return Err(PipelineError::Killed);
                    }
                    Ok(CpuOutput::Map {
                        shuffle: *shuffle,
                        encoded: output.finish().map_err(shuffle_error)?,
                    })
                }
                _ => Err(self.wrong_role(*writer, "shuffle writer")),
            },
            PipelineSink::Arrow { shuffle, op } => match self.op(*op)? {
                Op::ArrowWrite(w) => {
                    let shuffle_error = |e: riffle_shuffle::ShuffleError| PipelineError::Shuffle {
                        source: Box::new(e),
                    };
                    let mut output = MapOutputBuilder::new(w.schema(), 1, env.shuffle.compression)
                        .map_err(shuffle_error)?
                        .with_spilling(ctx.memory.clone(), ctx.counters.clone());
                    w.write(partition, ctx, &mut |batch| {
                        output.push(0, batch).map_err(shuffle_error)
                    })?;
                    Ok(CpuOutput::Map {
                        shuffle: *shuffle,
                        encoded: output.finish().map_err(shuffle_error)?,
                    })
                }
                _ => Err(self.wrong_role(*op, "Arrow writer")),
            },
            PipelineSink::Result { op } => match self.op(*op)? {
                Op::Result(r) => Ok(CpuOutput::Result(r.finish(partition, ctx)?)),
                _ => Err(self.wrong_role(*op, "result operator")),
            },
            PipelineSink::SaveText { op, dir } => match self.op(*op)? {
                Op::Result(r) => Ok(CpuOutput::Text {
                    dir: dir.clone(),
                    bytes: r.finish(partition, ctx)?,
                }),
                _ => Err(self.wrong_role(*op, "result operator")),
            },
        }
    }

    /// Runs one task of this stage: the CPU part on the rayon pool, then the
    /// commit. Returns as soon as the task is killed: the CPU part then ends
    /// at its sources' next item, and its output is dropped unseen.
    async fn run(
        self: Arc<Self>,
        env: &Arc<ExecutorEnv>,
        task: TaskSpec,
        running: &RunningTask,
    ) -> Result<TaskOutput, TaskFailure> {
        let id = task.id;
        let ctx = running.ctx.clone();
        let pool = env.pool.clone();
        let cpu = {
            let (env, ctx) = (env.clone(), ctx.clone());
            run_cpu(&pool, move || {
                std::panic::catch_unwind(AssertUnwindSafe(|| self.compute(task.plan, &env, &ctx)))
            })
        };
        let cpu = tokio::select! {
            cpu = cpu => cpu,
            () = running.killed() => return Err(killed(id, env.id)),
        };
        // Whatever the CPU side did after a kill (partial output, errors
        // caused by truncated input) is moot: the kill is the outcome.
        if ctx.is_killed() {
            return Err(killed(id, env.id));
        }
        match cpu {
            None => Err(TaskFailure {
                kind: FailureKind::Retryable,
                message: format!("{id} was dropped: executor shutting down"),
            }),
            Some(Err(panic)) => Err(TaskFailure {
                kind: FailureKind::User,
                message: format!(
                    "user code panicked in {id} on {}: {}",
                    env.id,
                    panic_message(&*panic)
                ),
            }),
            // A source failure ends its iterator early, so it explains
            // whatever the sink saw: report it before anything else, and
            // never commit.
            Some(Ok(out)) => match (ctx.take_error(), out) {
                (Some(e), _) | (None, Err(e)) => Err(TaskFailure::from(e)),
                (None, Ok(out)) => commit(env, &id, out).await,
            },
        }
    }
}

/// How to stop one running task from another thread (the executor's
/// registry holds one per task).
pub(crate) struct RunningTask {
    /// The task's context: its kill flag stops the sources.
    pub(crate) ctx: TaskContext,
    /// Wakes the task's own future, which reports the kill at once.
    notify: Notify,
    /// The spawned DataFusion task of a SQL task, once started.
    sql: Mutex<Option<AbortHandle>>,
}

impl RunningTask {
    /// A task that has not been killed, drawing memory from `memory`.
    pub(crate) fn new(memory: riffle_planner::memory::SharedMemory) -> Self {
        RunningTask {
            ctx: TaskContext::new(memory),
            notify: Notify::new(),
            sql: Mutex::new(None),
        }
    }

    /// Kills the task: raises the flag its sources poll, aborts its
    /// DataFusion task if it has one, and wakes its future. Idempotent.
    pub(crate) fn kill(&self) {
        self.ctx.kill();
        // Taken under the lock that `attach_sql` holds while it checks the
        // flag, so a handle attached concurrently is aborted by one of us.
        if let Some(handle) = self.sql.lock().ok().and_then(|mut h| h.take()) {
            handle.abort();
        }
        self.notify.notify_waiters();
    }

    /// Whether [`RunningTask::kill`] was called.
    pub(crate) fn is_killed(&self) -> bool {
        self.ctx.is_killed()
    }

    /// Records the abort handle of a SQL task's DataFusion task; aborts it
    /// at once if the task was killed before it started.
    pub(crate) fn attach_sql(&self, handle: AbortHandle) {
        if let Ok(mut slot) = self.sql.lock() {
            if self.ctx.is_killed() {
                handle.abort();
            } else {
                *slot = Some(handle);
            }
        }
    }

    /// Resolves once the task is killed (at once if it already was).
    pub(crate) async fn killed(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a kill in between still
        // wakes us (`notify_waiters` stores no permit).
        notified.as_mut().enable();
        if self.is_killed() {
            return;
        }
        notified.await;
    }
}

/// The failure a killed task reports.
pub(crate) fn killed(id: TaskId, executor: ExecutorId) -> TaskFailure {
    TaskFailure {
        kind: FailureKind::Killed,
        message: format!("{id} was killed on {executor}"),
    }
}

/// Runs one task to completion (or until it is killed through `running`)
/// and reports its status. Never panics: a panic in user code becomes a
/// `User` failure naming the task.
pub(crate) async fn run_task(
    env: &Arc<ExecutorEnv>,
    stage: StageRuntime,
    task: TaskSpec,
    running: &RunningTask,
) -> TaskStatus {
    let started = Instant::now();
    let id = task.id;
    let result = if running.is_killed() {
        Err(killed(id, env.id))
    } else if let Err(failure) = crate::faults::at_task_start(env, &id, running).await {
        Err(failure)
    } else {
        match stage {
            StageRuntime::Pipeline(stage) => stage.run(env, task, running).await,
            StageRuntime::Sql(stage) => stage.run(env, id, running).await,
        }
    };
    let c = &running.ctx.counters;
    let (shuffle_bytes_written, shuffle_records_written) = match &result {
        Ok(TaskOutput::Shuffle(status)) => (
            status.blocks.iter().map(|b| b.len).sum(),
            status.blocks.iter().map(|b| b.rows).sum(),
        ),
        _ => (0, 0),
    };
    TaskStatus {
        id,
        executor: env.id,
        metrics: TaskMetrics {
            run_micros: started.elapsed().as_micros() as u64,
            records_read: c.records_read.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            shuffle_bytes_written,
            invalid_utf8_lines: c.invalid_utf8_lines.load(Ordering::Relaxed),
            shuffle_records_written,
            shuffle_bytes_read: c.shuffle_bytes_read.load(Ordering::Relaxed),
            spilled_bytes: c.spilled_bytes.load(Ordering::Relaxed),
            spill_count: c.spill_count.load(Ordering::Relaxed),
        },
        result,
    }
}

/// Stores what the CPU side produced and describes it for the driver.
async fn commit(env: &ExecutorEnv, id: &TaskId, out: CpuOutput) -> Result<TaskOutput, TaskFailure> {
    match out {
        CpuOutput::Map { shuffle, encoded } => store_map_output(env, id, shuffle, encoded).await,
        CpuOutput::Result(bytes) => Ok(TaskOutput::Result(bytes)),
        CpuOutput::Text { dir, bytes } => put_task_file(env, &dir, id, "", bytes).await,
    }
}

/// Stores a map task's output under its attempt-scoped key.
pub(crate) async fn store_map_output(
    env: &ExecutorEnv,
    id: &TaskId,
    shuffle: ShuffleId,
    encoded: EncodedMapOutput,
) -> Result<TaskOutput, TaskFailure> {
    let path = env
        .shuffle
        .data_path(id.job, shuffle, id.partition, id.attempt);
    let status = put_map_output(&env.shuffle, path, encoded)
        .await
        .map_err(|e| TaskFailure {
            kind: FailureKind::Retryable,
            message: format!("{id}: {e}"),
        })?;
    crate::faults::after_map_output(env, id, &status).await;
    Ok(TaskOutput::Shuffle(status))
}

/// Stores a task's output file as `dir/_temporary/JOB/part-NNNNN-attempt-A`
/// plus `suffix`, for the driver to commit once the whole job succeeded.
pub(crate) async fn put_task_file(
    env: &ExecutorEnv,
    dir: &str,
    id: &TaskId,
    suffix: &str,
    bytes: Vec<u8>,
) -> Result<TaskOutput, TaskFailure> {
    let storage_failure = |message: String| TaskFailure {
        kind: FailureKind::Retryable,
        message: format!("{id}: {message}"),
    };
    let url = format!(
        "{}/_temporary/{}/part-{:05}-attempt-{}{suffix}",
        dir.trim_end_matches('/'),
        id.job,
        id.partition,
        id.attempt
    );
    let parsed = url::Url::parse(&url).map_err(|e| storage_failure(format!("{url}: {e}")))?;
    let (store, path) = env
        .stores
        .resolve(&parsed)
        .map_err(|e| storage_failure(riffle_planner::report(&e)))?;
    store
        .put(&path, PutPayload::from_bytes(Bytes::from(bytes)))
        .await
        .map_err(|e| storage_failure(format!("writing {url}: {}", riffle_planner::report(&e))))?;
    Ok(TaskOutput::Written { path: url })
}

pub use riffle_planner::error::panic_message;

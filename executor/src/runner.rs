//! Running one task: build the partition's iterators, drive the sink,
//! commit the output.

use crate::ExecutorEnv;
use crate::cpu::run_cpu;
use crate::shuffle_input::ShuffleBatches;
use crate::text::TextLines;
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use riffle_planner::PipelineError;
use riffle_planner::function::FnRef;
use riffle_planner::pipeline::{
    ArrowSourceOp, ArrowWriteOp, ConcatOp, NarrowOp, Partition, ReduceOp, ResultOp, ShuffleWriteOp,
    SourceOp, TaskContext,
};
use riffle_planner::task::{
    FailureKind, OpIndex, PartitionPlan, StageSink, StageSpec, TaskFailure, TaskMetrics,
    TaskOutput, TaskSpec, TaskStatus,
};
use riffle_shuffle::writer::{
    EncodedMapOutput, MapOutputBuilder, encode_map_output, put_map_output,
};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

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
    fn instantiate(f: &FnRef) -> Result<Op, PipelineError> {
        let any = f.instantiate_any()?;
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

/// A stage whose operators have been instantiated on this executor; shared
/// by all of the stage's tasks that run here.
pub struct StageRuntime {
    spec: StageSpec,
    ops: Vec<Op>,
    /// The decoded fragment of a SQL stage.
    sql: Option<Arc<dyn riffle_sql::datafusion::physical_plan::ExecutionPlan>>,
}

/// What the CPU side of a task produced.
enum CpuOutput {
    Map(EncodedMapOutput),
    Bytes(Vec<u8>),
}

impl StageRuntime {
    /// Instantiates every operator of `spec`.
    pub fn new(
        spec: StageSpec,
        sql: Option<&crate::sql::SqlEngine>,
    ) -> Result<Self, PipelineError> {
        let ops = spec
            .ops
            .iter()
            .map(Op::instantiate)
            .collect::<Result<_, _>>()?;
        let sql = match (&spec.sink, sql) {
            (StageSink::Sql { plan, .. }, Some(engine)) => Some(engine.decode(plan)?),
            (StageSink::Sql { .. }, None) => {
                return Err(PipelineError::Internal(
                    "no SQL engine for a SQL stage".into(),
                ));
            }
            _ => None,
        };
        Ok(StageRuntime { spec, ops, sql })
    }

    fn op(&self, index: OpIndex) -> Result<&Op, PipelineError> {
        self.ops.get(index as usize).ok_or_else(|| {
            PipelineError::Internal(format!("operator {index} is not in {}", self.spec.stage))
        })
    }

    fn wrong_role(&self, index: OpIndex, role: &str) -> PipelineError {
        let name = self
            .spec
            .ops
            .get(index as usize)
            .map(FnRef::name)
            .unwrap_or("?");
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
            PartitionPlan::Sql { .. } => Err(PipelineError::Internal(
                "a SQL task in a Dataset stage".into(),
            )),
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
        let partition = self.build(plan, env, ctx)?;
        match &self.spec.sink {
            StageSink::Shuffle {
                writer, partitions, ..
            } => match self.op(*writer)? {
                Op::Write(w) => {
                    let arrays = w.write(partition, *partitions as usize, ctx)?;
                    let encoded = encode_map_output(arrays, env.shuffle.compression)
                        .map_err(|e| PipelineError::Shuffle(e.to_string()))?;
                    Ok(CpuOutput::Map(encoded))
                }
                _ => Err(self.wrong_role(*writer, "shuffle writer")),
            },
            StageSink::Arrow { op, .. } => match self.op(*op)? {
                Op::ArrowWrite(w) => {
                    let shuffle_error =
                        |e: riffle_shuffle::ShuffleError| PipelineError::Shuffle(e.to_string());
                    let mut output = MapOutputBuilder::new(w.schema(), 1, env.shuffle.compression)
                        .map_err(shuffle_error)?;
                    w.write(partition, ctx, &mut |batch| {
                        output.push(0, batch).map_err(shuffle_error)
                    })?;
                    Ok(CpuOutput::Map(output.finish().map_err(shuffle_error)?))
                }
                _ => Err(self.wrong_role(*op, "Arrow writer")),
            },
            StageSink::Sql { .. } => Err(PipelineError::Internal(
                "a SQL stage on the Dataset path".into(),
            )),
            StageSink::Result { op } | StageSink::SaveText { op, .. } => match self.op(*op)? {
                Op::Result(r) => Ok(CpuOutput::Bytes(r.finish(partition, ctx)?)),
                _ => Err(self.wrong_role(*op, "result operator")),
            },
        }
    }
}

/// Runs one task to completion and reports its status. Never panics: a
/// panic in user code becomes a `User` failure naming the task.
pub async fn run_task(
    env: &Arc<ExecutorEnv>,
    sql: Option<&crate::sql::SqlEngine>,
    stage: Arc<StageRuntime>,
    task: TaskSpec,
) -> TaskStatus {
    let started = Instant::now();
    let ctx = TaskContext::default();
    let id = task.id;
    if let (StageSink::Sql { output, .. }, Some(plan), Some(engine)) =
        (&stage.spec.sink, &stage.sql, sql)
    {
        let result = engine.run(env, plan.clone(), output.clone(), id).await;
        return TaskStatus {
            id,
            executor: env.id,
            metrics: TaskMetrics {
                run_micros: started.elapsed().as_micros() as u64,
                shuffle_bytes_written: match &result {
                    Ok(TaskOutput::Shuffle(status)) => status.blocks.iter().map(|b| b.len).sum(),
                    _ => 0,
                },
                shuffle_records_written: match &result {
                    Ok(TaskOutput::Shuffle(status)) => status.blocks.iter().map(|b| b.rows).sum(),
                    _ => 0,
                },
                ..TaskMetrics::default()
            },
            result,
        };
    }
    let cpu = {
        let (env, stage, ctx) = (env.clone(), stage.clone(), ctx.clone());
        run_cpu(&env.pool.clone(), move || {
            std::panic::catch_unwind(AssertUnwindSafe(|| stage.compute(task.plan, &env, &ctx)))
        })
        .await
    };
    let result = match cpu {
        None => Err(TaskFailure {
            kind: FailureKind::Retryable,
            message: format!("{} was dropped: executor shutting down", id),
        }),
        Some(Err(panic)) => Err(TaskFailure {
            kind: FailureKind::User,
            message: format!(
                "user code panicked in {id} on {}: {}",
                env.id,
                panic_message(&*panic)
            ),
        }),
        // A source failure ends its iterator early, so it explains whatever
        // the sink saw: report it before anything else, and never commit.
        Some(Ok(out)) => match (ctx.take_error(), out) {
            (Some(e), _) | (None, Err(e)) => Err(TaskFailure::from(e)),
            (None, Ok(out)) => commit(env, &stage.spec, &id, out).await,
        },
    };
    let c = &ctx.counters;
    TaskStatus {
        id,
        executor: env.id,
        metrics: TaskMetrics {
            run_micros: started.elapsed().as_micros() as u64,
            records_read: c.records_read.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            shuffle_bytes_written: match &result {
                Ok(TaskOutput::Shuffle(status)) => status.blocks.iter().map(|b| b.len).sum(),
                _ => 0,
            },
            invalid_utf8_lines: c.invalid_utf8_lines.load(Ordering::Relaxed),
            shuffle_records_written: match &result {
                Ok(TaskOutput::Shuffle(status)) => status.blocks.iter().map(|b| b.rows).sum(),
                _ => 0,
            },
            shuffle_bytes_read: c.shuffle_bytes_read.load(Ordering::Relaxed),
        },
        result,
    }
}

/// Stores what the CPU side produced and describes it for the driver.
async fn commit(
    env: &ExecutorEnv,
    spec: &StageSpec,
    id: &riffle_planner::ids::TaskId,
    out: CpuOutput,
) -> Result<TaskOutput, TaskFailure> {
    let storage_failure = |message: String| TaskFailure {
        kind: FailureKind::Retryable,
        message: format!("{id}: {message}"),
    };
    match (&spec.sink, out) {
        (
            StageSink::Shuffle { shuffle, .. } | StageSink::Arrow { shuffle, .. },
            CpuOutput::Map(encoded),
        ) => {
            let path = env
                .shuffle
                .data_path(id.job, *shuffle, id.partition, id.attempt);
            put_map_output(&env.shuffle, path, encoded)
                .await
                .map(TaskOutput::Shuffle)
                .map_err(|e| storage_failure(e.to_string()))
        }
        (StageSink::Result { .. }, CpuOutput::Bytes(bytes)) => Ok(TaskOutput::Result(bytes)),
        (StageSink::SaveText { dir, .. }, CpuOutput::Bytes(bytes)) => {
            put_task_file(env, dir, id, "", bytes).await
        }
        _ => Err(TaskFailure {
            kind: FailureKind::Internal,
            message: format!("{id}: sink produced output of the wrong kind"),
        }),
    }
}

/// Stores a task's output file as `dir/_temporary/JOB/part-NNNNN-attempt-A`
/// plus `suffix`, for the driver to commit once the whole job succeeded.
pub(crate) async fn put_task_file(
    env: &ExecutorEnv,
    dir: &str,
    id: &riffle_planner::ids::TaskId,
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
        .map_err(|e| storage_failure(e.to_string()))?;
    store
        .put(&path, PutPayload::from_bytes(Bytes::from(bytes)))
        .await
        .map_err(|e| storage_failure(format!("writing {url}: {e}")))?;
    Ok(TaskOutput::Written { path: url })
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

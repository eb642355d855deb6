//! SQL tasks: fragments run by DataFusion on a runtime of their own.
//!
//! DataFusion is async and CPU-heavy; its fragments run on a dedicated
//! tokio runtime with one worker per slot, so they neither starve the I/O
//! runtime (heartbeats, RPC) nor run on the rayon pool of Dataset tasks.

use crate::ExecutorEnv;
use crate::runner::{RunningTask, killed};
use riffle_planner::PipelineError;
use riffle_planner::ids::TaskId;
use riffle_planner::task::{FailureKind, SqlOutput, TaskFailure, TaskOutput};
use riffle_sql::datafusion::common::DataFusionError;
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use riffle_sql::datafusion::prelude::SessionContext;
use riffle_sql::engine::{FragmentOutput, new_session_with, run_fragment, write_fragment};
use std::sync::Arc;

/// The SQL side of an executor.
pub struct SqlEngine {
    runtime: Option<tokio::runtime::Runtime>,
    session: SessionContext,
}

impl Drop for SqlEngine {
    fn drop(&mut self) {
        // May be dropped inside another runtime: do not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SqlEngine {
    /// An engine with `slots` worker threads.
    pub fn new(env: &ExecutorEnv, slots: usize) -> Result<SqlEngine, PipelineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(slots.max(1))
            .thread_name("riffle-sql")
            .enable_all()
            .build()
            .map_err(|e| PipelineError::Internal(format!("cannot start the SQL runtime: {e}")))?;
        let mut runtime_env = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(env.memory.sql_pool());
        runtime_env.disk_manager = Some(env.memory.disk_manager());
        let session = new_session_with(slots, env.stores.clone(), env.shuffle.clone(), runtime_env)
            .map_err(|e| PipelineError::Internal(riffle_planner::report(&e)))?;
        Ok(SqlEngine {
            runtime: Some(runtime),
            session,
        })
    }

    /// The SQL runtime's metrics, to see its tasks end.
    #[cfg(test)]
    pub(crate) fn runtime_metrics(&self) -> Option<tokio::runtime::RuntimeMetrics> {
        self.runtime.as_ref().map(|rt| rt.metrics())
    }

    /// Decodes a stage's fragment.
    pub fn decode(&self, plan: &[u8]) -> Result<Arc<dyn ExecutionPlan>, PipelineError> {
        riffle_sql::codec::decode_plan(plan, &self.session.task_ctx())
            .map_err(|e| PipelineError::codec("decoding a SQL fragment", e))
    }
}

/// A SQL stage on this executor: its decoded fragment and what its tasks
/// produce.
pub(crate) struct SqlStage {
    engine: Arc<SqlEngine>,
    plan: Arc<dyn ExecutionPlan>,
    output: SqlOutput,
}

impl SqlStage {
    /// Decodes the fragment `plan` once for all the stage's tasks here.
    pub(crate) fn new(
        engine: Arc<SqlEngine>,
        plan: &[u8],
        output: SqlOutput,
    ) -> Result<SqlStage, PipelineError> {
        let plan = engine.decode(plan)?;
        Ok(SqlStage {
            engine,
            plan,
            output,
        })
    }

    /// Runs partition `id.partition` of the fragment and stores or returns
    /// its output. The DataFusion task is registered with `running`, so a
    /// kill aborts it (dropping its streams) and this returns `Killed` at
    /// once; nothing is stored after a kill.
    pub(crate) async fn run(
        &self,
        env: &ExecutorEnv,
        id: TaskId,
        running: &RunningTask,
    ) -> Result<TaskOutput, TaskFailure> {
        let (plan, session) = (self.plan.clone(), self.engine.session.clone());
        let partition = id.partition as usize;
        let disagree = || internal(format!("{id}: fragment and stage output disagree"));
        match &self.output {
            SqlOutput::Files { dir, format } => {
                let format = *format;
                let bytes = self
                    .spawn(env, id, running, async move {
                        write_fragment(plan, partition, &session, format).await
                    })
                    .await?;
                crate::runner::put_task_file(env, dir, &id, format.extension(), bytes).await
            }
            SqlOutput::Shuffle { shuffle } => {
                let spill = riffle_sql::engine::SpillTo {
                    memory: running.ctx.memory.clone(),
                    counters: running.ctx.counters.clone(),
                };
                let produced = self
                    .spawn(env, id, running, async move {
                        run_fragment(plan, partition, &session, Some(spill)).await
                    })
                    .await?;
                let FragmentOutput::Shuffle(encoded) = produced else {
                    return Err(disagree());
                };
                crate::runner::store_map_output(env, &id, *shuffle, encoded).await
            }
            SqlOutput::Result => {
                let produced = self
                    .spawn(env, id, running, async move {
                        run_fragment(plan, partition, &session, None).await
                    })
                    .await?;
                let FragmentOutput::Result(encoded) = produced else {
                    return Err(disagree());
                };
                let bytes = encoded.to_vec().map_err(|e| {
                    TaskFailure::from(PipelineError::Shuffle {
                        source: Box::new(e),
                    })
                })?;
                Ok(TaskOutput::Result(bytes))
            }
        }
    }

    /// Runs `work` on the SQL runtime as a task that killing `running`
    /// aborts; its output only if the task was not killed by the time it
    /// ended, so the caller never stores anything after a kill.
    async fn spawn<T: Send + 'static>(
        &self,
        env: &ExecutorEnv,
        id: TaskId,
        running: &RunningTask,
        work: impl Future<Output = Result<T, DataFusionError>> + Send + 'static,
    ) -> Result<T, TaskFailure> {
        let Some(runtime) = &self.engine.runtime else {
            return Err(internal("SQL runtime is gone".into()));
        };
        let spawned = runtime.spawn(work);
        running.attach_sql(spawned.abort_handle());
        // An aborted task only stops at its next yield point; the kill is
        // reported without waiting for that.
        let joined = tokio::select! {
            joined = spawned => joined,
            () = running.killed() => return Err(killed(id, env.id)),
        };
        // An abort, or an error the DataFusion side hit while being torn
        // down, is the kill's doing.
        if running.is_killed() {
            return Err(killed(id, env.id));
        }
        record_spills(&self.plan, id.partition as usize, &running.ctx.counters);
        joined
            .map_err(|e| internal(format!("SQL task {id} did not finish: {e}")))?
            .map_err(|e| {
                let bad_row = is_bad_row(&e);
                let mut failure = failure(id, e);
                if bad_row {
                    failure
                        .message
                        .push_str(&files_read(&self.plan, id.partition as usize));
                }
                failure
            })
    }
}

/// Adds what the fragment's operators spilled for `partition` (their
/// metrics are kept per partition) to the task's counters.
fn record_spills(
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    counters: &riffle_planner::pipeline::Counters,
) {
    use datafusion::physical_plan::metrics::MetricValue;
    use riffle_planner::pipeline::Counters;
    if let Some(metrics) = plan.metrics() {
        for metric in metrics.iter() {
            if metric.partition() != Some(partition) {
                continue;
            }
            match metric.value() {
                MetricValue::SpilledBytes(n) => {
                    Counters::add(&counters.spilled_bytes, n.value() as u64)
                }
                MetricValue::SpillCount(n) => {
                    Counters::add(&counters.spill_count, n.value() as u64)
                }
                _ => {}
            }
        }
    }
    for child in plan.children() {
        record_spills(child, partition, counters);
    }
}

/// Whether `error` is a reader's complaint about a row of its input (a CSV
/// line with the wrong number of fields, a value that does not parse),
/// whose message names the line but not the file.
fn is_bad_row(error: &DataFusionError) -> bool {
    use riffle_sql::datafusion::arrow::error::ArrowError;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if matches!(
            e.downcast_ref::<ArrowError>(),
            Some(ArrowError::CsvError(_) | ArrowError::ParseError(_) | ArrowError::JsonError(_))
        ) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The files partition `partition` of `plan` reads, for an error about a
/// row: ` (reading FILE)`, or the list when it reads several. A file read
/// from an offset (a large file split between tasks) says so, since the
/// reader counts lines from there.
fn files_read(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> String {
    use riffle_sql::datafusion::datasource::physical_plan::FileScanConfig;
    use riffle_sql::datafusion::datasource::source::DataSourceExec;
    let mut files = Vec::new();
    let mut nodes = vec![plan.clone()];
    while let Some(node) = nodes.pop() {
        nodes.extend(node.children().into_iter().cloned());
        let any: &dyn std::any::Any = node.as_ref();
        let Some(scan) = any.downcast_ref::<DataSourceExec>() else {
            continue;
        };
        let source: &dyn std::any::Any = scan.data_source().as_ref();
        let Some(config) = source.downcast_ref::<FileScanConfig>() else {
            continue;
        };
        if let Some(group) = config.file_groups.get(partition) {
            for file in group.files() {
                let mut name = format!("/{}", file.object_meta.location);
                if let Some(range) = &file.range
                    && range.start > 0
                {
                    name.push_str(&format!(
                        " from byte {} (lines counted from there)",
                        range.start
                    ));
                }
                files.push(name);
            }
        }
    }
    match files.as_slice() {
        [] => String::new(),
        [one] => format!(" (reading {one})"),
        many => format!(" (reading one of {})", many.join(", ")),
    }
}

fn internal(message: String) -> TaskFailure {
    TaskFailure {
        kind: FailureKind::Internal,
        message,
    }
}

/// A DataFusion error as a typed task failure, decided by the types along
/// its chain of sources (a storage error may come wrapped in a Parquet or
/// Arrow error): a Riffle error carried through DataFusion keeps its own
/// kind (a fetch failure stays one); storage trouble and exhausted memory
/// are retried; a plan DataFusion rejects on the executor, or a panic in
/// one of its tasks, is Riffle's bug; an error evaluating rows (a failed
/// cast, an overflow) is the data's.
fn failure(id: TaskId, error: DataFusionError) -> TaskFailure {
    let message = format!("{id}: {}", riffle_planner::report(&error));
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if let Some(pipeline) = e.downcast_ref::<PipelineError>() {
            return TaskFailure {
                kind: pipeline.failure_kind(),
                message,
            };
        }
        if e.is::<object_store::Error>() || e.is::<std::io::Error>() {
            return TaskFailure {
                kind: FailureKind::Retryable,
                message,
            };
        }
        cause = e.source();
    }
    let kind = match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => {
            // Say which setting to change: DataFusion's text names its own.
            return TaskFailure {
                kind: FailureKind::Retryable,
                message: format!(
                    "{message} (the executor's memory pool is RIFFLE_EXECUTOR_MEMORY or `riffle executor --memory`; spill space is RIFFLE_SPILL_DIR and RIFFLE_SPILL_MAX)"
                ),
            };
        }
        DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Internal(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::Substrait(_) => FailureKind::Internal,
        _ => FailureKind::BadInput,
    };
    TaskFailure { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_planner::ids::{JobId, ShuffleId, StageId};

    fn kind(error: DataFusionError) -> FailureKind {
        let id = TaskId {
            job: JobId(0),
            stage: StageId(1),
            partition: 2,
            attempt: 0,
        };
        failure(id, error).kind
    }

    #[test]
    fn failures_are_typed_by_their_causes() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(kind(DataFusionError::IoError(io())), FailureKind::Retryable);
        // A storage error wrapped by the Parquet reader is still storage.
        let wrapped = DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ExternalError(
                Box::new(io()),
            )),
            None,
        );
        assert_eq!(kind(wrapped), FailureKind::Retryable);
        let fetch = PipelineError::FetchFailed {
            shuffle: ShuffleId(3),
            map_partition: 4,
            data_path: "s/map-4/attempt-0.data".into(),
            source: "missing".into(),
        };
        let carried = DataFusionError::Context(
            "reading".into(),
            Box::new(DataFusionError::External(Box::new(fetch))),
        );
        assert!(matches!(
            kind(carried),
            FailureKind::FetchFailed {
                map_partition: 4,
                ..
            }
        ));
        assert_eq!(
            kind(DataFusionError::Plan("no such column".into())),
            FailureKind::Internal
        );
        assert_eq!(
            kind(DataFusionError::ResourcesExhausted("memory".into())),
            FailureKind::Retryable
        );
        assert_eq!(
            kind(DataFusionError::Execution("cast overflow".into())),
            FailureKind::BadInput
        );
    }
}

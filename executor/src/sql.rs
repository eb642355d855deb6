//! SQL tasks: fragments run by DataFusion on a runtime of their own.
//!
//! DataFusion is async and CPU-heavy; its fragments run on a dedicated
//! tokio runtime with one worker per slot, so they neither starve the I/O
//! runtime (heartbeats, RPC) nor run on the rayon pool of Dataset tasks.

use crate::ExecutorEnv;
use riffle_planner::PipelineError;
use riffle_planner::ids::TaskId;
use riffle_planner::task::{FailureKind, SqlOutput, TaskFailure, TaskOutput};
use riffle_shuffle::writer::put_map_output;
use riffle_sql::datafusion::common::DataFusionError;
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use riffle_sql::datafusion::prelude::SessionContext;
use riffle_sql::engine::{FragmentOutput, new_session, run_fragment, write_fragment};
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
        let session = new_session(slots, env.stores.clone(), env.shuffle.clone())
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
        Ok(SqlEngine {
            runtime: Some(runtime),
            session,
        })
    }

    /// Decodes a stage's fragment.
    pub fn decode(&self, plan: &[u8]) -> Result<Arc<dyn ExecutionPlan>, PipelineError> {
        riffle_sql::codec::decode_plan(plan, &self.session.task_ctx())
            .map_err(|e| PipelineError::Codec(format!("decoding a SQL fragment: {e}")))
    }

    /// Runs one partition of `plan` and stores or returns its output.
    pub async fn run(
        &self,
        env: &ExecutorEnv,
        plan: Arc<dyn ExecutionPlan>,
        output: SqlOutput,
        id: TaskId,
    ) -> Result<TaskOutput, TaskFailure> {
        let Some(runtime) = &self.runtime else {
            return Err(internal("SQL runtime is gone".into()));
        };
        let session = self.session.clone();
        let partition = id.partition as usize;
        if let SqlOutput::Files { dir, format } = output {
            let bytes = runtime
                .spawn(async move { write_fragment(plan, partition, &session, format).await })
                .await
                .map_err(|e| internal(format!("SQL task {id} did not finish: {e}")))?
                .map_err(|e| failure(id, e))?;
            return crate::runner::put_task_file(env, &dir, &id, format.extension(), bytes).await;
        }
        let produced = runtime
            .spawn(async move { run_fragment(plan, partition, &session).await })
            .await
            .map_err(|e| internal(format!("SQL task {id} did not finish: {e}")))?
            .map_err(|e| failure(id, e))?;
        match (output, produced) {
            (SqlOutput::Shuffle { shuffle }, FragmentOutput::Shuffle(encoded)) => {
                let path = env
                    .shuffle
                    .data_path(id.job, shuffle, id.partition, id.attempt);
                put_map_output(&env.shuffle, path, encoded)
                    .await
                    .map(TaskOutput::Shuffle)
                    .map_err(|e| TaskFailure {
                        kind: FailureKind::Retryable,
                        message: format!("{id}: {e}"),
                    })
            }
            (SqlOutput::Result, FragmentOutput::Result(encoded)) => {
                Ok(TaskOutput::Result(encoded.to_vec()))
            }
            _ => Err(internal(format!(
                "{id}: fragment and stage output disagree"
            ))),
        }
    }
}

fn internal(message: String) -> TaskFailure {
    TaskFailure {
        kind: FailureKind::Internal,
        message,
    }
}

/// A DataFusion error as a typed task failure.
fn failure(id: TaskId, error: DataFusionError) -> TaskFailure {
    let root = error.find_root();
    if let DataFusionError::External(e) = root
        && let Some(PipelineError::FetchFailed { .. }) = e.downcast_ref::<PipelineError>()
    {
        return TaskFailure {
            kind: FailureKind::Retryable,
            message: format!("{id}: {root}"),
        };
    }
    let kind = match root {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => FailureKind::Retryable,
        _ => FailureKind::BadInput,
    };
    TaskFailure {
        kind,
        message: format!("{id}: {error}"),
    }
}

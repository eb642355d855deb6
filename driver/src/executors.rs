//! Where tasks run: the embedded executor or the registered executor
//! processes, behind one launch interface so the scheduler does not care.

use crate::cluster::{Cluster, RemoteExecutor};
use riffle_executor::Executor;
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::task::{FailureKind, TaskFailure, TaskMetrics, TaskStatus};
use std::sync::Arc;
use tokio::sync::watch;

/// A stage's encoded spec, sent once to each executor that runs its tasks.
pub(crate) struct StageMessage {
    pub(crate) job: JobId,
    pub(crate) stage: StageId,
    /// The stage attempt the spec was planned for.
    pub(crate) attempt: u32,
    pub(crate) bytes: Arc<Vec<u8>>,
}

/// One executor the scheduler can give tasks to.
#[derive(Clone)]
pub(crate) enum ExecutorHandle {
    /// In this process.
    Embedded(Arc<Executor>),
    /// A registered executor process.
    Remote(Arc<RemoteExecutor>),
}

impl ExecutorHandle {
    pub(crate) fn id(&self) -> ExecutorId {
        match self {
            ExecutorHandle::Embedded(e) => e.id(),
            ExecutorHandle::Remote(e) => e.id,
        }
    }

    pub(crate) fn slots(&self) -> usize {
        match self {
            ExecutorHandle::Embedded(e) => e.slots(),
            ExecutorHandle::Remote(e) => e.cores,
        }
    }
}

/// The set of executors of a context.
pub(crate) enum Backend {
    /// One in-process executor; tasks still travel as bytes.
    Embedded(Arc<Executor>),
    /// Executor processes registered with this driver.
    Cluster(Arc<Cluster>),
}

impl Backend {
    /// The executors available now.
    pub(crate) fn executors(&self) -> Vec<ExecutorHandle> {
        match self {
            Backend::Embedded(e) => vec![ExecutorHandle::Embedded(e.clone())],
            Backend::Cluster(c) => c
                .executors()
                .into_iter()
                .map(ExecutorHandle::Remote)
                .collect(),
        }
    }

    /// The executor `id`, if it is registered now.
    pub(crate) fn executor(&self, id: ExecutorId) -> Option<ExecutorHandle> {
        match self {
            Backend::Embedded(e) => (e.id() == id).then(|| ExecutorHandle::Embedded(e.clone())),
            Backend::Cluster(c) => c.executor(id).map(ExecutorHandle::Remote),
        }
    }

    /// A receiver of membership changes (none for the embedded backend,
    /// whose membership never changes).
    pub(crate) fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Cluster(c) => Some(c.subscribe()),
        }
    }

    /// Starts one task on `executor`; the future yields its status, and
    /// every failure (including a lost executor) comes back as a status.
    /// An embedded task is registered as running before this returns, so
    /// a kill sent right after the launch is never lost.
    pub(crate) fn launch(
        &self,
        executor: &ExecutorHandle,
        stage: &StageMessage,
        id: TaskId,
        spec: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, TaskStatus> {
        let executor_id = executor.id();
        let failed = move |kind: FailureKind, message: String| TaskStatus {
            id,
            executor: executor_id,
            result: Err(TaskFailure { kind, message }),
            metrics: TaskMetrics::default(),
        };
        match (self, executor) {
            (Backend::Cluster(cluster), ExecutorHandle::Remote(remote)) => {
                cluster.launch(remote, stage, id, spec)
            }
            (_, ExecutorHandle::Embedded(local)) => {
                // SAFETY: an embedded executor lives in the driver's own
                // process, and the scheduler encoded these bytes here.
                if !local.has_stage(stage.job, stage.stage, Some(stage.attempt))
                    && let Err(e) = unsafe { local.register_stage(&stage.bytes) }
                {
                    let status = failed(FailureKind::Internal, e.to_string());
                    return Box::pin(async move { status });
                }
                match local.prepare(&spec) {
                    Ok(task) => Box::pin(task.run()),
                    Err(e) => {
                        let status = failed(FailureKind::Internal, e.to_string());
                        Box::pin(async move { status })
                    }
                }
            }
            (Backend::Embedded(_), ExecutorHandle::Remote(_)) => {
                let status = failed(
                    FailureKind::Internal,
                    "remote executor in an embedded context".into(),
                );
                Box::pin(async move { status })
            }
        }
    }

    /// Kills running task attempts on `executor` (best effort: an attempt
    /// that already ended reports its real status).
    pub(crate) async fn kill(&self, executor: ExecutorId, tasks: Vec<TaskId>) {
        match self {
            Backend::Embedded(e) if e.id() == executor => {
                e.cancel_tasks(&tasks);
            }
            Backend::Embedded(_) => {}
            Backend::Cluster(c) => c.cancel_tasks(executor, tasks).await,
        }
    }

    /// Lets executors forget a finished job.
    pub(crate) async fn remove_job(&self, job: JobId) {
        match self {
            Backend::Embedded(e) => e.remove_job(job),
            Backend::Cluster(c) => c.remove_job(job).await,
        }
    }
}

//! What the scheduler needs from the executors: who is there, launching a
//! task, killing tasks, forgetting a job. The context's [`Backend`]
//! (embedded or cluster) implements it; scheduler tests use a fake.

use crate::executors::{Backend, ExecutorHandle, StageMessage};
use futures::future::BoxFuture;
use riffle_planner::ids::{ExecutorId, JobId, TaskId};
use riffle_planner::task::{FailureKind, TaskFailure, TaskMetrics, TaskStatus};
use std::sync::Arc;
use tokio::sync::watch;

/// The executors as the scheduler sees them.
pub(crate) trait TaskBackend: Send + Sync + 'static {
    /// The executors available now, with their task slots.
    fn executors(&self) -> Vec<(ExecutorId, usize)>;

    /// Where `executor` listens (`host:port`), or `embedded`.
    fn address(&self, executor: ExecutorId) -> String;

    /// A receiver woken on every membership change (`None` when the
    /// membership never changes).
    fn subscribe(&self) -> Option<watch::Receiver<u64>>;

    /// Runs one task on `executor`; every failure, including losing the
    /// executor, comes back as a status.
    fn launch(
        self: Arc<Self>,
        executor: ExecutorId,
        stage: Arc<StageMessage>,
        id: TaskId,
        spec: Vec<u8>,
    ) -> BoxFuture<'static, TaskStatus>;

    /// Asks `executor` to kill running task attempts (best effort: a task
    /// that already finished reports its real status).
    fn kill(self: Arc<Self>, executor: ExecutorId, tasks: Vec<TaskId>) -> BoxFuture<'static, ()>;

    /// Lets executors forget a finished job's stages.
    fn remove_job(self: Arc<Self>, job: JobId) -> BoxFuture<'static, ()>;
}

/// A status for a task whose executor is gone (or was never reached): it
/// reruns elsewhere without counting against the task.
pub(crate) fn lost(id: TaskId, executor: ExecutorId, message: String) -> TaskStatus {
    failed(id, executor, FailureKind::ExecutorLost, message)
}

/// A failed status the driver makes up for a task (no executor reported).
pub(crate) fn failed(
    id: TaskId,
    executor: ExecutorId,
    kind: FailureKind,
    message: String,
) -> TaskStatus {
    TaskStatus {
        id,
        executor,
        result: Err(TaskFailure { kind, message }),
        metrics: TaskMetrics::default(),
    }
}

impl TaskBackend for Backend {
    fn executors(&self) -> Vec<(ExecutorId, usize)> {
        Backend::executors(self)
            .iter()
            .map(|e| (e.id(), e.slots()))
            .collect()
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Backend::subscribe(self)
    }

    fn address(&self, executor: ExecutorId) -> String {
        match Backend::executor(self, executor) {
            Some(ExecutorHandle::Remote(e)) => e.address.clone(),
            Some(ExecutorHandle::Embedded(_)) => "embedded".to_string(),
            None => "gone".to_string(),
        }
    }

    fn launch(
        self: Arc<Self>,
        executor: ExecutorId,
        stage: Arc<StageMessage>,
        id: TaskId,
        spec: Vec<u8>,
    ) -> BoxFuture<'static, TaskStatus> {
        let Some(handle) = Backend::executor(&self, executor) else {
            let status = lost(id, executor, format!("{executor} is gone"));
            return Box::pin(async move { status });
        };
        Backend::launch(&self, &handle, &stage, id, spec)
    }

    fn kill(self: Arc<Self>, executor: ExecutorId, tasks: Vec<TaskId>) -> BoxFuture<'static, ()> {
        Box::pin(async move { Backend::kill(&self, executor, tasks).await })
    }

    fn remove_job(self: Arc<Self>, job: JobId) -> BoxFuture<'static, ()> {
        Box::pin(async move { Backend::remove_job(&self, job).await })
    }
}

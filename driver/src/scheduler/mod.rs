//! The scheduler: turns a job into stages, runs their tasks on the
//! executors, and reports what happens as events.
//!
//! Structured like Spark's `DAGScheduler` / `TaskSetManager` /
//! `MapOutputTracker` and Ballista's `ExecutionGraph`:
//!
//! - [`graph`]: the stage graph of a job, built once from the Dataset
//!   lineage or the SQL stages;
//! - [`map_output`]: which map partition has output where, from which
//!   attempt; every attempt remembered for cleanup;
//! - [`stage`]: stage states and planning a stage's tasks;
//! - [`task_set`]: a stage attempt's tasks, retries and speculative
//!   copies;
//! - [`policy`]: the retry limits and speculation settings;
//! - [`job`]: one job's state and how it ends;
//! - [`event_loop`]: the loop that alone owns all of it, fed by commands;
//! - [`commit`]: output commit (`part-NNNNN` files, `_SUCCESS`, Hive's
//!   `INSERT OVERWRITE DIRECTORY`);
//! - [`events`]: what the loop publishes, and the summary listener;
//! - [`backend`]: what the loop needs from the executors.
//!
//! [`Scheduler`] is the handle the context keeps: it submits jobs (each
//! returns a [`JobHandle`]), cancels them and subscribes to events.

pub(crate) mod backend;
pub(crate) mod commit;
pub(crate) mod event_loop;
pub mod events;
pub(crate) mod graph;
pub(crate) mod job;
pub(crate) mod map_output;
pub(crate) mod policy;
pub(crate) mod stage;
pub(crate) mod task_set;
#[cfg(test)]
mod tests;

pub use event_loop::SchedulingMode;
pub(crate) use graph::{FinalSink, JobSpec};
pub(crate) use policy::Policy;
pub use policy::Speculation;

use crate::context::JobSummary;
use crate::error::DriverError;
use event_loop::{Command, EventLoop, SchedulerDeps};
use events::{EVENT_BUFFER, EventListener, SchedulerEvent, SummaryListener};
use graph::StageGraph;
use job::ActiveJob;
use riffle_planner::ids::JobId;
use riffle_planner::task::TaskOutput;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskCx, Poll};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The context's handle to its scheduler's event loop.
#[derive(Clone)]
pub(crate) struct Scheduler {
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<SchedulerEvent>,
    next_job: Arc<AtomicU32>,
    /// Jobs submitted and not yet finished (kept by the loop).
    active: Arc<AtomicUsize>,
}

impl Scheduler {
    /// Starts the event loop on `runtime`; `last_job` receives the
    /// summary of every job that ends, and `listeners` every event.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        deps: SchedulerDeps,
        last_job: Arc<Mutex<JobSummary>>,
        listeners: Vec<Box<dyn EventListener>>,
    ) -> Scheduler {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let active = Arc::new(AtomicUsize::new(0));
        let mut all: Vec<Box<dyn EventListener>> = vec![Box::new(SummaryListener::new(last_job))];
        all.extend(listeners);
        let event_loop = EventLoop::new(
            Arc::new(deps),
            tx.clone(),
            all,
            events.clone(),
            active.clone(),
        );
        runtime.spawn(event_loop.run(rx));
        Scheduler {
            tx,
            events,
            next_job: Arc::new(AtomicU32::new(0)),
            active,
        }
    }

    /// Submits a job; `finish` turns the final stage's outputs (one per
    /// partition, in partition order) into what the caller gets. Never
    /// blocks: the job runs on the event loop.
    pub(crate) fn submit<R>(
        &self,
        spec: JobSpec,
        finish: impl FnOnce(Vec<TaskOutput>) -> Result<R, DriverError> + Send + 'static,
    ) -> JobHandle<R> {
        let id = JobId(self.next_job.fetch_add(1, Ordering::Relaxed));
        let (reply, rx) = oneshot::channel();
        let state = match StageGraph::build(spec) {
            Ok(graph) => {
                let description =
                    crate::jobs::job_description().unwrap_or_else(|| graph.default_description());
                let job = ActiveJob::new(id, graph, description, reply);
                match self.tx.send(Command::Submit(Box::new(job))) {
                    Ok(()) => HandleState::Waiting(rx),
                    Err(_) => HandleState::Ready(Some(Err(stopped()))),
                }
            }
            Err(e) => HandleState::Ready(Some(Err(e))),
        };
        JobHandle {
            job: id,
            scheduler: self.clone(),
            state,
            finish: Some(Box::new(finish)),
            keep_alive: None,
        }
    }

    /// A handle to work done outside the executors (a query the driver
    /// ran itself): it resolves at once to `result`.
    pub(crate) fn finished<R: Send + 'static>(
        &self,
        result: Result<R, DriverError>,
    ) -> JobHandle<R> {
        JobHandle {
            job: JobId(self.next_job.fetch_add(1, Ordering::Relaxed)),
            scheduler: self.clone(),
            state: HandleState::Ready(Some(Ok(Vec::new()))),
            finish: Some(Box::new(move |_| result)),
            keep_alive: None,
        }
    }

    /// Cancels one job, or every active job (`None`).
    pub(crate) fn cancel(&self, job: Option<JobId>) {
        let _ = self.tx.send(Command::Cancel(job));
    }

    /// Jobs submitted and not yet finished.
    pub(crate) fn active_jobs(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A new receiver of every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.events.subscribe()
    }
}

fn stopped() -> DriverError {
    DriverError::Internal("the scheduler has stopped (the context was dropped)".into())
}

enum HandleState {
    Waiting(oneshot::Receiver<Result<Vec<TaskOutput>, DriverError>>),
    Ready(Option<Result<Vec<TaskOutput>, DriverError>>),
}

type Finish<R> = Box<dyn FnOnce(Vec<TaskOutput>) -> Result<R, DriverError> + Send>;

/// A submitted job: await it (it is a `Future` of the action's result),
/// block on it with [`JobHandle::wait`], or [`JobHandle::cancel`] it.
///
/// Dropping the handle does not cancel the job (like a tokio
/// `JoinHandle`): it runs to its end and its output is committed.
#[must_use = "a job runs whether or not its handle is awaited; await or wait() to get its result"]
pub struct JobHandle<R> {
    job: JobId,
    scheduler: Scheduler,
    state: HandleState,
    finish: Option<Finish<R>>,
    /// Keeps the context (its runtime, executors and stores) alive while
    /// the job may still run, even if the caller drops its `Context`.
    keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<R> JobHandle<R> {
    /// Keeps `owner` (the context) alive as long as the handle.
    pub(crate) fn keep_alive(mut self, owner: impl std::any::Any + Send + Sync) -> Self {
        self.keep_alive = Some(Box::new(owner));
        self
    }

    /// The same job, with `then` applied to its result when it succeeds
    /// (where the handle is polled: keep `then` short, or give it a thread).
    pub(crate) fn and_then<S>(
        mut self,
        then: impl FnOnce(R) -> Result<S, DriverError> + Send + 'static,
    ) -> JobHandle<S>
    where
        R: 'static,
    {
        let finish = self.finish.take();
        JobHandle {
            job: self.job,
            scheduler: self.scheduler.clone(),
            state: std::mem::replace(&mut self.state, HandleState::Ready(None)),
            finish: Some(Box::new(move |outputs| match finish {
                Some(finish) => finish(outputs).and_then(then),
                None => Err(polled_twice()),
            })),
            keep_alive: self.keep_alive.take(),
        }
    }

    /// The job's id (as in events, logs and `Context::cancel_job`).
    pub fn id(&self) -> JobId {
        self.job
    }

    /// Asks the scheduler to cancel the job: its running tasks are killed,
    /// its shuffle objects and uncommitted files deleted, and the handle
    /// resolves to [`DriverError::Cancelled`]. Cancelling a job whose
    /// tasks have all finished (it may still be committing) does nothing:
    /// the handle resolves to its result.
    pub fn cancel(&self) {
        self.scheduler.cancel(Some(self.job));
    }

    /// Blocks the calling thread until the job ends. Safe to call from
    /// any thread, also inside a tokio runtime (it does not need the
    /// caller's runtime; the job runs on the context's own).
    pub fn wait(self) -> Result<R, DriverError> {
        futures::executor::block_on(self)
    }
}

impl<R> Future for JobHandle<R> {
    type Output = Result<R, DriverError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let outcome = match &mut self.state {
            HandleState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(outcome)) => outcome,
                Poll::Ready(Err(_)) => Err(stopped()),
            },
            HandleState::Ready(outcome) => outcome.take().unwrap_or_else(|| Err(polled_twice())),
        };
        self.state = HandleState::Ready(None);
        let Some(finish) = self.finish.take() else {
            return Poll::Ready(Err(polled_twice()));
        };
        Poll::Ready(outcome.and_then(finish))
    }
}

fn polled_twice() -> DriverError {
    DriverError::Internal("a JobHandle was polled after it completed".into())
}

/// The bytes of a result task.
pub(crate) fn result_bytes(output: TaskOutput) -> Result<Vec<u8>, DriverError> {
    match output {
        TaskOutput::Result(bytes) => Ok(bytes),
        _ => Err(DriverError::Internal(
            "result task returned no bytes".into(),
        )),
    }
}

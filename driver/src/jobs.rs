//! How the context's actions reach the scheduler: blocking and async
//! submission, cancellation, events.
//!
//! Every action has a blocking form (`collect`) that waits for its job on
//! the calling thread, and the main ones an async form (`collect_async`)
//! returning a [`JobHandle`], which is a `Future` and can also be
//! cancelled or waited on from another thread. Both work from any thread,
//! including inside a tokio runtime: the jobs run on the context's own
//! runtime.

use crate::context::Context;
use crate::dataset::Node;
use crate::error::DriverError;
use crate::scheduler::events::SchedulerEvent;
use crate::scheduler::{FinalSink, JobHandle, JobSpec};
use riffle_planner::ids::JobId;
use riffle_planner::task::{FileFormat, SqlOutput, TaskOutput};
use riffle_sql::stages::SqlStage;
use std::sync::Arc;

thread_local! {
    /// The description the next jobs submitted from this thread get
    /// (Spark's `spark.job.description` local property).
    static JOB_DESCRIPTION: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// The description set on this thread, if any.
pub(crate) fn job_description() -> Option<String> {
    JOB_DESCRIPTION.with(|d| d.borrow().clone())
}

/// Runs `f` with `description` for the jobs it submits, unless the caller
/// set one of their own (which wins, as in Spark).
pub(crate) fn with_job_description<R>(description: &str, f: impl FnOnce() -> R) -> R {
    if job_description().is_some() {
        return f();
    }
    JOB_DESCRIPTION.with(|d| *d.borrow_mut() = Some(description.to_string()));
    let result = f();
    JOB_DESCRIPTION.with(|d| *d.borrow_mut() = None);
    result
}

impl Context {
    /// Sets the description of the jobs this thread submits from now on
    /// (`None` clears it), as the web UI, the event log and progress bars
    /// show them; like Spark's `SparkContext.setJobDescription`, it is
    /// per thread. Without one a job is described by its final stage's
    /// operators, or its SQL text.
    pub fn set_job_description(&self, description: Option<&str>) {
        JOB_DESCRIPTION.with(|d| *d.borrow_mut() = description.map(str::to_string));
    }

    /// Submits `spec`; the handle keeps this context alive until it is
    /// dropped, so a job never loses its runtime or executors mid-way.
    pub(crate) fn submit<R>(
        &self,
        spec: JobSpec,
        finish: impl FnOnce(Vec<TaskOutput>) -> Result<R, DriverError> + Send + 'static,
    ) -> JobHandle<R> {
        self.inner
            .scheduler()
            .submit(spec, finish)
            .keep_alive(self.clone())
    }

    /// Submits a Dataset job computing `node` into `sink`; `finish` gets
    /// one output per partition, in partition order.
    pub(crate) fn submit_dataset<R>(
        &self,
        node: &Arc<Node>,
        sink: FinalSink,
        finish: impl FnOnce(Vec<TaskOutput>) -> Result<R, DriverError> + Send + 'static,
    ) -> JobHandle<R> {
        let spec = JobSpec::Dataset {
            node: node.clone(),
            sink,
        };
        self.submit(spec, finish)
    }

    /// Submits the stages of a distributed SQL plan; the handle yields the
    /// result stage's batches, in partition order.
    pub(crate) fn submit_sql(
        &self,
        stages: Vec<SqlStage>,
    ) -> JobHandle<Vec<arrow_array::RecordBatch>> {
        let spec = JobSpec::Sql {
            stages,
            output: SqlOutput::Result,
        };
        self.submit(spec, |outputs| {
            let mut batches = Vec::new();
            for output in outputs {
                let bytes = crate::scheduler::result_bytes(output)?;
                if bytes.is_empty() {
                    continue;
                }
                let decoded =
                    riffle_shuffle::reader::decode_batches("result", bytes::Bytes::from(bytes))
                        .map_err(|e| DriverError::Internal(e.to_string()))?;
                batches.extend(decoded);
            }
            Ok(batches)
        })
    }

    /// Runs the stages of a distributed SQL plan with each result task
    /// writing one file in `format` under `dir` (a URL); the files appear
    /// as `part-NNNNN.<ext>` only once every task has succeeded.
    pub(crate) fn write_sql(
        &self,
        stages: Vec<SqlStage>,
        dir: &str,
        format: FileFormat,
    ) -> Result<(), DriverError> {
        let spec = JobSpec::Sql {
            stages,
            output: SqlOutput::Files {
                dir: dir.to_string(),
                format,
            },
        };
        self.submit(spec, |_| Ok(())).wait()
    }

    /// Cancels a running job: its tasks are killed, its shuffle objects
    /// and uncommitted output deleted, and its action returns
    /// [`DriverError::Cancelled`]. A job that has ended is left alone.
    pub fn cancel_job(&self, job: JobId) {
        self.inner.scheduler().cancel(Some(job));
    }

    /// Cancels every job running now.
    pub fn cancel_all(&self) {
        self.inner.scheduler().cancel(None);
    }

    /// A receiver of every scheduler event from now on (jobs, stages,
    /// tasks, executors). It never slows the scheduler: a receiver more
    /// than [`crate::scheduler::events::EVENT_BUFFER`] events behind
    /// loses the oldest and is told how many (`RecvError::Lagged`).
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<SchedulerEvent> {
        self.inner.scheduler().subscribe()
    }

    /// Makes Ctrl-C (SIGINT) cancel every running job; the interrupted
    /// actions return [`DriverError::Cancelled`] and the program goes on.
    /// With `exit_on_second` (a batch program), a second Ctrl-C while the
    /// cancelled jobs wind down, or a Ctrl-C while no job runs, exits the
    /// process at once with status 130, as a shell would. Once called,
    /// SIGINT no longer ends the process by default (tokio keeps its
    /// handler installed for the life of the process).
    pub fn cancel_on_ctrl_c(&self, exit_on_second: bool) -> Result<(), DriverError> {
        use tokio::signal::unix::{SignalKind, signal};
        let scheduler = self.inner.scheduler().clone();
        // One stream for the whole life of the handler: a press between
        // two turns of the loop is queued, not lost.
        let mut interrupts = {
            let _entered = self.inner.runtime.handle().enter();
            signal(SignalKind::interrupt())
                .map_err(|e| DriverError::Config(format!("cannot handle Ctrl-C: {e}")))?
        };
        self.inner.runtime.handle().spawn(async move {
            let mut interrupted = false;
            while interrupts.recv().await.is_some() {
                let running = scheduler.active_jobs();
                if exit_on_second && (interrupted || running == 0) {
                    eprintln!("interrupted: exiting");
                    std::process::exit(130);
                }
                interrupted = running > 0;
                if interrupted {
                    eprintln!(
                        "interrupted: cancelling {running} running job(s){}",
                        if exit_on_second {
                            " (Ctrl-C again to exit at once)"
                        } else {
                            ""
                        }
                    );
                }
                scheduler.cancel(None);
            }
        });
        Ok(())
    }
}

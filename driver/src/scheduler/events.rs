//! Scheduler events and the listener that turns them into job summaries.
//!
//! The event loop publishes every state change as a [`SchedulerEvent`] on
//! a broadcast channel (Spark's `LiveListenerBus`): sending never blocks
//! the scheduler, and a subscriber that falls more than
//! [`EVENT_BUFFER`] events behind skips the oldest (it sees
//! `RecvError::Lagged` with the number lost). The summary behind
//! `ctx.last_job()` cannot afford to lose events, so it is built by a
//! listener the loop calls directly, before broadcasting.

use crate::context::{JobSummary, StageSummary};
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::task::{FailureKind, TaskFailure, TaskMetrics};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 16 * 1024;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// Every stage finished and the output was committed.
    Succeeded,
    /// A task failed for good, or planning or committing failed; the
    /// message is the error the caller got.
    Failed(String),
    /// Cancelled by `cancel_job`, `cancel_all`, a handle or Ctrl-C.
    Cancelled,
}

/// One stage of a job's stage graph, as [`SchedulerEvent::JobStarted`]
/// announces it: enough to draw the job's DAG (stages as boxes, each
/// parent -> stage pair a shuffle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInfo {
    /// The stage (ids are per job).
    pub stage: StageId,
    /// What it computes: its operators and its sink.
    pub name: String,
    /// The stages whose shuffle output it reads.
    pub parents: Vec<StageId>,
    /// Its partitions (tasks per attempt).
    pub partitions: usize,
}

/// One change of scheduler state. Stage ids are per job; a stage that is
/// resubmitted keeps its id and gets a new `attempt`.
///
/// Events serialize (serde, tagged by `type`, durations in microseconds)
/// so that the event log can record them; see `ui::event_log` for the
/// versioned line format around them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SchedulerEvent {
    /// A job was accepted.
    JobStarted {
        /// The job.
        job: JobId,
        /// What started it: the action and its lineage, the SQL text, or
        /// the caller's `Context::set_job_description`.
        description: String,
        /// Its stage graph, parents before children (some stages may be
        /// skipped later).
        stages: Vec<StageInfo>,
    },
    /// A job ended (after its output was committed or aborted and its
    /// shuffle objects deleted).
    JobEnded {
        /// The job.
        job: JobId,
        /// Wall time from submission.
        #[serde(with = "micros")]
        elapsed: Duration,
        /// How it ended.
        outcome: JobOutcome,
    },
    /// A stage attempt's tasks were created (its parents are available).
    StageSubmitted {
        /// The job.
        job: JobId,
        /// The stage.
        stage: StageId,
        /// Stage attempt, from 0.
        attempt: u32,
        /// Tasks in the stage (one per partition).
        tasks: usize,
        /// What the stage computes (its last operator and its sink).
        name: String,
    },
    /// A stage attempt ended: every task succeeded (`failure` is `None`),
    /// or the job failed or was cancelled while it ran.
    StageCompleted {
        /// The job.
        job: JobId,
        /// The stage.
        stage: StageId,
        /// Stage attempt.
        attempt: u32,
        /// Wall time from submission.
        #[serde(with = "micros")]
        elapsed: Duration,
        /// Why it did not finish, if it did not.
        failure: Option<String>,
    },
    /// A task attempt was sent to an executor.
    TaskStarted {
        /// The task attempt.
        task: TaskId,
        /// Where it runs.
        executor: ExecutorId,
        /// The stage attempt it belongs to (above 0: a recomputation).
        stage_attempt: u32,
        /// Whether it is a speculative copy of a running attempt.
        speculative: bool,
    },
    /// A task attempt ended.
    TaskEnded {
        /// The task attempt.
        task: TaskId,
        /// Where it ran.
        executor: ExecutorId,
        /// Wall time from launch to status, as seen by the driver.
        #[serde(with = "micros")]
        duration: Duration,
        /// Counters the executor measured.
        metrics: TaskMetrics,
        /// `None` on success; a `Killed` kind for a cancelled attempt.
        failure: Option<TaskFailure>,
    },
    /// An executor registered (or, embedded, the context started).
    ExecutorAdded {
        /// The executor.
        executor: ExecutorId,
        /// Its task slots.
        slots: usize,
        /// Where it listens (`host:port`), or `embedded`.
        address: String,
    },
    /// An executor left (lost, stopped or shut down).
    ExecutorRemoved {
        /// The executor.
        executor: ExecutorId,
    },
}

/// Durations as whole microseconds in serialized events.
mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

/// Something the event loop tells every event, in order, before it
/// broadcasts them: it must not block (hand slow work to a task).
pub(crate) trait EventListener: Send {
    /// Called once per event, in the order the scheduler made them.
    fn on_event(&mut self, event: &SchedulerEvent);
}

/// Builds each job's [`JobSummary`] from its events and keeps the last
/// ended one for `ctx.last_job()`.
pub(crate) struct SummaryListener {
    running: HashMap<JobId, JobSummary>,
    /// The stage attempt of each running task attempt, so that its end
    /// counts towards the stage attempt it belongs to.
    stage_attempts: HashMap<TaskId, u32>,
    last: Arc<Mutex<JobSummary>>,
}

impl SummaryListener {
    pub(crate) fn new(last: Arc<Mutex<JobSummary>>) -> Self {
        SummaryListener {
            running: HashMap::new(),
            stage_attempts: HashMap::new(),
            last,
        }
    }
}

impl EventListener for SummaryListener {
    fn on_event(&mut self, event: &SchedulerEvent) {
        match event {
            SchedulerEvent::JobStarted { job, .. } => {
                self.running.insert(*job, JobSummary::default());
            }
            SchedulerEvent::StageSubmitted {
                job,
                stage,
                attempt,
                ..
            } => {
                if let Some(s) = self.running.get_mut(job) {
                    s.stages += 1;
                    s.resubmitted_stages += usize::from(*attempt > 0);
                    s.stage_summaries.push(StageSummary {
                        stage: *stage,
                        attempt: *attempt,
                        ..Default::default()
                    });
                }
            }
            SchedulerEvent::StageCompleted {
                job,
                stage,
                attempt,
                elapsed,
                ..
            } => {
                if let Some(st) = self.stage(*job, *stage, *attempt) {
                    st.elapsed = *elapsed;
                }
            }
            SchedulerEvent::TaskStarted {
                task,
                stage_attempt,
                speculative,
                ..
            } => {
                self.stage_attempts.insert(*task, *stage_attempt);
                if let Some(s) = self.running.get_mut(&task.job) {
                    s.recomputed_tasks += usize::from(*stage_attempt > 0);
                    s.speculative_tasks += usize::from(*speculative);
                }
            }
            SchedulerEvent::TaskEnded {
                task,
                executor,
                metrics: m,
                failure,
                ..
            } => {
                let run = Duration::from_micros(m.run_micros);
                let attempt = self.stage_attempts.remove(task).unwrap_or_default();
                if let Some(s) = self.running.get_mut(&task.job) {
                    match failure.as_ref().map(|f| &f.kind) {
                        Some(FailureKind::Killed) => s.killed_tasks += 1,
                        Some(_) => s.failed_tasks += 1,
                        None => {}
                    }
                    s.tasks += 1;
                    *s.tasks_per_executor.entry(*executor).or_default() += 1;
                    s.task_time += run;
                    s.records_read += m.records_read;
                    s.bytes_read += m.bytes_read;
                    s.shuffle_bytes_written += m.shuffle_bytes_written;
                    s.invalid_utf8_lines += m.invalid_utf8_lines;
                    s.spilled_bytes += m.spilled_bytes;
                    s.spill_count += m.spill_count;
                }
                if let Some(st) = self.stage(task.job, task.stage, attempt) {
                    st.tasks += 1;
                    st.task_time += run;
                    st.records_read += m.records_read;
                    st.bytes_read += m.bytes_read;
                    st.shuffle_bytes_read += m.shuffle_bytes_read;
                    st.shuffle_records_written += m.shuffle_records_written;
                    st.shuffle_bytes_written += m.shuffle_bytes_written;
                    st.spilled_bytes += m.spilled_bytes;
                    st.spill_count += m.spill_count;
                }
            }
            SchedulerEvent::JobEnded { job, elapsed, .. } => {
                self.stage_attempts.retain(|t, _| t.job != *job);
                if let Some(mut s) = self.running.remove(job) {
                    s.elapsed = *elapsed;
                    if s.invalid_utf8_lines > 0 {
                        tracing::warn!(
                            lines = s.invalid_utf8_lines,
                            "input lines were not valid UTF-8; invalid bytes were replaced with U+FFFD"
                        );
                    }
                    tracing::info!("{job}: {s}");
                    if let Ok(mut last) = self.last.lock() {
                        *last = s;
                    }
                }
            }
            SchedulerEvent::ExecutorAdded { .. } | SchedulerEvent::ExecutorRemoved { .. } => {}
        }
    }
}

impl SummaryListener {
    fn stage(&mut self, job: JobId, stage: StageId, attempt: u32) -> Option<&mut StageSummary> {
        self.running
            .get_mut(&job)?
            .stage_summaries
            .iter_mut()
            .rev()
            .find(|s| s.stage == stage && s.attempt == attempt)
    }
}

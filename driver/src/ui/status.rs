//! The application's state as the web UI and its JSON API show it, folded
//! from scheduler events (Spark's `AppStatusStore` / `AppStatusListener`).
//!
//! The same [`AppStatus`] serves the live UI (fed by the event loop) and
//! the history server (fed by an event log), so both answer alike. Every
//! event is applied with the wall-clock time it happened at, in
//! milliseconds since the Unix epoch; the live listener stamps it, the
//! event log records it.

use crate::scheduler::events::{JobOutcome, SchedulerEvent, StageInfo};
use riffle_planner::ids::{ExecutorId, JobId, StageId};
use riffle_planner::task::{FailureKind, TaskMetrics};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Finished jobs kept (Spark's `spark.ui.retainedJobs` is 1,000); the
/// oldest are dropped first.
pub const RETAINED_JOBS: usize = 1000;

/// What the application is: shown in the UI's header.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AppInfo {
    /// The application id (`app-<started_ms>-<pid>`), also the event log's
    /// file name.
    pub id: String,
    /// Always `riffle`.
    pub name: String,
    /// Riffle's version.
    pub version: String,
    /// The master the driver runs (`local[2]`, `local-cluster[2,1]`, ...).
    pub master: String,
    /// When the driver started, in Unix milliseconds.
    pub started_ms: u64,
    /// When the application ended, if it did.
    pub ended_ms: Option<u64>,
    /// Whether this is a running driver (`false`: a replayed event log).
    pub live: bool,
}

/// A job row (`GET /api/v1/jobs`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobRow {
    /// The job id.
    pub id: u32,
    /// The action and lineage, the SQL text, or the caller's description.
    pub description: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Unix milliseconds.
    pub submitted_ms: u64,
    /// Milliseconds from submission to the end (or to now, if running).
    pub duration_ms: u64,
    /// Stages in the job's graph.
    pub stages_total: usize,
    /// Stages whose output is available.
    pub stages_done: usize,
    /// Tasks of the stage attempts submitted so far.
    pub tasks_total: usize,
    /// Task attempts that succeeded.
    pub tasks_done: usize,
    /// Task attempts that failed (not counting killed ones).
    pub tasks_failed: usize,
    /// The error the caller got, for a failed job.
    pub failure: Option<String>,
}

/// A node of a job's stage DAG (`GET /api/v1/jobs/{id}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageNode {
    /// The stage id (per job).
    pub id: u32,
    /// What it computes.
    pub name: String,
    /// Parent stages; each parent -> stage pair is a shuffle.
    pub parents: Vec<u32>,
    /// Tasks per attempt.
    pub partitions: usize,
    /// `waiting`, `running`, `available`, `failed` or `skipped`.
    pub state: &'static str,
    /// Stage attempts submitted.
    pub attempts: u32,
}

/// A job with its DAG.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobDetail {
    /// The job row.
    #[serde(flatten)]
    pub job: JobRow,
    /// Its stages, parents first.
    pub stages: Vec<StageNode>,
}

/// Counters summed over a stage attempt's task attempts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Records the tasks' sources produced.
    pub records_read: u64,
    /// Bytes read from files or shuffle.
    pub bytes_read: u64,
    /// Bytes fetched from shuffle blocks.
    pub shuffle_read_bytes: u64,
    /// Bytes of shuffle output written.
    pub shuffle_write_bytes: u64,
    /// Records of shuffle output written.
    pub shuffle_records_written: u64,
    /// Bytes spilled to disk (Spark's "Spill (Disk)").
    pub spill_bytes: u64,
    /// Spill files written.
    pub spill_count: u64,
}

impl Counters {
    fn add(&mut self, m: &TaskMetrics) {
        self.records_read += m.records_read;
        self.bytes_read += m.bytes_read;
        self.shuffle_read_bytes += m.shuffle_bytes_read;
        self.shuffle_write_bytes += m.shuffle_bytes_written;
        self.shuffle_records_written += m.shuffle_records_written;
        self.spill_bytes += m.spilled_bytes;
        self.spill_count += m.spill_count;
    }

    fn of(m: &TaskMetrics) -> Self {
        let mut c = Counters::default();
        c.add(m);
        c
    }
}

/// A stage attempt row (`GET /api/v1/stages`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageRow {
    /// The job.
    pub job: u32,
    /// The stage (per job).
    pub stage: u32,
    /// The stage attempt, from 0.
    pub attempt: u32,
    /// What it computes.
    pub name: String,
    /// `running`, `available` or `failed`.
    pub state: &'static str,
    /// Tasks in the attempt.
    pub tasks_total: usize,
    /// Task attempts that succeeded.
    pub tasks_done: usize,
    /// Task attempts running now.
    pub tasks_running: usize,
    /// Task attempts that failed.
    pub tasks_failed: usize,
    /// Task attempts killed (cancelled, or losing speculative copies).
    pub tasks_killed: usize,
    /// Unix milliseconds.
    pub submitted_ms: u64,
    /// Milliseconds from submission to completion (or to now).
    pub duration_ms: u64,
    /// Summed task counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Why the attempt did not finish, if it did not.
    pub failure: Option<String>,
}

/// One task attempt (`GET /api/v1/jobs/{job}/stages/{stage}/{attempt}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskRow {
    /// The partition.
    pub partition: u32,
    /// The task attempt, from 0.
    pub attempt: u32,
    /// Where it ran (`executor-N`).
    pub executor: String,
    /// Whether it was a speculative copy.
    pub speculative: bool,
    /// `running`, `succeeded`, `failed` or `killed`.
    pub status: &'static str,
    /// Unix milliseconds.
    pub launched_ms: u64,
    /// Milliseconds from launch to its status (or to now).
    pub duration_ms: u64,
    /// The task's counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// The failure kind (`Retryable`, `FetchFailed`, ...), if it failed.
    pub failure_kind: Option<String>,
    /// The failure message, if it failed.
    pub failure: Option<String>,
}

/// Task-duration quantiles of a stage attempt's finished tasks, in
/// milliseconds (Spark's stage page summary).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quantiles {
    /// Shortest.
    pub min: u64,
    /// 25th percentile.
    pub p25: u64,
    /// Median.
    pub median: u64,
    /// 75th percentile.
    pub p75: u64,
    /// Longest.
    pub max: u64,
}

/// A stage attempt with its tasks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageDetail {
    /// The stage row.
    #[serde(flatten)]
    pub stage: StageRow,
    /// Its task attempts, by partition then attempt.
    pub tasks: Vec<TaskRow>,
    /// Duration quantiles of its succeeded tasks; `None` before any.
    pub duration_quantiles: Option<Quantiles>,
}

/// An executor row (`GET /api/v1/executors`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecutorRow {
    /// `executor-N`.
    pub id: String,
    /// `host:port`, or `embedded`.
    pub address: String,
    /// Task slots.
    pub cores: usize,
    /// `active` or `lost`.
    pub state: &'static str,
    /// Task attempts it finished (any outcome).
    pub tasks_run: usize,
    /// Task attempts that failed on it.
    pub tasks_failed: usize,
    /// Task attempts running on it now.
    pub tasks_running: usize,
    /// Unix milliseconds.
    pub added_ms: u64,
    /// Unix milliseconds, once it left.
    pub removed_ms: Option<u64>,
    /// Unix milliseconds of its last heartbeat (live cluster UI only).
    pub last_heartbeat_ms: Option<u64>,
}

struct Task {
    executor: ExecutorId,
    speculative: bool,
    launched_ms: u64,
    ended_ms: Option<u64>,
    metrics: TaskMetrics,
    failure: Option<(FailureKind, String)>,
}

struct StageAttempt {
    name: String,
    tasks_total: usize,
    submitted_ms: u64,
    ended_ms: Option<u64>,
    failure: Option<String>,
    tasks: BTreeMap<(u32, u32), Task>,
}

struct Job {
    description: String,
    submitted_ms: u64,
    ended_ms: Option<u64>,
    outcome: Option<JobOutcome>,
    graph: Vec<StageInfo>,
    attempts: BTreeMap<(StageId, u32), StageAttempt>,
    /// Task attempts that succeeded and that failed (not killed), kept as
    /// they end so the jobs list does not walk every task on each request.
    tasks_done: usize,
    tasks_failed: usize,
}

struct Executor {
    address: String,
    cores: usize,
    added_ms: u64,
    removed_ms: Option<u64>,
    tasks_run: usize,
    tasks_failed: usize,
    tasks_running: usize,
}

/// The folded state of one application.
pub struct AppStatus {
    info: AppInfo,
    jobs: BTreeMap<JobId, Job>,
    executors: BTreeMap<ExecutorId, Executor>,
    /// The stage attempt of each running task attempt.
    task_stage: HashMap<riffle_planner::ids::TaskId, u32>,
}

impl AppStatus {
    /// An application with no events yet.
    pub fn new(info: AppInfo) -> Self {
        AppStatus {
            info,
            jobs: BTreeMap::new(),
            executors: BTreeMap::new(),
            task_stage: HashMap::new(),
        }
    }

    /// The application's header.
    pub fn info(&self) -> &AppInfo {
        &self.info
    }

    /// Marks the application ended at `time_ms`.
    pub fn end(&mut self, time_ms: u64) {
        self.info.ended_ms = Some(time_ms);
    }

    /// Applies `event`, which happened at `time_ms` (Unix milliseconds).
    pub fn apply(&mut self, time_ms: u64, event: &SchedulerEvent) {
        match event {
            SchedulerEvent::JobStarted {
                job,
                description,
                stages,
            } => {
                self.jobs.insert(
                    *job,
                    Job {
                        description: description.clone(),
                        submitted_ms: time_ms,
                        ended_ms: None,
                        outcome: None,
                        graph: stages.clone(),
                        attempts: BTreeMap::new(),
                        tasks_done: 0,
                        tasks_failed: 0,
                    },
                );
                self.retain();
            }
            SchedulerEvent::JobEnded { job, outcome, .. } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.ended_ms = Some(time_ms);
                    j.outcome = Some(outcome.clone());
                }
            }
            SchedulerEvent::StageSubmitted {
                job,
                stage,
                attempt,
                tasks,
                name,
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.attempts.insert(
                        (*stage, *attempt),
                        StageAttempt {
                            name: name.clone(),
                            tasks_total: *tasks,
                            submitted_ms: time_ms,
                            ended_ms: None,
                            failure: None,
                            tasks: BTreeMap::new(),
                        },
                    );
                }
            }
            SchedulerEvent::StageCompleted {
                job,
                stage,
                attempt,
                failure,
                ..
            } => {
                if let Some(a) = self.attempt(*job, *stage, *attempt) {
                    a.ended_ms = Some(time_ms);
                    a.failure = failure.clone();
                }
            }
            SchedulerEvent::TaskStarted {
                task,
                executor,
                stage_attempt,
                speculative,
            } => {
                self.task_stage.insert(*task, *stage_attempt);
                if let Some(e) = self.executors.get_mut(executor) {
                    e.tasks_running += 1;
                }
                if let Some(a) = self.attempt(task.job, task.stage, *stage_attempt) {
                    a.tasks.insert(
                        (task.partition, task.attempt),
                        Task {
                            executor: *executor,
                            speculative: *speculative,
                            launched_ms: time_ms,
                            ended_ms: None,
                            metrics: TaskMetrics::default(),
                            failure: None,
                        },
                    );
                }
            }
            SchedulerEvent::TaskEnded {
                task,
                executor,
                metrics,
                failure,
                ..
            } => {
                let counted = !matches!(
                    failure.as_ref().map(|f| &f.kind),
                    Some(FailureKind::Killed) | None
                );
                if let Some(e) = self.executors.get_mut(executor) {
                    e.tasks_running = e.tasks_running.saturating_sub(1);
                    e.tasks_run += 1;
                    e.tasks_failed += usize::from(counted);
                }
                let Some(stage_attempt) = self.task_stage.remove(task) else {
                    return;
                };
                let Some(job) = self.jobs.get_mut(&task.job) else {
                    return;
                };
                if let Some(a) = job.attempts.get_mut(&(task.stage, stage_attempt))
                    && let Some(t) = a.tasks.get_mut(&(task.partition, task.attempt))
                {
                    t.ended_ms = Some(time_ms);
                    t.metrics = metrics.clone();
                    t.failure = failure
                        .as_ref()
                        .map(|f| (f.kind.clone(), f.message.clone()));
                    match task_status(t) {
                        "succeeded" => job.tasks_done += 1,
                        "failed" => job.tasks_failed += 1,
                        _ => {}
                    }
                }
            }
            SchedulerEvent::ExecutorAdded {
                executor,
                slots,
                address,
            } => {
                self.executors.insert(
                    *executor,
                    Executor {
                        address: address.clone(),
                        cores: *slots,
                        added_ms: time_ms,
                        removed_ms: None,
                        tasks_run: 0,
                        tasks_failed: 0,
                        tasks_running: 0,
                    },
                );
            }
            SchedulerEvent::ExecutorRemoved { executor } => {
                if let Some(e) = self.executors.get_mut(executor) {
                    e.removed_ms = Some(time_ms);
                    e.tasks_running = 0;
                }
            }
        }
    }

    fn attempt(&mut self, job: JobId, stage: StageId, attempt: u32) -> Option<&mut StageAttempt> {
        self.jobs.get_mut(&job)?.attempts.get_mut(&(stage, attempt))
    }

    /// Drops the oldest finished jobs beyond [`RETAINED_JOBS`].
    fn retain(&mut self) {
        while self.jobs.len() > RETAINED_JOBS {
            let Some(oldest) = self
                .jobs
                .iter()
                .find(|(_, j)| j.ended_ms.is_some())
                .map(|(id, _)| *id)
            else {
                return;
            };
            self.jobs.remove(&oldest);
        }
    }

    /// Every job, newest first; durations of running ones up to `now_ms`.
    pub fn jobs(&self, now_ms: u64) -> Vec<JobRow> {
        self.jobs
            .iter()
            .rev()
            .map(|(id, j)| job_row(*id, j, now_ms))
            .collect()
    }

    /// One job with its stage DAG.
    pub fn job(&self, id: u32, now_ms: u64) -> Option<JobDetail> {
        let j = self.jobs.get(&JobId(id))?;
        let stages = j
            .graph
            .iter()
            .map(|s| {
                let attempts = j.attempts.range((s.stage, 0)..=(s.stage, u32::MAX));
                let count = attempts.clone().count() as u32;
                let state = match attempts.last() {
                    None if j.outcome == Some(JobOutcome::Succeeded) => "skipped",
                    None => "waiting",
                    Some((_, a)) => attempt_state(a),
                };
                StageNode {
                    id: s.stage.0,
                    name: s.name.clone(),
                    parents: s.parents.iter().map(|p| p.0).collect(),
                    partitions: s.partitions,
                    state,
                    attempts: count,
                }
            })
            .collect();
        Some(JobDetail {
            job: job_row(JobId(id), j, now_ms),
            stages,
        })
    }

    /// Every stage attempt of every job, newest first.
    pub fn stages(&self, now_ms: u64) -> Vec<StageRow> {
        let mut rows: Vec<StageRow> = self
            .jobs
            .iter()
            .flat_map(|(id, j)| {
                j.attempts
                    .iter()
                    .map(move |((stage, attempt), a)| stage_row(*id, *stage, *attempt, a, now_ms))
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.submitted_ms, b.job, b.stage, b.attempt).cmp(&(
                a.submitted_ms,
                a.job,
                a.stage,
                a.attempt,
            ))
        });
        rows
    }

    /// One stage attempt with its tasks and duration quantiles.
    pub fn stage(&self, job: u32, stage: u32, attempt: u32, now_ms: u64) -> Option<StageDetail> {
        let a = self
            .jobs
            .get(&JobId(job))?
            .attempts
            .get(&(StageId(stage), attempt))?;
        let tasks = a
            .tasks
            .iter()
            .map(|((partition, attempt), t)| TaskRow {
                partition: *partition,
                attempt: *attempt,
                executor: t.executor.to_string(),
                speculative: t.speculative,
                status: task_status(t),
                launched_ms: t.launched_ms,
                duration_ms: t.ended_ms.unwrap_or(now_ms).saturating_sub(t.launched_ms),
                counters: Counters::of(&t.metrics),
                failure_kind: t.failure.as_ref().map(|(k, _)| kind_name(k).to_string()),
                failure: t.failure.as_ref().map(|(_, m)| m.clone()),
            })
            .collect::<Vec<_>>();
        let mut done: Vec<u64> = tasks
            .iter()
            .filter(|t| t.status == "succeeded")
            .map(|t| t.duration_ms)
            .collect();
        done.sort_unstable();
        Some(StageDetail {
            stage: stage_row(JobId(job), StageId(stage), attempt, a, now_ms),
            tasks,
            duration_quantiles: quantiles(&done),
        })
    }

    /// Every executor that ever registered, by id.
    pub fn executors(&self) -> Vec<ExecutorRow> {
        self.executors
            .iter()
            .map(|(id, e)| ExecutorRow {
                id: id.to_string(),
                address: e.address.clone(),
                cores: e.cores,
                state: if e.removed_ms.is_some() {
                    "lost"
                } else {
                    "active"
                },
                tasks_run: e.tasks_run,
                tasks_failed: e.tasks_failed,
                tasks_running: e.tasks_running,
                added_ms: e.added_ms,
                removed_ms: e.removed_ms,
                last_heartbeat_ms: None,
            })
            .collect()
    }
}

fn job_row(id: JobId, j: &Job, now_ms: u64) -> JobRow {
    let latest: BTreeMap<StageId, &StageAttempt> =
        j.attempts.iter().map(|((s, _), a)| (*s, a)).collect();
    let (status, failure) = match &j.outcome {
        None => ("running", None),
        Some(JobOutcome::Succeeded) => ("succeeded", None),
        Some(JobOutcome::Failed(m)) => ("failed", Some(m.clone())),
        Some(JobOutcome::Cancelled) => ("cancelled", None),
    };
    JobRow {
        id: id.0,
        description: j.description.clone(),
        status,
        submitted_ms: j.submitted_ms,
        duration_ms: j.ended_ms.unwrap_or(now_ms).saturating_sub(j.submitted_ms),
        stages_total: j.graph.len(),
        stages_done: latest
            .values()
            .filter(|a| attempt_state(a) == "available")
            .count(),
        tasks_total: j.attempts.values().map(|a| a.tasks_total).sum(),
        tasks_done: j.tasks_done,
        tasks_failed: j.tasks_failed,
        failure,
    }
}

fn stage_row(job: JobId, stage: StageId, attempt: u32, a: &StageAttempt, now_ms: u64) -> StageRow {
    let mut counters = Counters::default();
    let (mut done, mut running, mut failed, mut killed) = (0, 0, 0, 0);
    for t in a.tasks.values() {
        counters.add(&t.metrics);
        match task_status(t) {
            "succeeded" => done += 1,
            "running" => running += 1,
            "killed" => killed += 1,
            _ => failed += 1,
        }
    }
    StageRow {
        job: job.0,
        stage: stage.0,
        attempt,
        name: a.name.clone(),
        state: attempt_state(a),
        tasks_total: a.tasks_total,
        tasks_done: done,
        tasks_running: running,
        tasks_failed: failed,
        tasks_killed: killed,
        submitted_ms: a.submitted_ms,
        duration_ms: a.ended_ms.unwrap_or(now_ms).saturating_sub(a.submitted_ms),
        counters,
        failure: a.failure.clone(),
    }
}

fn attempt_state(a: &StageAttempt) -> &'static str {
    match (a.ended_ms, &a.failure) {
        (None, _) => "running",
        (Some(_), None) => "available",
        (Some(_), Some(_)) => "failed",
    }
}

fn task_status(t: &Task) -> &'static str {
    match (&t.ended_ms, &t.failure) {
        (None, _) => "running",
        (Some(_), None) => "succeeded",
        (Some(_), Some((FailureKind::Killed, _))) => "killed",
        (Some(_), Some(_)) => "failed",
    }
}

fn kind_name(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Retryable => "Retryable",
        FailureKind::ExecutorLost => "ExecutorLost",
        FailureKind::FetchFailed { .. } => "FetchFailed",
        FailureKind::BadInput => "BadInput",
        FailureKind::User => "User",
        FailureKind::Internal => "Internal",
        FailureKind::Killed => "Killed",
    }
}

/// Nearest-rank quantiles of sorted `values`.
fn quantiles(sorted: &[u64]) -> Option<Quantiles> {
    let last = sorted.len().checked_sub(1)?;
    let at = |q: f64| sorted[((last as f64) * q).round() as usize];
    Some(Quantiles {
        min: sorted[0],
        p25: at(0.25),
        median: at(0.5),
        p75: at(0.75),
        max: sorted[last],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_few_durations() {
        assert_eq!(quantiles(&[]), None);
        let q = quantiles(&[1, 2, 3, 4, 5]).unwrap();
        assert_eq!((q.min, q.p25, q.median, q.p75, q.max), (1, 2, 3, 4, 5));
        let q = quantiles(&[7]).unwrap();
        assert_eq!((q.min, q.median, q.max), (7, 7, 7));
    }
}

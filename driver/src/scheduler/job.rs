//! One active job: its stage graph, the run state of each stage, its
//! map-output tracker, and how it ends. Only the event loop touches it.
//!
//! ```text
//!   Running ──final stage available──────────────► Finishing ─► Succeeded
//!      │  ▲ fetch failure: lost map outputs recomputed (new stage attempts)
//!      └──┘
//!      │                                              (commit, delete shuffle)
//!      ├─task failed for good / planning failed──► Aborting ──► Failed
//!      └─cancel_job / cancel_all / Ctrl-C────────► Aborting ──► Cancelled
//! ```
//!
//! Aborting kills the running tasks and waits for their statuses (so no
//! attempt is still writing when cleanup deletes the job's objects).

use super::events::SchedulerEvent;
use super::graph::{StageGraph, StageKind};
use super::map_output::{MapOutput, MapOutputTracker};
use super::policy::{Policy, Speculation};
use super::stage::{StageRun, StageState, plan_stage, stage_message};
use super::task_set::{Decision, TaskSet};
use crate::error::DriverError;
use crate::executors::StageMessage;
use riffle_planner::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use riffle_planner::task::{
    FailureKind, PartitionPlan, TaskFailure, TaskOutput, TaskSpec, TaskStatus, encode,
};
use riffle_shuffle::ShuffleStore;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// How long a job whose result is ready waits for its killed speculative
/// losers to report.
pub(crate) const LOSER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Where a job's outcome goes: the caller's handle.
pub(crate) type Reply = oneshot::Sender<Result<Vec<TaskOutput>, DriverError>>;

/// A task ready to be sent to an executor.
pub(crate) struct Launch {
    pub(crate) id: TaskId,
    pub(crate) stage: Arc<StageMessage>,
    pub(crate) spec: Vec<u8>,
    /// The stage attempt it belongs to.
    pub(crate) stage_attempt: u32,
    /// Whether it is a speculative copy.
    pub(crate) speculative: bool,
}

/// One job the event loop runs.
pub(crate) struct ActiveJob {
    pub(crate) id: JobId,
    pub(crate) graph: StageGraph,
    /// What started the job, for the UI and the event log.
    pub(crate) description: String,
    stages: Vec<StageRun>,
    pub(crate) tracker: MapOutputTracker,
    /// The stage writing each shuffle.
    writers: HashMap<ShuffleId, usize>,
    /// The stages reading each stage's output.
    children: Vec<Vec<usize>>,
    /// Results of finished sampling stages (range bounds).
    samples: HashMap<StageId, Vec<Vec<u8>>>,
    /// The final stage's outputs, once it is available.
    result: Option<Vec<TaskOutput>>,
    /// Launched tasks whose status has not come back.
    pub(crate) in_flight: usize,
    /// Losing speculative attempts killed and not yet reported: a job
    /// whose result is ready waits for them only [`LOSER_GRACE`].
    losers: HashSet<TaskId>,
    /// When the result became ready.
    result_at: Option<Instant>,
    /// Set when the job is aborting: the error its caller gets.
    failure: Option<DriverError>,
    /// Whether the abort is a cancellation.
    pub(crate) cancelled: bool,
    /// When the abort began.
    aborted_at: Option<Instant>,
    pub(crate) started: Instant,
    pub(crate) reply: Option<Reply>,
}

/// Task attempts to kill: (executor, attempt).
pub(crate) type Kills = Vec<(ExecutorId, TaskId)>;

impl ActiveJob {
    pub(crate) fn new(
        id: JobId,
        graph: StageGraph,
        description: String,
        reply: Reply,
    ) -> ActiveJob {
        let mut tracker = MapOutputTracker::default();
        let mut writers = HashMap::new();
        let mut children = vec![Vec::new(); graph.stages.len()];
        for (i, stage) in graph.stages.iter().enumerate() {
            if let Some(shuffle) = stage.shuffle() {
                tracker.register_shuffle(shuffle, stage.partitions);
                writers.insert(shuffle, i);
            }
            for parent in &stage.parents {
                if let Some(c) = children.get_mut(parent.0 as usize) {
                    c.push(i);
                }
            }
        }
        ActiveJob {
            id,
            stages: graph
                .stages
                .iter()
                .map(|s| StageRun::new(s.partitions))
                .collect(),
            graph,
            description,
            tracker,
            writers,
            children,
            samples: HashMap::new(),
            result: None,
            in_flight: 0,
            losers: HashSet::new(),
            result_at: None,
            failure: None,
            cancelled: false,
            aborted_at: None,
            started: Instant::now(),
            reply: Some(reply),
        }
    }

    /// Whether the job is aborting (failed or cancelled).
    pub(crate) fn is_aborting(&self) -> bool {
        self.failure.is_some()
    }

    /// Whether nothing is left to wait for: the job aborted and no
    /// launched task is still out, or the result is there and every task
    /// still out is a killed speculative loser, reported or not within
    /// [`LOSER_GRACE`] (a loser stuck in one call of user code, or on a
    /// hung executor, must not hold the answer back; its objects are
    /// attempt-scoped and never committed).
    pub(crate) fn is_done(&self) -> bool {
        if self.failure.is_some() {
            return self.in_flight == 0;
        }
        self.result.is_some()
            && (self.in_flight == 0
                || (self.in_flight <= self.losers.len()
                    && self.result_at.is_some_and(|t| t.elapsed() >= LOSER_GRACE)))
    }

    /// The job's outcome, once done.
    pub(crate) fn take_outcome(&mut self) -> Result<Vec<TaskOutput>, DriverError> {
        match self.failure.take() {
            Some(e) => Err(e),
            None => self
                .result
                .take()
                .ok_or_else(|| DriverError::Internal(format!("{} ended with no result", self.id))),
        }
    }

    /// The partitions of stage `i` that have no output: all of them at
    /// first, the lost ones when it is resubmitted.
    fn missing(&self, i: usize) -> Vec<u32> {
        match self.graph.stages[i].shuffle() {
            Some(shuffle) => self.tracker.missing(shuffle),
            None => (0..self.stages[i].outputs.len() as u32)
                .filter(|p| self.stages[i].outputs[*p as usize].is_none())
                .collect(),
        }
    }

    /// Submits a new attempt of every waiting stage whose parents are all
    /// available, for the partitions that have no output; a stage with
    /// none to run is available at once.
    pub(crate) fn submit_ready(
        &mut self,
        policy: &Policy,
        events: &mut Vec<SchedulerEvent>,
    ) -> Result<(), DriverError> {
        loop {
            let ready: Vec<usize> = (0..self.stages.len())
                .filter(|&i| {
                    self.stages[i].state == StageState::Waiting
                        && self.graph.stages[i]
                            .parents
                            .iter()
                            .all(|p| self.stages[p.0 as usize].state == StageState::Available)
                })
                .collect();
            if ready.is_empty() || self.is_aborting() {
                return Ok(());
            }
            for i in ready {
                let todo = self.missing(i);
                let run = &self.stages[i];
                let attempt = if run.submitted_once {
                    run.attempt + 1
                } else {
                    0
                };
                let node = &self.graph.stages[i];
                // Planning runs user code (a range writer sorts the user's
                // keys): a panic fails this job, never the event loop.
                let planned = catch_panic(node.id, || {
                    let (spec, plans) =
                        plan_stage(self.id, node, attempt, &self.tracker, &self.samples)?;
                    Ok((stage_message(&spec)?, plans))
                })?;
                let (message, plans) = planned;
                let mut wanted = vec![false; plans.len()];
                for p in &todo {
                    if let Some(w) = wanted.get_mut(*p as usize) {
                        *w = true;
                    }
                }
                let subset: Vec<(u32, PartitionPlan)> = plans
                    .into_iter()
                    .enumerate()
                    .filter(|(p, _)| wanted[*p])
                    .map(|(p, plan)| (p as u32, plan))
                    .collect();
                let (stage, name, partitions) = (node.id, node.name.clone(), node.partitions);
                let run = &mut self.stages[i];
                run.attempt = attempt;
                run.submitted_once = true;
                run.message = Some(message);
                run.state = StageState::Running;
                run.submitted = Some(Instant::now());
                events.push(SchedulerEvent::StageSubmitted {
                    job: self.id,
                    stage,
                    attempt,
                    tasks: subset.len(),
                    name,
                });
                run.tasks = Some(TaskSet::new(
                    partitions,
                    subset,
                    run.next_attempt.clone(),
                    *policy,
                ));
                self.finish_if_done(stage, events);
            }
        }
    }

    /// Whether a task of this job waits for a slot.
    pub(crate) fn has_pending(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.tasks.as_ref().is_some_and(TaskSet::has_pending))
    }

    /// Whether a task of this job could run on `executor` now.
    pub(crate) fn has_pending_on(&self, executor: ExecutorId) -> bool {
        self.stages
            .iter()
            .any(|s| s.tasks.as_ref().is_some_and(|t| t.has_pending_on(executor)))
    }

    /// Takes the next task for `executor`: a pending one of the earliest
    /// stage that has one, else a speculative copy.
    pub(crate) fn launch(
        &mut self,
        executor: ExecutorId,
        shuffle: &ShuffleStore,
    ) -> Result<Option<Launch>, DriverError> {
        let Some(i) = self
            .stages
            .iter()
            .position(|s| s.tasks.as_ref().is_some_and(|t| t.has_pending_on(executor)))
        else {
            return Ok(None);
        };
        let stage = StageId(i as u32);
        let writes = self.graph.stages[i].shuffle();
        let run = &mut self.stages[i];
        let stage_attempt = run.attempt;
        let (Some(tasks), Some(message)) = (run.tasks.as_mut(), run.message.clone()) else {
            return Ok(None);
        };
        let Some(launched) = tasks.launch(executor) else {
            return Ok(None);
        };
        let id = TaskId {
            job: self.id,
            stage,
            partition: launched.partition,
            attempt: launched.attempt,
        };
        let speculative = launched.speculative;
        let plan = launched.plan;
        let spec = catch_panic(stage, || {
            encode(&TaskSpec {
                id,
                plan: plan.clone(),
            })
            .map_err(|e| DriverError::Plan(riffle_planner::report(&e)))
        })?;
        if let Some(s) = writes {
            self.tracker.register_attempt(
                shuffle
                    .data_path(self.id, s, id.partition, id.attempt)
                    .to_string(),
            );
        }
        self.in_flight += 1;
        Ok(Some(Launch {
            id,
            stage: message,
            spec,
            stage_attempt,
            speculative,
        }))
    }

    /// Applies a task's status. Statuses of attempts that are not current
    /// (superseded, losing, or of an ended stage attempt) change nothing
    /// but the count of tasks in flight (the loop frees their slot).
    /// Attempts to kill (the losers of a speculative race, the rest of a
    /// stage attempt that hit a fetch failure) go to `kills`. Returns the
    /// error that must abort the job, if any.
    pub(crate) fn task_ended(
        &mut self,
        status: TaskStatus,
        policy: &Policy,
        events: &mut Vec<SchedulerEvent>,
        kills: &mut Kills,
    ) -> Option<DriverError> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let id = status.id;
        self.losers.remove(&id);
        // A stale attempt's fetch failure still says an output is gone
        // (Spark unregisters it too): without this, each stage attempt
        // would recover one lost output, and several lost at once (a
        // whole map stage's) would exhaust the stage's attempts.
        let mut written_by = String::new();
        if let Err(TaskFailure {
            kind:
                FailureKind::FetchFailed {
                    shuffle,
                    map_partition,
                    data_path,
                },
            ..
        }) = &status.result
            && let Some(lost) = self.forget_output(*shuffle, *map_partition, data_path)
        {
            written_by = format!(
                " (written by attempt {} on {})",
                lost.attempt, lost.executor
            );
        }
        let i = id.stage.0 as usize;
        let tasks = self.stages.get_mut(i).and_then(|s| s.tasks.as_mut())?;
        if !tasks.is_current(&id) {
            tracing::debug!(task = %id, "status of a stale attempt ignored");
            return None;
        }
        match status.result {
            Ok(output) => {
                if let (Some(shuffle), TaskOutput::Shuffle(map_status)) =
                    (self.graph.stages[i].shuffle(), &output)
                {
                    self.tracker.add(
                        shuffle,
                        id.partition,
                        MapOutput {
                            status: map_status.clone(),
                            attempt: id.attempt,
                            executor: status.executor,
                        },
                    );
                }
                for (attempt, executor) in tasks.succeeded(&id, output) {
                    tracing::info!(task = %id, loser = attempt, %executor, "first attempt to finish wins; killing the other");
                    let loser = TaskId { attempt, ..id };
                    self.losers.insert(loser);
                    kills.push((executor, loser));
                }
                // Only a stage changing state can make others ready.
                if self.finish_if_done(id.stage, events)
                    && let Err(e) = self.submit_ready(policy, events)
                {
                    return Some(e);
                }
                None
            }
            Err(failure) => match tasks.failed(&id, &failure) {
                Decision::Retry => {
                    tracing::warn!(task = %id, executor = %status.executor, cause = %failure.message, "task failed; retrying");
                    None
                }
                Decision::Ignore => None,
                Decision::FetchFailed => {
                    self.fetch_failed(id, failure, written_by, policy, events, kills)
                }
                Decision::FailJob => Some(DriverError::TaskFailed {
                    job: self.id,
                    stage: id.stage,
                    partition: id.partition,
                    attempt: id.attempt,
                    executor: status.executor,
                    kind: failure.kind,
                    message: failure.message,
                }),
            },
        }
    }

    /// A task could not read a parent's map output (Spark's
    /// `handleFetchFailure`): the output is forgotten if it is the one
    /// registered, the reading stage's attempt ends (its running tasks are
    /// killed, its finished partitions kept), and both stages go back to
    /// waiting, so the parent recomputes just its missing partitions and
    /// the reader then runs the rest with the new locations. A parent
    /// whose output is not deterministic makes every consumer rerun in
    /// full. Returns the error ending the job once the reader has had
    /// `max_stage_attempts` attempts.
    fn fetch_failed(
        &mut self,
        id: TaskId,
        failure: TaskFailure,
        written_by: String,
        policy: &Policy,
        events: &mut Vec<SchedulerEvent>,
        kills: &mut Kills,
    ) -> Option<DriverError> {
        let FailureKind::FetchFailed {
            shuffle,
            map_partition,
            ..
        } = &failure.kind
        else {
            return Some(DriverError::Internal(format!(
                "{id}: a fetch failure without its map output"
            )));
        };
        let Some(&parent) = self.writers.get(shuffle) else {
            return Some(DriverError::Internal(format!(
                "{id} read {shuffle}, which no stage of {} writes",
                self.id
            )));
        };
        tracing::warn!(task = %id, %shuffle, map_partition, cause = %failure.message, "fetch failed; recomputing the lost map output");
        let i = id.stage.0 as usize;
        self.end_stage_attempt(
            i,
            &format!("fetch failed: {}", failure.message),
            events,
            kills,
        );
        let run = &mut self.stages[i];
        run.fetch_failed_attempts += 1;
        if run.fetch_failed_attempts >= policy.max_stage_attempts.max(1) {
            return Some(DriverError::StageFailed {
                job: self.id,
                stage: id.stage,
                attempts: run.fetch_failed_attempts,
                shuffle: *shuffle,
                map_partition: *map_partition,
                written_by,
                message: failure.message,
            });
        }
        if !self.graph.stages[parent].deterministic {
            self.rollback_consumers(parent, events, kills);
        }
        let missing = !self.tracker.missing(*shuffle).is_empty();
        let parent_run = &mut self.stages[parent];
        if parent_run.state == StageState::Available && missing {
            parent_run.state = StageState::Waiting;
        }
        self.submit_ready(policy, events).err()
    }

    /// Forgets a map output a reader could not fetch, if it is still the
    /// registered one (an output already replaced stays); returns it.
    fn forget_output(
        &mut self,
        shuffle: ShuffleId,
        map_partition: u32,
        data_path: &str,
    ) -> Option<MapOutput> {
        let registered = self.tracker.output(shuffle, map_partition)?;
        if registered.status.data_path != data_path {
            return None;
        }
        tracing::warn!(%shuffle, map_partition, data_path, "map output lost");
        self.tracker.invalidate_partition(shuffle, map_partition)
    }

    /// Ends stage `i`'s running attempt early: its running tasks are
    /// killed, the partitions that succeeded keep their output, and the
    /// stage waits to be resubmitted.
    fn end_stage_attempt(
        &mut self,
        i: usize,
        why: &str,
        events: &mut Vec<SchedulerEvent>,
        kills: &mut Kills,
    ) {
        let job = self.id;
        let run = &mut self.stages[i];
        if let Some(mut tasks) = run.tasks.take() {
            for (partition, attempt, executor) in tasks.abort() {
                let task = TaskId {
                    job,
                    stage: StageId(i as u32),
                    partition,
                    attempt,
                };
                kills.push((executor, task));
            }
            for (p, output) in tasks.take_partial_outputs() {
                if self.graph.stages[i].shuffle().is_none() {
                    run.outputs[p as usize] = Some(output);
                }
            }
            run.next_attempt = tasks.next_attempts().to_vec();
            events.push(SchedulerEvent::StageCompleted {
                job,
                stage: StageId(i as u32),
                attempt: run.attempt,
                elapsed: run.submitted.map(|t| t.elapsed()).unwrap_or_default(),
                failure: Some(why.to_string()),
            });
        }
        run.state = StageState::Waiting;
    }

    /// Forgets everything computed from stage `i`'s output, transitively
    /// (Spark's rollback of an indeterminate stage's successors): a
    /// recomputed partition of a stage whose output is not deterministic
    /// may differ from what the consumers already read.
    fn rollback_consumers(
        &mut self,
        i: usize,
        events: &mut Vec<SchedulerEvent>,
        kills: &mut Kills,
    ) {
        for c in self.children[i].clone() {
            tracing::warn!(job = %self.id, stage = c, parent = i, "rerunning a consumer of non-deterministic output in full");
            if self.stages[c].state != StageState::Waiting || self.stages[c].tasks.is_some() {
                self.end_stage_attempt(
                    c,
                    "rolled back: a parent's output is not deterministic",
                    events,
                    kills,
                );
            }
            if let Some(shuffle) = self.graph.stages[c].shuffle() {
                self.tracker.invalidate_shuffle(shuffle);
            }
            let run = &mut self.stages[c];
            run.outputs.iter_mut().for_each(|o| *o = None);
            self.samples.remove(&StageId(c as u32));
            self.rollback_consumers(c, events, kills);
        }
    }

    /// Ends a stage attempt whose every task succeeded, keeping what its
    /// children need (samples) or what the caller gets (the result). A
    /// map stage with an output lost meanwhile (another reader's fetch
    /// failure) waits to be resubmitted instead of becoming available.
    /// Returns whether the stage changed state.
    fn finish_if_done(&mut self, stage: StageId, events: &mut Vec<SchedulerEvent>) -> bool {
        let i = stage.0 as usize;
        let shuffle = self.graph.stages[i].shuffle();
        let run = &mut self.stages[i];
        let Some(outputs) = run.tasks.as_mut().and_then(TaskSet::take_outputs) else {
            return false;
        };
        if let Some(tasks) = run.tasks.take() {
            run.next_attempt = tasks.next_attempts().to_vec();
        }
        if shuffle.is_none() {
            for (p, output) in outputs {
                run.outputs[p as usize] = Some(output);
            }
        }
        events.push(SchedulerEvent::StageCompleted {
            job: self.id,
            stage,
            attempt: run.attempt,
            elapsed: run.submitted.map(|t| t.elapsed()).unwrap_or_default(),
            failure: None,
        });
        if shuffle.is_some_and(|s| !self.tracker.missing(s).is_empty()) {
            run.state = StageState::Waiting;
            return true;
        }
        run.state = StageState::Available;
        run.fetch_failed_attempts = 0;
        let node = &self.graph.stages[i];
        if stage == self.graph.final_stage() {
            let outputs: Option<Vec<TaskOutput>> =
                run.outputs.iter_mut().map(Option::take).collect();
            match outputs {
                Some(outputs) => {
                    self.result = Some(outputs);
                    self.result_at = Some(Instant::now());
                }
                None => {
                    self.failure = Some(DriverError::Internal(format!(
                        "{stage} of {} finished with partitions missing",
                        self.id
                    )));
                }
            }
        } else if let StageKind::Pipeline {
            sink: super::graph::PipelineSink::Sample { .. },
            ..
        } = &node.kind
        {
            let bytes = run
                .outputs
                .iter()
                .filter_map(|o| match o {
                    Some(TaskOutput::Result(bytes)) => Some(bytes.clone()),
                    _ => None,
                })
                .collect();
            self.samples.insert(stage, bytes);
        }
        true
    }

    /// Marks stragglers of every running stage attempt for a speculative
    /// copy; returns how many were marked.
    pub(crate) fn check_speculation(&mut self, spec: &Speculation) -> usize {
        let now = Instant::now();
        self.stages
            .iter_mut()
            .filter_map(|s| s.tasks.as_mut())
            .map(|t| t.check_speculation(spec, now))
            .sum()
    }

    /// Starts aborting with `error` (the first error wins): drops pending
    /// tasks and returns the running attempts to kill.
    pub(crate) fn abort(
        &mut self,
        error: DriverError,
        events: &mut Vec<SchedulerEvent>,
    ) -> Vec<(ExecutorId, TaskId)> {
        if self.failure.is_some() {
            return Vec::new();
        }
        let message = riffle_planner::report(&error);
        self.failure = Some(error);
        self.aborted_at = Some(Instant::now());
        let mut kills = Vec::new();
        for (i, run) in self.stages.iter_mut().enumerate() {
            let stage = StageId(i as u32);
            if let Some(tasks) = run.tasks.as_mut() {
                for (partition, attempt, executor) in tasks.abort() {
                    let id = TaskId {
                        job: self.id,
                        stage,
                        partition,
                        attempt,
                    };
                    kills.push((executor, id));
                }
            }
            if run.state != StageState::Available {
                if run.state == StageState::Running {
                    events.push(SchedulerEvent::StageCompleted {
                        job: self.id,
                        stage,
                        attempt: run.attempt,
                        elapsed: run.submitted.map(|t| t.elapsed()).unwrap_or_default(),
                        failure: Some(message.clone()),
                    });
                }
                run.state = StageState::Failed;
            }
        }
        kills
    }

    /// The first stage with tasks waiting (for error messages).
    pub(crate) fn waiting_stage(&self) -> Option<StageId> {
        self.stages
            .iter()
            .position(|s| s.tasks.as_ref().is_some_and(TaskSet::has_pending))
            .map(|i| StageId(i as u32))
    }

    /// When the job started aborting (for the kill deadline).
    pub(crate) fn aborting_since(&self) -> Option<Instant> {
        self.aborted_at
    }

    /// Gives up on launched tasks that never answered their kill (a task
    /// stuck in one call of user code, or a launch that overtook both
    /// kills): the job ends without them. Their executors may still write
    /// attempt-scoped objects, which cleanup cannot see.
    pub(crate) fn abandon_in_flight(&mut self) -> usize {
        std::mem::take(&mut self.in_flight)
    }

    /// Running tasks of this job.
    pub(crate) fn running_tasks(&self) -> usize {
        self.stages
            .iter()
            .filter_map(|s| s.tasks.as_ref())
            .map(TaskSet::running)
            .sum()
    }
}

/// Runs planning code that may call user code, turning a panic into a
/// plan error naming the stage.
fn catch_panic<R>(
    stage: StageId,
    f: impl FnOnce() -> Result<R, DriverError>,
) -> Result<R, DriverError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(DriverError::Plan(format!(
            "planning {stage} panicked: {}",
            riffle_executor::runner::panic_message(&*panic)
        )))
    })
}

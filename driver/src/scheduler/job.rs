//! One active job: its stage graph, the run state of each stage, its
//! map-output tracker, and how it ends. Only the event loop touches it.
//!
//! ```text
//!   Running ──final stage available──────────────► Finishing ─► Succeeded
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
use super::stage::{StageRun, StageState, plan_stage, stage_message};
use super::task_set::{Decision, TaskSet};
use crate::error::DriverError;
use crate::executors::StageMessage;
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::task::{TaskOutput, TaskSpec, TaskStatus, encode};
use riffle_shuffle::ShuffleStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Where a job's outcome goes: the caller's handle.
pub(crate) type Reply = oneshot::Sender<Result<Vec<TaskOutput>, DriverError>>;

/// A task ready to be sent to an executor.
pub(crate) struct Launch {
    pub(crate) id: TaskId,
    pub(crate) stage: Arc<StageMessage>,
    pub(crate) spec: Vec<u8>,
}

/// One job the event loop runs.
pub(crate) struct ActiveJob {
    pub(crate) id: JobId,
    pub(crate) graph: StageGraph,
    stages: Vec<StageRun>,
    pub(crate) tracker: MapOutputTracker,
    /// Results of finished sampling stages (range bounds).
    samples: HashMap<StageId, Vec<Vec<u8>>>,
    /// The final stage's outputs, once it is available.
    result: Option<Vec<TaskOutput>>,
    /// Launched tasks whose status has not come back.
    pub(crate) in_flight: usize,
    /// Set when the job is aborting: the error its caller gets.
    failure: Option<DriverError>,
    /// Whether the abort is a cancellation.
    pub(crate) cancelled: bool,
    /// When the abort began.
    aborted_at: Option<Instant>,
    pub(crate) started: Instant,
    pub(crate) reply: Option<Reply>,
}

impl ActiveJob {
    pub(crate) fn new(id: JobId, graph: StageGraph, reply: Reply) -> ActiveJob {
        let mut tracker = MapOutputTracker::default();
        for stage in &graph.stages {
            if let Some(shuffle) = stage.shuffle() {
                tracker.register_shuffle(shuffle, stage.partitions);
            }
        }
        ActiveJob {
            id,
            stages: graph.stages.iter().map(|_| StageRun::new()).collect(),
            graph,
            tracker,
            samples: HashMap::new(),
            result: None,
            in_flight: 0,
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

    /// Whether nothing is left to wait for: the result is there or the job
    /// aborted, and no launched task is still out.
    pub(crate) fn is_done(&self) -> bool {
        (self.result.is_some() || self.failure.is_some()) && self.in_flight == 0
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

    /// Submits every waiting stage whose parents are all available; a
    /// stage with no partitions is available at once.
    pub(crate) fn submit_ready(
        &mut self,
        max_attempts: u32,
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
                let node = &self.graph.stages[i];
                // Planning runs user code (a range writer sorts the user's
                // keys): a panic fails this job, never the event loop.
                let planned = catch_panic(node.id, || {
                    let (spec, plans) = plan_stage(self.id, node, &self.tracker, &self.samples)?;
                    Ok((stage_message(&spec)?, plans))
                })?;
                let (message, plans) = planned;
                let (stage, name) = (node.id, node.name.clone());
                let run = &mut self.stages[i];
                run.message = Some(message);
                run.state = StageState::Running;
                run.submitted = Some(Instant::now());
                events.push(SchedulerEvent::StageSubmitted {
                    job: self.id,
                    stage,
                    attempt: run.attempt,
                    tasks: plans.len(),
                    name,
                });
                run.tasks = Some(TaskSet::new(plans, max_attempts));
                self.complete_if_done(stage, events);
            }
        }
    }

    /// Whether a task of this job waits for a slot.
    pub(crate) fn has_pending(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.tasks.as_ref().is_some_and(TaskSet::has_pending))
    }

    /// Takes the next pending task (of the earliest stage that has one)
    /// for `executor`.
    pub(crate) fn launch(
        &mut self,
        executor: ExecutorId,
        shuffle: &ShuffleStore,
    ) -> Result<Option<Launch>, DriverError> {
        let Some(i) = self
            .stages
            .iter()
            .position(|s| s.tasks.as_ref().is_some_and(TaskSet::has_pending))
        else {
            return Ok(None);
        };
        let stage = StageId(i as u32);
        let writes = self.graph.stages[i].shuffle();
        let run = &mut self.stages[i];
        let (Some(tasks), Some(message)) = (run.tasks.as_mut(), run.message.clone()) else {
            return Ok(None);
        };
        let Some((partition, attempt, plan)) = tasks.launch(executor) else {
            return Ok(None);
        };
        let id = TaskId {
            job: self.id,
            stage,
            partition,
            attempt,
        };
        let spec = catch_panic(stage, || {
            encode(&TaskSpec {
                id,
                plan: plan.clone(),
            })
            .map_err(|e| DriverError::Plan(e.to_string()))
        })?;
        if let Some(s) = writes {
            self.tracker.register_attempt(
                shuffle
                    .data_path(self.id, s, partition, attempt)
                    .to_string(),
            );
        }
        self.in_flight += 1;
        Ok(Some(Launch {
            id,
            stage: message,
            spec,
        }))
    }

    /// Applies a task's status. Statuses of attempts that are not current
    /// (superseded, or of an aborted stage) change nothing but the count
    /// of tasks in flight (the loop frees their slot). Returns
    /// the error that must abort the job, if any.
    pub(crate) fn task_ended(
        &mut self,
        status: TaskStatus,
        max_attempts: u32,
        events: &mut Vec<SchedulerEvent>,
    ) -> Option<DriverError> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let id = status.id;
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
                tasks.succeeded(&id, output);
                // Only a stage becoming available can make others ready.
                if self.complete_if_done(id.stage, events)
                    && let Err(e) = self.submit_ready(max_attempts, events)
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

    /// Marks a stage available once every task succeeded, keeping what
    /// its children need (samples) or what the caller gets (the result);
    /// returns whether it did.
    fn complete_if_done(&mut self, stage: StageId, events: &mut Vec<SchedulerEvent>) -> bool {
        let i = stage.0 as usize;
        let run = &mut self.stages[i];
        let Some(outputs) = run.tasks.as_mut().and_then(TaskSet::take_outputs) else {
            return false;
        };
        run.state = StageState::Available;
        run.tasks = None;
        events.push(SchedulerEvent::StageCompleted {
            job: self.id,
            stage,
            attempt: run.attempt,
            elapsed: run.submitted.map(|t| t.elapsed()).unwrap_or_default(),
            failure: None,
        });
        let node = &self.graph.stages[i];
        if stage == self.graph.final_stage() {
            self.result = Some(outputs);
        } else if let StageKind::Pipeline {
            sink: super::graph::PipelineSink::Sample { .. },
            ..
        } = &node.kind
        {
            let bytes = outputs
                .into_iter()
                .filter_map(|o| match o {
                    TaskOutput::Result(bytes) => Some(bytes),
                    _ => None,
                })
                .collect();
            self.samples.insert(stage, bytes);
        }
        true
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
        let message = error.to_string();
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

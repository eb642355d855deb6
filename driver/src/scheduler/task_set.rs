//! The tasks of one stage attempt (Spark's `TaskSetManager`): per
//! partition state, the queue of tasks waiting for a slot, speculative
//! copies, and the one retry policy.
//!
//! ```text
//!   Pending ──launch──► Running ──first attempt succeeds──► Succeeded
//!      ▲                 │  ▲                               (other attempts killed)
//!      └─retry───────────┘  └─speculative copy (a 2nd attempt, another executor)
//!                        └─fails for good / fetch failure / abort──► Aborted
//! ```
//!
//! A stage attempt may cover only some partitions (a resubmitted map
//! stage recomputes just the lost outputs); the others start as
//! `Succeeded`. Attempt numbers continue across stage attempts, so every
//! attempt of a partition writes its own attempt-scoped objects.

use super::policy::{Policy, Speculation};
use riffle_planner::ids::{ExecutorId, TaskId};
use riffle_planner::task::{FailureKind, PartitionPlan, TaskFailure, TaskOutput};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One launched attempt of a partition.
#[derive(Debug, Clone)]
pub(crate) struct RunningAttempt {
    pub(crate) attempt: u32,
    pub(crate) executor: ExecutorId,
    pub(crate) started: Instant,
}

/// The state of one partition's task.
#[derive(Debug, Clone)]
pub(crate) enum TaskState {
    /// Waiting for a slot.
    Pending,
    /// Running: one attempt, or two with a speculative copy.
    Running(Vec<RunningAttempt>),
    /// Finished (in this stage attempt or an earlier one).
    Succeeded,
    /// Given up on (the stage attempt is aborted).
    Aborted,
}

/// What to do about a task's failure, decided from its kind alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the task again (queued unless another attempt still runs).
    Retry,
    /// Nothing: a stale or killed attempt.
    Ignore,
    /// A parent's map output is unreadable: the job recomputes it.
    FetchFailed,
    /// Fail the job with this failure.
    FailJob,
}

/// A task launched by [`TaskSet::launch`].
pub(crate) struct Launched<'a> {
    pub(crate) partition: u32,
    pub(crate) attempt: u32,
    pub(crate) plan: &'a PartitionPlan,
    /// Whether it is a speculative copy of a running attempt.
    pub(crate) speculative: bool,
}

/// One stage attempt's tasks.
pub(crate) struct TaskSet {
    /// Per partition; `None` for partitions this attempt does not run.
    plans: Vec<Option<PartitionPlan>>,
    tasks: Vec<TaskState>,
    outputs: Vec<Option<TaskOutput>>,
    /// Partitions waiting for a slot, in launch order.
    queue: VecDeque<u32>,
    /// Running partitions waiting for a speculative copy.
    speculatable: VecDeque<u32>,
    /// Partitions that got a speculative copy already (one per attempt
    /// set, as in Spark).
    speculated: Vec<bool>,
    /// Counted failures per partition (see `FailureKind::counts`).
    failures: Vec<u32>,
    /// Attempts per partition that ended with their executor lost.
    lost: Vec<u32>,
    /// The attempt number each partition's next launch gets.
    next_attempt: Vec<u32>,
    /// Run times of this attempt's successes (for speculation).
    durations: Vec<Duration>,
    /// Attempts running now.
    running: usize,
    /// Partitions of this attempt not yet succeeded.
    remaining: usize,
    /// Partitions this attempt runs.
    size: usize,
    policy: Policy,
}

impl TaskSet {
    /// A task set running `plans` (partition, plan) out of `partitions`;
    /// `next_attempt` is each partition's next attempt number.
    pub(crate) fn new(
        partitions: usize,
        plans: Vec<(u32, PartitionPlan)>,
        next_attempt: Vec<u32>,
        policy: Policy,
    ) -> TaskSet {
        let mut slots: Vec<Option<PartitionPlan>> = vec![None; partitions];
        let mut tasks = vec![TaskState::Succeeded; partitions];
        let mut queue = VecDeque::with_capacity(plans.len());
        for (p, plan) in plans {
            if let Some(slot) = slots.get_mut(p as usize) {
                *slot = Some(plan);
                tasks[p as usize] = TaskState::Pending;
                queue.push_back(p);
            }
        }
        let size = queue.len();
        TaskSet {
            plans: slots,
            tasks,
            outputs: vec![None; partitions],
            queue,
            speculatable: VecDeque::new(),
            speculated: vec![false; partitions],
            failures: vec![0; partitions],
            lost: vec![0; partitions],
            next_attempt,
            durations: Vec::new(),
            running: 0,
            remaining: size,
            size,
            policy,
        }
    }

    /// Whether a task (or a speculative copy) waits for a slot.
    pub(crate) fn has_pending(&self) -> bool {
        !self.queue.is_empty() || !self.speculatable.is_empty()
    }

    /// Whether a task could be launched on `executor` now: any pending
    /// task, or a speculative copy of one running elsewhere.
    pub(crate) fn has_pending_on(&self, executor: ExecutorId) -> bool {
        !self.queue.is_empty()
            || self
                .speculatable
                .iter()
                .any(|p| !self.runs_on(*p, executor))
    }

    fn runs_on(&self, partition: u32, executor: ExecutorId) -> bool {
        matches!(&self.tasks[partition as usize], TaskState::Running(attempts)
            if attempts.iter().any(|a| a.executor == executor))
    }

    /// Attempts running now.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Whether every partition has succeeded.
    pub(crate) fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Takes the next pending task, or else a speculative copy of a task
    /// running on another executor, and marks it running on `executor`.
    pub(crate) fn launch(&mut self, executor: ExecutorId) -> Option<Launched<'_>> {
        let (partition, speculative) = match self.queue.pop_front() {
            Some(p) => (p, false),
            None => {
                let i = self
                    .speculatable
                    .iter()
                    .position(|p| !self.runs_on(*p, executor))?;
                (self.speculatable.remove(i)?, true)
            }
        };
        let p = partition as usize;
        // Checked before any state changes: a partition not in this set
        // has no plan.
        self.plans[p].as_ref()?;
        let attempt = self.next_attempt[p];
        self.next_attempt[p] += 1;
        let started = RunningAttempt {
            attempt,
            executor,
            started: Instant::now(),
        };
        match &mut self.tasks[p] {
            TaskState::Running(attempts) if speculative => attempts.push(started),
            slot @ TaskState::Pending => *slot = TaskState::Running(vec![started]),
            // A speculative copy of a task that ended meanwhile.
            _ => return None,
        }
        self.running += 1;
        let plan = self.plans[p].as_ref()?;
        Some(Launched {
            partition,
            attempt,
            plan,
            speculative,
        })
    }

    /// Whether `id` is an attempt running now (anything else is stale: a
    /// superseded, losing or aborted attempt whose status must be ignored).
    pub(crate) fn is_current(&self, id: &TaskId) -> bool {
        matches!(
            self.tasks.get(id.partition as usize),
            Some(TaskState::Running(attempts)) if attempts.iter().any(|a| a.attempt == id.attempt)
        )
    }

    /// Removes a running attempt; returns whether others still run.
    fn end_attempt(&mut self, id: &TaskId) -> Option<(RunningAttempt, bool)> {
        let TaskState::Running(attempts) = &mut self.tasks[id.partition as usize] else {
            return None;
        };
        let i = attempts.iter().position(|a| a.attempt == id.attempt)?;
        let ended = attempts.remove(i);
        self.running -= 1;
        Some((ended, !attempts.is_empty()))
    }

    /// Records a success of a current attempt; returns the partition's
    /// other running attempts (attempt, executor), to be killed: the first
    /// success wins.
    pub(crate) fn succeeded(&mut self, id: &TaskId, output: TaskOutput) -> Vec<(u32, ExecutorId)> {
        let Some((ended, _)) = self.end_attempt(id) else {
            return Vec::new();
        };
        let p = id.partition as usize;
        let losers = match std::mem::replace(&mut self.tasks[p], TaskState::Succeeded) {
            TaskState::Running(others) => {
                self.running -= others.len();
                others
                    .into_iter()
                    .map(|a| (a.attempt, a.executor))
                    .collect()
            }
            _ => Vec::new(),
        };
        self.speculatable.retain(|q| *q != id.partition);
        self.durations.push(ended.started.elapsed());
        self.outputs[p] = Some(output);
        self.remaining -= 1;
        losers
    }

    /// Records a failure of a current attempt and decides what to do:
    /// retryable kinds run again until the partition has failed
    /// `max_task_failures` times (kinds that do not count, such as a lost
    /// executor, have a limit of their own, twice as high, so that a task
    /// that keeps killing its executor still ends); a killed attempt is
    /// requeued without counting; a fetch failure is the job's to handle;
    /// everything else fails the job. While a speculative copy still runs,
    /// nothing is requeued.
    pub(crate) fn failed(&mut self, id: &TaskId, failure: &TaskFailure) -> Decision {
        let Some((_, others_running)) = self.end_attempt(id) else {
            return Decision::Ignore;
        };
        let p = id.partition as usize;
        let decision = match &failure.kind {
            FailureKind::Killed => Decision::Ignore,
            FailureKind::FetchFailed { .. } => return Decision::FetchFailed,
            kind if kind.retryable() => {
                let (count, limit) = if kind.counts() {
                    (&mut self.failures[p], self.policy.max_task_failures)
                } else {
                    (&mut self.lost[p], self.policy.max_task_failures * 2)
                };
                *count += 1;
                if *count >= limit.max(1) {
                    self.abort_partition(p);
                    return Decision::FailJob;
                }
                Decision::Retry
            }
            _ => {
                self.abort_partition(p);
                return Decision::FailJob;
            }
        };
        if !others_running {
            self.tasks[p] = TaskState::Pending;
            self.speculatable.retain(|q| *q != id.partition);
            // The retry may straggle too (Spark copies again once one
            // attempt is left).
            self.speculated[p] = false;
            self.queue.push_back(id.partition);
        }
        decision
    }

    /// Gives up on a partition; an attempt of it still running (a
    /// speculative copy) stays `Running`, so that the job's abort kills it.
    fn abort_partition(&mut self, p: usize) {
        if !matches!(&self.tasks[p], TaskState::Running(others) if !others.is_empty()) {
            self.tasks[p] = TaskState::Aborted;
        }
    }

    /// Marks running tasks that are much slower than this attempt's
    /// successes as wanting a speculative copy; returns how many were
    /// added.
    pub(crate) fn check_speculation(&mut self, spec: &Speculation, now: Instant) -> usize {
        let needed = ((spec.quantile * self.size as f64).floor() as usize).max(1);
        if self.durations.len() < needed || self.remaining == 0 {
            return 0;
        }
        let mut sorted = self.durations.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let threshold = median
            .mul_f64(spec.multiplier)
            .max(Speculation::MIN_RUNTIME);
        let mut added = 0;
        for (p, task) in self.tasks.iter().enumerate() {
            if let TaskState::Running(attempts) = task
                && attempts.len() == 1
                && !self.speculated[p]
                && now.duration_since(attempts[0].started) > threshold
            {
                self.speculated[p] = true;
                self.speculatable.push_back(p as u32);
                added += 1;
            }
        }
        added
    }

    /// Drops every pending task and returns the running attempts
    /// (partition, attempt, executor), to be killed; their statuses are
    /// stale from now on.
    pub(crate) fn abort(&mut self) -> Vec<(u32, u32, ExecutorId)> {
        self.queue.clear();
        self.speculatable.clear();
        self.running = 0;
        let mut running = Vec::new();
        for (p, t) in self.tasks.iter_mut().enumerate() {
            match t {
                TaskState::Running(attempts) => {
                    running.extend(attempts.iter().map(|a| (p as u32, a.attempt, a.executor)));
                    *t = TaskState::Aborted;
                }
                TaskState::Pending => *t = TaskState::Aborted,
                TaskState::Succeeded | TaskState::Aborted => {}
            }
        }
        running
    }

    /// The outputs this attempt produced (partition, output), once every
    /// partition has succeeded.
    pub(crate) fn take_outputs(&mut self) -> Option<Vec<(u32, TaskOutput)>> {
        self.is_complete().then(|| self.take_partial_outputs())
    }

    /// Outputs of the partitions that succeeded so far, taken (when the
    /// attempt is abandoned, the successes are kept by the stage).
    pub(crate) fn take_partial_outputs(&mut self) -> Vec<(u32, TaskOutput)> {
        self.outputs
            .iter_mut()
            .enumerate()
            .filter_map(|(p, o)| Some((p as u32, o.take()?)))
            .collect()
    }

    /// Each partition's next attempt number, for the stage's next attempt.
    pub(crate) fn next_attempts(&self) -> &[u32] {
        &self.next_attempt
    }
}

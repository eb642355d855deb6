//! The tasks of one stage attempt (Spark's `TaskSetManager`): per
//! partition state, the queue of tasks waiting for a slot, and the one
//! retry policy.

use riffle_planner::ids::{ExecutorId, TaskId};
use riffle_planner::task::{FailureKind, PartitionPlan, TaskFailure, TaskOutput};
use std::collections::VecDeque;

/// The state of one partition's task.
#[derive(Debug, Clone)]
pub(crate) enum TaskState {
    /// Waiting for a slot; `attempt` is the attempt it will run as.
    Pending {
        /// The next attempt number.
        attempt: u32,
    },
    /// Running as `attempt` on `executor`.
    Running {
        /// The attempt running.
        attempt: u32,
        /// Where.
        executor: ExecutorId,
    },
    /// Finished; the output is kept in the task set.
    Succeeded,
    /// Given up on (the stage is aborted).
    Aborted,
}

/// What to do about a task's failure, decided from its kind alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the task again (it is queued with the next attempt number).
    Retry,
    /// The attempt was killed on purpose: neither a failure nor a success.
    Ignore,
    /// Fail the job with this failure.
    FailJob,
}

/// One stage attempt's tasks.
pub(crate) struct TaskSet {
    /// One plan per partition.
    plans: Vec<PartitionPlan>,
    tasks: Vec<TaskState>,
    outputs: Vec<Option<TaskOutput>>,
    /// Partitions waiting for a slot, in launch order.
    queue: VecDeque<u32>,
    /// Failed attempts per partition (killed attempts do not count).
    failures: Vec<u32>,
    running: usize,
    succeeded: usize,
    max_attempts: u32,
}

impl TaskSet {
    /// A task set with every partition pending as attempt 0.
    pub(crate) fn new(plans: Vec<PartitionPlan>, max_attempts: u32) -> TaskSet {
        let n = plans.len();
        TaskSet {
            plans,
            tasks: vec![TaskState::Pending { attempt: 0 }; n],
            outputs: vec![None; n],
            queue: (0..n as u32).collect(),
            failures: vec![0; n],
            running: 0,
            succeeded: 0,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Whether a task waits for a slot.
    pub(crate) fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Tasks running now.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Whether every partition has succeeded.
    pub(crate) fn is_complete(&self) -> bool {
        self.succeeded == self.tasks.len()
    }

    /// Takes the next pending task and marks it running on `executor`:
    /// its partition, attempt and plan.
    pub(crate) fn launch(&mut self, executor: ExecutorId) -> Option<(u32, u32, &PartitionPlan)> {
        let partition = self.queue.pop_front()?;
        let slot = &mut self.tasks[partition as usize];
        let TaskState::Pending { attempt } = *slot else {
            return None;
        };
        *slot = TaskState::Running { attempt, executor };
        self.running += 1;
        Some((partition, attempt, &self.plans[partition as usize]))
    }

    /// Whether `id` is the attempt running now (anything else is stale:
    /// a superseded or aborted attempt whose status must be ignored).
    pub(crate) fn is_current(&self, id: &TaskId) -> bool {
        matches!(
            self.tasks.get(id.partition as usize),
            Some(TaskState::Running { attempt, .. }) if *attempt == id.attempt
        )
    }

    /// Records a success of the current attempt.
    pub(crate) fn succeeded(&mut self, id: &TaskId, output: TaskOutput) {
        if !self.is_current(id) {
            return;
        }
        let p = id.partition as usize;
        self.tasks[p] = TaskState::Succeeded;
        self.outputs[p] = Some(output);
        self.running -= 1;
        self.succeeded += 1;
    }

    /// Records a failure of the current attempt and decides what to do:
    /// retry retryable kinds until `max_attempts` attempts of the
    /// partition have failed,
    /// requeue killed attempts without counting them, fail the job on
    /// everything else.
    pub(crate) fn failed(&mut self, id: &TaskId, failure: &TaskFailure) -> Decision {
        if !self.is_current(id) {
            return Decision::Ignore;
        }
        let p = id.partition as usize;
        self.running -= 1;
        let decision = match failure.kind {
            FailureKind::Killed => Decision::Ignore,
            _ if failure.kind.retryable() && self.failures[p] + 1 < self.max_attempts => {
                self.failures[p] += 1;
                Decision::Retry
            }
            _ => {
                self.tasks[p] = TaskState::Aborted;
                return Decision::FailJob;
            }
        };
        self.tasks[p] = TaskState::Pending {
            attempt: id.attempt + 1,
        };
        self.queue.push_back(id.partition);
        decision
    }

    /// Drops every pending task and returns the running attempts
    /// (partition, attempt, executor), to be killed; their statuses are
    /// stale from now on.
    pub(crate) fn abort(&mut self) -> Vec<(u32, u32, ExecutorId)> {
        self.queue.clear();
        self.running = 0;
        let mut running = Vec::new();
        for (p, t) in self.tasks.iter_mut().enumerate() {
            match t {
                TaskState::Running {
                    attempt, executor, ..
                } => {
                    running.push((p as u32, *attempt, *executor));
                    *t = TaskState::Aborted;
                }
                TaskState::Pending { .. } => *t = TaskState::Aborted,
                TaskState::Succeeded | TaskState::Aborted => {}
            }
        }
        running
    }

    /// The outputs in partition order, once complete.
    pub(crate) fn take_outputs(&mut self) -> Option<Vec<TaskOutput>> {
        if !self.is_complete() {
            return None;
        }
        self.outputs.iter_mut().map(Option::take).collect()
    }
}

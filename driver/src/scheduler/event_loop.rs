//! The event loop: the one owner of every active job's state.
//!
//! Everything that changes scheduler state arrives as a [`Command`] on one
//! channel (a submitted job, a task status, a cancellation, a finished
//! cleanup) or is watched in the same `select!` (membership changes, the
//! no-executor timer), as in Spark's `DAGSchedulerEventProcessLoop`. After
//! each batch of commands the loop offers free slots to the jobs' pending
//! tasks, by FIFO or fair sharing. Launches, kills and cleanup run as
//! tokio tasks of their own and report back as commands, so the loop never
//! waits on an executor or a store.

use super::backend::{TaskBackend, failed};
use super::commit::{abort_files, commit_files};
use super::events::{EventListener, JobOutcome, SchedulerEvent};
use super::graph::JobOutput;
use super::job::{ActiveJob, Reply};
use super::policy::{Policy, Speculation};
use crate::error::DriverError;
use riffle_planner::ids::{ExecutorId, JobId, TaskId};
use riffle_planner::task::{FailureKind, TaskOutput, TaskStatus};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// How long an aborting job waits for its killed tasks to report before
/// it ends without them.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(10);

/// How slots are shared between jobs running at the same time (Spark's
/// `spark.scheduler.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingMode {
    /// The earliest submitted job takes every slot it can use; later jobs
    /// get what is left.
    #[default]
    Fifo,
    /// Slots go to the job with the fewest running tasks, so concurrent
    /// jobs get equal shares.
    Fair,
}

impl std::str::FromStr for SchedulingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fifo" => Ok(SchedulingMode::Fifo),
            "fair" => Ok(SchedulingMode::Fair),
            other => Err(format!("scheduling mode {other:?}: expected fifo or fair")),
        }
    }
}

/// What the scheduler owns: where tasks run, where shuffles live, and the
/// settings it acts on.
pub(crate) struct SchedulerDeps {
    pub(crate) backend: Arc<dyn TaskBackend>,
    pub(crate) shuffle: ShuffleStore,
    pub(crate) stores: ObjectStores,
    /// Retry limits and speculation.
    pub(crate) policy: Policy,
    /// How long pending tasks wait for an executor when none is left.
    pub(crate) executor_wait: Duration,
    pub(crate) mode: SchedulingMode,
    /// The driver service URL, for the "start an executor" hint.
    pub(crate) driver_url: Option<String>,
}

/// Inputs of the event loop.
pub(crate) enum Command {
    /// A new job.
    Submit(Box<ActiveJob>),
    /// A task attempt's status came back from `executor`.
    TaskEnded {
        executor: ExecutorId,
        status: TaskStatus,
        launched: Instant,
    },
    /// Cancel one job, or every job (`None`).
    Cancel(Option<JobId>),
    /// A job's commit and cleanup are done.
    Finished {
        job: JobId,
        result: Result<Vec<TaskOutput>, DriverError>,
        outcome: JobOutcome,
        started: Instant,
        reply: Option<Reply>,
    },
}

pub(crate) struct EventLoop {
    deps: Arc<SchedulerDeps>,
    tx: mpsc::UnboundedSender<Command>,
    jobs: BTreeMap<JobId, ActiveJob>,
    /// Slots of each executor known now.
    executors: BTreeMap<ExecutorId, usize>,
    /// Tasks running per executor, over all jobs.
    running: HashMap<ExecutorId, usize>,
    /// Since when tasks have been pending with no executor at all.
    starved_since: Option<Instant>,
    /// Told every event before it is broadcast (the job summary, the web
    /// UI's status store, the event log, progress bars).
    listeners: Vec<Box<dyn EventListener>>,
    events: broadcast::Sender<SchedulerEvent>,
    /// Published this round, told to listeners at its end.
    pending: Vec<SchedulerEvent>,
    /// Jobs submitted and not yet finished, for the Ctrl-C handler.
    active: Arc<AtomicUsize>,
}

impl EventLoop {
    pub(crate) fn new(
        deps: Arc<SchedulerDeps>,
        tx: mpsc::UnboundedSender<Command>,
        listeners: Vec<Box<dyn EventListener>>,
        events: broadcast::Sender<SchedulerEvent>,
        active: Arc<AtomicUsize>,
    ) -> EventLoop {
        EventLoop {
            deps,
            tx,
            jobs: BTreeMap::new(),
            executors: BTreeMap::new(),
            running: HashMap::new(),
            starved_since: None,
            listeners,
            events,
            pending: Vec::new(),
            active,
        }
    }

    /// Runs for the life of the runtime it was spawned on (the loop keeps
    /// a sender of its own, for the tasks it spawns).
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut changes = self.deps.backend.subscribe();
        self.refresh_executors();
        self.flush_events();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut speculation = self.deps.policy.speculation.map(|_| {
            let mut t = tokio::time::interval(Speculation::INTERVAL);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let deadline = self
                .starved_since
                .map(|t| tokio::time::Instant::from_std(t + self.deps.executor_wait));
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { return };
                    self.handle(command);
                    // Apply everything already queued before offering slots.
                    while let Ok(command) = rx.try_recv() {
                        self.handle(command);
                    }
                }
                _ = membership_changed(&mut changes) => self.refresh_executors(),
                _ = sleep_until(deadline) => self.starved(),
                _ = tick.tick() => self.abandon_unkilled(),
                _ = next_tick(&mut speculation) => self.check_speculation(),
            }
            // Membership may have changed while another branch ran: a
            // launch on a departed executor would cost its task an attempt.
            if let Some(rx) = changes.as_mut()
                && rx.has_changed().unwrap_or(false)
            {
                rx.borrow_and_update();
                self.refresh_executors();
            }
            self.offer_slots();
            self.finish_done_jobs();
            self.watch_starvation();
            self.flush_events();
        }
    }

    /// Queues events for [`EventLoop::flush_events`]. Listeners run once
    /// per round, after its launches are on their way: their work (the
    /// web UI's store, the event log) is then off each task's round trip.
    fn publish(&mut self, events: Vec<SchedulerEvent>) {
        self.pending.extend(events);
    }

    /// Tells listeners and subscribers every queued event, in order.
    fn flush_events(&mut self) {
        for event in std::mem::take(&mut self.pending) {
            for listener in &mut self.listeners {
                listener.on_event(&event);
            }
            // No subscriber is fine; a slow one loses the oldest events.
            let _ = self.events.send(event);
        }
    }

    fn handle(&mut self, command: Command) {
        let mut events = Vec::new();
        match command {
            Command::Submit(job) => {
                let mut job = *job;
                self.active.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job.id, stages = job.graph.stages.len(), "job started");
                events.push(SchedulerEvent::JobStarted {
                    job: job.id,
                    description: job.description.clone(),
                    stages: job.graph.stage_infos(),
                });
                if let Err(e) = job.submit_ready(&self.deps.policy, &mut events) {
                    job.abort(e, &mut events);
                }
                self.jobs.insert(job.id, job);
            }
            Command::TaskEnded {
                executor,
                status,
                launched,
            } => {
                if let Some(n) = self.running.get_mut(&executor) {
                    *n = n.saturating_sub(1);
                }
                events.push(SchedulerEvent::TaskEnded {
                    task: status.id,
                    executor: status.executor,
                    duration: launched.elapsed(),
                    metrics: status.metrics.clone(),
                    failure: status.result.as_ref().err().cloned(),
                });
                let mut kills = Vec::new();
                if let Some(job) = self.jobs.get_mut(&status.id.job)
                    && let Some(error) =
                        job.task_ended(status, &self.deps.policy, &mut events, &mut kills)
                {
                    kills.extend(job.abort(error, &mut events));
                }
                self.kill(kills);
            }
            Command::Cancel(which) => {
                let ids: Vec<JobId> = match which {
                    Some(id) => vec![id],
                    None => self.jobs.keys().copied().collect(),
                };
                for id in ids {
                    if let Some(job) = self.jobs.get_mut(&id)
                        && !job.is_aborting()
                    {
                        tracing::info!(job = %id, "cancelling");
                        job.cancelled = true;
                        let kills = job.abort(DriverError::Cancelled { job: id }, &mut events);
                        self.kill(kills);
                    }
                }
            }
            Command::Finished {
                job,
                result,
                outcome,
                started,
                reply,
            } => {
                events.push(SchedulerEvent::JobEnded {
                    job,
                    elapsed: started.elapsed(),
                    outcome,
                });
                self.active.fetch_sub(1, Ordering::Relaxed);
                // The summary listener must have seen the job's end before
                // its caller, who may ask for `last_job()` at once.
                self.publish(events);
                self.flush_events();
                if let Some(reply) = reply {
                    // The caller may have dropped its handle: fine.
                    let _ = reply.send(result);
                }
                return;
            }
        }
        self.publish(events);
    }

    /// Sends kill requests, grouped by executor, and once more a second
    /// later: a kill can overtake its task's launch on the way to a remote
    /// executor, which then finds nothing to kill. Killing an attempt that
    /// has ended does nothing.
    fn kill(&self, kills: Vec<(ExecutorId, TaskId)>) {
        let mut by_executor: HashMap<ExecutorId, Vec<TaskId>> = HashMap::new();
        for (executor, task) in kills {
            by_executor.entry(executor).or_default().push(task);
        }
        for (executor, tasks) in by_executor {
            let backend = self.deps.backend.clone();
            tokio::spawn(async move {
                backend.clone().kill(executor, tasks.clone()).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                backend.kill(executor, tasks).await;
            });
        }
    }

    /// Updates the membership and publishes who came and went.
    fn refresh_executors(&mut self) {
        let now: BTreeMap<ExecutorId, usize> = self.deps.backend.executors().into_iter().collect();
        let mut events = Vec::new();
        for (id, slots) in &now {
            if !self.executors.contains_key(id) {
                events.push(SchedulerEvent::ExecutorAdded {
                    executor: *id,
                    slots: *slots,
                    address: self.deps.backend.address(*id),
                });
            }
        }
        for id in self.executors.keys() {
            if !now.contains_key(id) {
                self.running.remove(id);
                events.push(SchedulerEvent::ExecutorRemoved { executor: *id });
            }
        }
        self.executors = now;
        self.publish(events);
    }

    /// The job that gets a free slot of `executor`, by the scheduling mode.
    fn pick_job(&self, executor: ExecutorId) -> Option<JobId> {
        let candidates = self.jobs.values().filter(|j| j.has_pending_on(executor));
        match self.deps.mode {
            SchedulingMode::Fifo => candidates.map(|j| j.id).next(),
            SchedulingMode::Fair => candidates
                .min_by_key(|j| (j.running_tasks(), j.id))
                .map(|j| j.id),
        }
    }

    /// Fills free slots with pending tasks, least loaded executor first
    /// (a speculative copy only goes to an executor its original does not
    /// run on).
    fn offer_slots(&mut self) {
        if !self.jobs.values().any(ActiveJob::has_pending) {
            return;
        }
        loop {
            let mut free: Vec<(usize, ExecutorId)> = self
                .executors
                .iter()
                .map(|(id, slots)| (*id, *slots, self.running.get(id).copied().unwrap_or(0)))
                .filter(|(_, slots, running)| running < slots)
                .map(|(id, _, running)| (running, id))
                .collect();
            free.sort();
            let Some((executor, job_id)) = free
                .into_iter()
                .find_map(|(_, e)| Some((e, self.pick_job(e)?)))
            else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&job_id) else {
                return;
            };
            match job.launch(executor, &self.deps.shuffle) {
                Ok(Some(launch)) => {
                    *self.running.entry(executor).or_default() += 1;
                    let launched = Instant::now();
                    self.publish(vec![SchedulerEvent::TaskStarted {
                        task: launch.id,
                        executor,
                        stage_attempt: launch.stage_attempt,
                        speculative: launch.speculative,
                    }]);
                    let run = self.deps.backend.clone().launch(
                        executor,
                        launch.stage,
                        launch.id,
                        launch.spec,
                    );
                    let tx = self.tx.clone();
                    let id = launch.id;
                    tokio::spawn(async move {
                        // A panicking launch must still report, or its slot
                        // and its job's count of tasks in flight would leak.
                        let status = futures::FutureExt::catch_unwind(AssertUnwindSafe(run))
                            .await
                            .unwrap_or_else(|_| {
                                failed(
                                    id,
                                    executor,
                                    FailureKind::Internal,
                                    format!("launching {id} panicked"),
                                )
                            });
                        let _ = tx.send(Command::TaskEnded {
                            executor,
                            status,
                            launched,
                        });
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    let mut events = Vec::new();
                    let kills = job.abort(e, &mut events);
                    self.kill(kills);
                    self.publish(events);
                }
            }
        }
    }

    /// Hands every job with nothing left to wait for to a cleanup task:
    /// commit or abort its files, delete its shuffle objects (every
    /// attempt's), let executors forget it, then report `Finished`.
    fn finish_done_jobs(&mut self) {
        let done: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.is_done())
            .map(|j| j.id)
            .collect();
        for id in done {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            let result = job.take_outcome();
            let outcome = match &result {
                Ok(_) => JobOutcome::Succeeded,
                Err(_) if job.cancelled => JobOutcome::Cancelled,
                Err(e) => JobOutcome::Failed(riffle_planner::report(e)),
            };
            let deps = self.deps.clone();
            let tx = self.tx.clone();
            let paths = job.tracker.all_attempts().to_vec();
            let output = job.graph.output.clone();
            let (started, reply) = (job.started, job.reply.take());
            tokio::spawn(async move {
                let mut result = result;
                let mut outcome = outcome;
                if let JobOutput::Files { dir, suffix } = &output {
                    match &result {
                        Ok(outputs) => {
                            if let Err(e) =
                                commit_files(&deps.stores, dir, id, outputs, suffix).await
                            {
                                outcome = JobOutcome::Failed(riffle_planner::report(&e));
                                result = Err(e);
                            }
                        }
                        Err(_) => abort_files(&deps.stores, dir, id).await,
                    }
                }
                if let Err(e) = deps.shuffle.delete_outputs(&paths).await {
                    tracing::warn!(job = %id, error = %e, "could not delete shuffle output");
                }
                // Executors forgetting the job's stages must not hold its
                // answer back (a hung one answers nobody).
                tokio::spawn(deps.backend.clone().remove_job(id));
                let _ = tx.send(Command::Finished {
                    job: id,
                    result,
                    outcome,
                    started,
                    reply,
                });
            });
        }
    }

    /// Ends aborting jobs whose killed tasks have not answered within
    /// [`KILL_GRACE`].
    fn abandon_unkilled(&mut self) {
        for job in self.jobs.values_mut() {
            if job.in_flight > 0
                && job
                    .aborting_since()
                    .is_some_and(|t| t.elapsed() > KILL_GRACE)
            {
                let n = job.abandon_in_flight();
                tracing::warn!(job = %job.id, tasks = n, "killed tasks did not stop in time; ending the job without them");
            }
        }
    }

    /// Marks stragglers for speculative copies (the next offer round
    /// launches them).
    fn check_speculation(&mut self) {
        let Some(spec) = self.deps.policy.speculation else {
            return;
        };
        for job in self.jobs.values_mut().filter(|j| !j.is_aborting()) {
            let n = job.check_speculation(&spec);
            if n > 0 {
                tracing::info!(job = %job.id, tasks = n, "speculating: copying tasks much slower than their stage's median");
            }
        }
    }

    /// Starts or stops the no-executor timer.
    fn watch_starvation(&mut self) {
        let starved = self.executors.values().all(|slots| *slots == 0)
            && self.jobs.values().any(ActiveJob::has_pending);
        match (starved, self.starved_since) {
            (true, None) => {
                tracing::debug!("tasks are pending and no executor is left: waiting for one");
                self.starved_since = Some(Instant::now());
            }
            (false, Some(_)) => self.starved_since = None,
            _ => {}
        }
    }

    /// The grace period ran out with no executor: fail every job that has
    /// tasks waiting, saying how to start an executor.
    fn starved(&mut self) {
        self.starved_since = None;
        // A registration may be waiting in the same `select!` round.
        self.refresh_executors();
        if !self.executors.values().all(|slots| *slots == 0) {
            return;
        }
        let mut events = Vec::new();
        let mut kills = Vec::new();
        for job in self.jobs.values_mut().filter(|j| j.has_pending()) {
            let stage = job.waiting_stage().unwrap_or_default();
            let error = DriverError::NoExecutors {
                waited: self.deps.executor_wait,
                registered: 0,
                wanted: 1,
                hint: format!(
                    "{stage} of {} cannot run; start an executor with `<this program> --executor --driver {}`",
                    job.id,
                    self.deps.driver_url.as_deref().unwrap_or("URL")
                ),
            };
            kills.extend(job.abort(error, &mut events));
        }
        self.kill(kills);
        self.publish(events);
    }
}

/// Resolves when the membership changes; never, without membership.
async fn membership_changed(changes: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = changes
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// The next tick of `interval`; never, without one.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`; never, without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

//! Scheduler tests on a fake backend, in the style of Spark's
//! `DAGSchedulerSuite`: deterministic and in-process. The fake records
//! every launch and kill; the test decides when and how each task ends.

use super::event_loop::SchedulerDeps;
use super::events::{JobOutcome, SchedulerEvent};
use super::*;
use crate::dataset::ops::{count_factory, stateless};
use crate::dataset::{Node, NodeKind, ShuffleDep, WriterSpec};
use crate::executors::StageMessage;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use riffle_planner::ids::{ExecutorId, ShuffleId, StageId, TaskId};
use riffle_planner::task::{
    BlockInfo, FailureKind, MapStatus, TaskFailure, TaskMetrics, TaskOutput, TaskStatus,
};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

struct Fake {
    executors: Mutex<Vec<(ExecutorId, usize)>>,
    changes: watch::Sender<u64>,
    launches: mpsc::UnboundedSender<(ExecutorId, TaskId)>,
    running: Mutex<HashMap<TaskId, (ExecutorId, oneshot::Sender<TaskStatus>)>>,
    killed: Mutex<Vec<TaskId>>,
    removed_jobs: Mutex<Vec<JobId>>,
}

impl Fake {
    fn set_executors(&self, executors: Vec<(ExecutorId, usize)>) {
        let gone: Vec<ExecutorId> = {
            let mut current = self.executors.lock().unwrap();
            let gone = current
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !executors.iter().any(|(e, _)| e == id))
                .collect();
            *current = executors;
            gone
        };
        // Like `Cluster::remove_executor`: its tasks come back as lost.
        self.running
            .lock()
            .unwrap()
            .retain(|_, (e, _)| !gone.contains(e));
        self.changes.send_modify(|n| *n += 1);
    }

    fn end(&self, id: TaskId, result: Result<TaskOutput, TaskFailure>) {
        let (executor, reply) = self
            .running
            .lock()
            .unwrap()
            .remove(&id)
            .unwrap_or_else(|| panic!("{id} is not running"));
        let _ = reply.send(TaskStatus {
            id,
            executor,
            result,
            metrics: TaskMetrics {
                records_read: 1,
                ..TaskMetrics::default()
            },
        });
    }
}

impl backend::TaskBackend for Fake {
    fn executors(&self) -> Vec<(ExecutorId, usize)> {
        self.executors.lock().unwrap().clone()
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.subscribe())
    }

    fn address(&self, executor: ExecutorId) -> String {
        format!("fake-{executor}")
    }

    fn launch(
        self: Arc<Self>,
        executor: ExecutorId,
        _stage: Arc<StageMessage>,
        id: TaskId,
        _spec: Vec<u8>,
    ) -> BoxFuture<'static, TaskStatus> {
        if !self.executors().iter().any(|(e, _)| *e == executor) {
            let status = backend::lost(id, executor, format!("{executor} is gone"));
            return Box::pin(async move { status });
        }
        let (tx, rx) = oneshot::channel();
        self.running.lock().unwrap().insert(id, (executor, tx));
        let _ = self.launches.send((executor, id));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| backend::lost(id, executor, format!("{executor} was lost")))
        })
    }

    fn kill(self: Arc<Self>, _executor: ExecutorId, tasks: Vec<TaskId>) -> BoxFuture<'static, ()> {
        for id in tasks {
            if self.running.lock().unwrap().contains_key(&id) {
                self.killed.lock().unwrap().push(id);
                self.end(
                    id,
                    Err(TaskFailure {
                        kind: FailureKind::Killed,
                        message: "killed".into(),
                    }),
                );
            }
        }
        Box::pin(async {})
    }

    fn remove_job(self: Arc<Self>, job: JobId) -> BoxFuture<'static, ()> {
        self.removed_jobs.lock().unwrap().push(job);
        Box::pin(async {})
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    fake: Arc<Fake>,
    scheduler: Scheduler,
    launches: mpsc::UnboundedReceiver<(ExecutorId, TaskId)>,
    shuffle: ShuffleStore,
    last: Arc<Mutex<JobSummary>>,
}

fn harness(slots: &[usize], mode: SchedulingMode, wait: Duration) -> Harness {
    harness_with(slots, mode, wait, None)
}

fn harness_with(
    slots: &[usize],
    mode: SchedulingMode,
    wait: Duration,
    speculation: Option<Speculation>,
) -> Harness {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (launches_tx, launches) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake {
        executors: Mutex::new(
            slots
                .iter()
                .enumerate()
                .map(|(i, s)| (ExecutorId(i as u32), *s))
                .collect(),
        ),
        changes: watch::channel(0).0,
        launches: launches_tx,
        running: Mutex::new(HashMap::new()),
        killed: Mutex::new(Vec::new()),
        removed_jobs: Mutex::new(Vec::new()),
    });
    let shuffle = ShuffleStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::from("shuffle"),
    );
    let last = Arc::new(Mutex::new(JobSummary::default()));
    let deps = SchedulerDeps {
        backend: fake.clone(),
        shuffle: shuffle.clone(),
        stores: ObjectStores::default(),
        policy: Policy {
            max_task_failures: 3,
            max_stage_attempts: 3,
            speculation,
        },
        executor_wait: wait,
        mode,
        driver_url: None,
    };
    let scheduler = Scheduler::start(rt.handle(), deps, last.clone(), Vec::new());
    Harness {
        rt,
        fake,
        scheduler,
        launches,
        shuffle,
        last,
    }
}

impl Harness {
    /// The next launch, waiting up to 20 s (a loaded CI machine is slow).
    fn launched(&mut self) -> (ExecutorId, TaskId) {
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), self.launches.recv())
                .await
                .expect("a task was launched")
                .expect("launch channel open")
        })
    }

    /// The next `n` launches, sorted by task id.
    fn launched_n(&mut self, n: usize) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = (0..n).map(|_| self.launched().1).collect();
        ids.sort_by_key(|t| (t.stage, t.partition, t.attempt));
        ids
    }

    /// Asserts nothing more is launched within 200 ms.
    fn no_launch(&mut self) {
        let next = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(200), self.launches.recv()).await
        });
        assert!(next.is_err(), "unexpected launch {next:?}");
    }

    fn wait<R>(&self, handle: JobHandle<R>) -> Result<R, DriverError> {
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .expect("the job ended")
        })
    }
}

fn source(partitions: usize) -> Arc<Node> {
    Arc::new(Node {
        label: "source".into(),
        partitions,
        kind: NodeKind::Parallelize {
            op: stateless(count_factory::<u64>, "source"),
            slices: vec![Vec::new(); partitions],
        },
    })
}

fn shuffled(parents: Vec<(u32, Arc<Node>)>, partitions: usize) -> Arc<Node> {
    Arc::new(Node {
        label: "reduce".into(),
        partitions,
        kind: NodeKind::Shuffled {
            reducer: stateless(count_factory::<u64>, "reducer"),
            deps: parents
                .into_iter()
                .map(|(s, parent)| ShuffleDep {
                    shuffle: ShuffleId(s),
                    parent,
                    writer: WriterSpec::Ready(stateless(count_factory::<u64>, "writer")),
                })
                .collect(),
        },
    })
}

fn result_job(node: Arc<Node>) -> JobSpec {
    JobSpec::Dataset {
        node,
        sink: FinalSink::Result(stateless(count_factory::<u64>, "result")),
    }
}

fn map_output(h: &Harness, id: TaskId, shuffle: u32, reduce: usize) -> TaskOutput {
    let path = h
        .shuffle
        .data_path(id.job, ShuffleId(shuffle), id.partition, id.attempt);
    TaskOutput::Shuffle(MapStatus {
        data_path: path.to_string(),
        blocks: vec![
            BlockInfo {
                offset: 0,
                len: 1,
                rows: 1,
                checksum: 0,
            };
            reduce
        ],
    })
}

fn ok(p: u32) -> Result<TaskOutput, TaskFailure> {
    Ok(TaskOutput::Result(vec![p as u8]))
}

fn failure(kind: FailureKind) -> Result<TaskOutput, TaskFailure> {
    Err(TaskFailure {
        kind,
        message: "boom".into(),
    })
}

fn submit(h: &Harness, spec: JobSpec) -> JobHandle<Vec<TaskOutput>> {
    h.scheduler.submit(spec, Ok)
}

#[test]
fn independent_map_stages_run_at_the_same_time_and_their_reducer_after_both() {
    let mut h = harness(&[4], SchedulingMode::Fifo, Duration::from_secs(5));
    let join = shuffled(vec![(1, source(2)), (2, source(2))], 2);
    let job = submit(&h, result_job(join));
    // Both map stages (0 and 1) launch at once: 4 slots, 4 tasks.
    let maps = h.launched_n(4);
    assert_eq!(
        maps.iter().map(|t| t.stage).collect::<Vec<_>>(),
        vec![StageId(0), StageId(0), StageId(1), StageId(1)]
    );
    for t in &maps[..3] {
        let out = map_output(&h, *t, t.stage.0 + 1, 2);
        h.fake.end(*t, Ok(out));
    }
    h.no_launch();
    let out = map_output(&h, maps[3], 2, 2);
    h.fake.end(maps[3], Ok(out));
    let reduces = h.launched_n(2);
    assert!(reduces.iter().all(|t| t.stage == StageId(2)));
    for t in reduces {
        h.fake.end(t, ok(t.partition));
    }
    let outputs = h.wait(job).unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(h.fake.removed_jobs.lock().unwrap().contains(&JobId(0)));
    let summary = h.last.lock().unwrap().clone();
    assert_eq!(summary.stages, 3);
    assert_eq!(summary.tasks, 6);
}

#[test]
fn a_retryable_failure_is_retried_until_the_attempt_limit() {
    let mut h = harness(&[1], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(source(1)));
    for attempt in 0..3 {
        let (_, t) = h.launched();
        assert_eq!((t.partition, t.attempt), (0, attempt));
        h.fake.end(t, failure(FailureKind::Retryable));
    }
    match h.wait(job) {
        Err(DriverError::TaskFailed { attempt, kind, .. }) => {
            assert_eq!(attempt, 2);
            assert_eq!(kind, FailureKind::Retryable);
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
}

#[test]
fn a_transient_failure_succeeds_on_retry_and_a_user_failure_is_not_retried() {
    let mut h = harness(&[1], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(source(1)));
    let (_, t) = h.launched();
    h.fake.end(t, failure(FailureKind::Retryable));
    let (_, t) = h.launched();
    assert_eq!(t.attempt, 1);
    h.fake.end(t, ok(7));
    assert!(h.wait(job).is_ok());

    let job = submit(&h, result_job(source(1)));
    let (_, t) = h.launched();
    h.fake.end(t, failure(FailureKind::User));
    assert!(matches!(
        h.wait(job),
        Err(DriverError::TaskFailed {
            kind: FailureKind::User,
            ..
        })
    ));
    h.no_launch();
}

#[test]
fn a_status_from_a_stale_attempt_is_ignored() {
    let mut h = harness(&[2], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(source(1)));
    let (e, first) = h.launched();
    h.fake.end(first, failure(FailureKind::Retryable));
    let (_, second) = h.launched();
    // A late duplicate of the failed attempt claims success: ignored.
    let _ = h.scheduler.tx.send(Command::TaskEnded {
        executor: e,
        status: TaskStatus {
            id: first,
            executor: e,
            result: ok(99),
            metrics: TaskMetrics::default(),
        },
        launched: std::time::Instant::now(),
    });
    h.no_launch();
    h.fake.end(second, ok(1));
    let outputs = h.wait(job).unwrap();
    assert!(matches!(&outputs[0], TaskOutput::Result(b) if b == &vec![1]));
}

#[test]
fn tasks_wait_for_an_executor_and_move_when_theirs_is_lost() {
    let mut h = harness(&[], SchedulingMode::Fifo, Duration::from_secs(30));
    let job = submit(&h, result_job(source(1)));
    h.no_launch();
    h.fake.set_executors(vec![(ExecutorId(5), 1)]);
    let (e, t) = h.launched();
    assert_eq!(e, ExecutorId(5));
    // The executor dies; another registers; the task runs there.
    h.fake.set_executors(vec![(ExecutorId(6), 1)]);
    let (e, t2) = h.launched();
    assert_eq!((e, t2.partition), (ExecutorId(6), t.partition));
    assert!(t2.attempt >= 1);
    h.fake.end(t2, ok(0));
    assert!(h.wait(job).is_ok());
}

#[test]
fn a_job_with_no_executor_fails_after_the_grace_period() {
    let h = harness(&[], SchedulingMode::Fifo, Duration::from_millis(100));
    let job = submit(&h, result_job(source(1)));
    match h.wait(job) {
        Err(e @ DriverError::NoExecutors { .. }) => {
            assert!(e.to_string().contains("start an executor"), "{e}")
        }
        other => panic!("expected NoExecutors, got {other:?}"),
    }
}

#[test]
fn cancelling_a_running_job_kills_its_tasks_and_deletes_every_attempt() {
    let mut h = harness(&[2], SchedulingMode::Fifo, Duration::from_secs(5));
    let mut events = h.scheduler.subscribe();
    let job = submit(&h, result_job(shuffled(vec![(1, source(3))], 1)));
    let maps = h.launched_n(2);
    // Map partition 0 fails once (attempt 0), partition 2 takes the slot,
    // partition 1 succeeds, partition 0 runs again as attempt 1.
    h.fake.end(maps[0], failure(FailureKind::Retryable));
    let (_, third) = h.launched();
    assert_eq!((third.partition, third.attempt), (2, 0));
    let out = map_output(&h, maps[1], 1, 1);
    h.fake.end(maps[1], Ok(out));
    let (_, retry) = h.launched();
    assert_eq!((retry.partition, retry.attempt), (0, 1));
    // What the attempts wrote (or began writing) before the cancel.
    let store = h.shuffle.store.clone();
    let written = [(0, 0), (0, 1), (1, 0), (2, 0)];
    for (p, a) in written {
        let path = h.shuffle.data_path(JobId(0), ShuffleId(1), p, a);
        h.rt.block_on(store.put(&path, "x".into())).unwrap();
    }
    job.cancel();
    assert!(matches!(h.wait(job), Err(DriverError::Cancelled { .. })));
    let mut killed = h.fake.killed.lock().unwrap().clone();
    killed.sort_by_key(|t| t.partition);
    assert_eq!(killed, vec![retry, third]);
    for (p, a) in written {
        let path = h.shuffle.data_path(JobId(0), ShuffleId(1), p, a);
        assert!(h.rt.block_on(store.head(&path)).is_err(), "{path} was left");
    }
    h.no_launch();
    let ended = h.rt.block_on(async {
        loop {
            if let SchedulerEvent::JobEnded { outcome, .. } = events.recv().await.unwrap() {
                return outcome;
            }
        }
    });
    assert_eq!(ended, JobOutcome::Cancelled);
}

/// Two jobs of 4 tasks on 2 slots, the second submitted while the first
/// holds both slots: the stage each freed slot goes to, by mode.
fn slot_order(mode: SchedulingMode) -> Vec<JobId> {
    let mut h = harness(&[2], mode, Duration::from_secs(5));
    let a = submit(&h, result_job(source(4)));
    let first = h.launched_n(2);
    let b = submit(&h, result_job(source(4)));
    h.no_launch();
    let mut order = Vec::new();
    let mut running = first;
    while let Some(t) = running.pop() {
        h.fake.end(t, ok(t.partition));
        if order.len() < 6 {
            let (_, next) = h.launched();
            order.push(next.job);
            running.insert(0, next);
        }
    }
    assert!(h.wait(a).is_ok());
    assert!(h.wait(b).is_ok());
    order
}

#[test]
fn fifo_gives_freed_slots_to_the_first_job_and_fair_shares_them() {
    let (a, b) = (JobId(0), JobId(1));
    assert_eq!(slot_order(SchedulingMode::Fifo), vec![a, a, b, b, b, b]);
    assert_eq!(slot_order(SchedulingMode::Fair), vec![b, a, b, a, b, b]);
}

#[test]
fn events_describe_the_job_and_a_bad_plan_fails_it_before_any_task() {
    let mut h = harness(&[1], SchedulingMode::Fifo, Duration::from_secs(5));
    let mut events = h.scheduler.subscribe();
    let job = submit(&h, result_job(source(1)));
    let (_, t) = h.launched();
    h.fake.end(t, ok(0));
    h.wait(job).unwrap();
    let mut kinds = Vec::new();
    h.rt.block_on(async {
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        {
            kinds.push(match e {
                SchedulerEvent::JobStarted { .. } => "job started",
                SchedulerEvent::StageSubmitted { .. } => "stage submitted",
                SchedulerEvent::TaskStarted { .. } => "task started",
                SchedulerEvent::TaskEnded { .. } => "task ended",
                SchedulerEvent::StageCompleted { .. } => "stage completed",
                SchedulerEvent::JobEnded { .. } => "job ended",
                // Membership events race the subscription: not counted.
                SchedulerEvent::ExecutorAdded { .. } | SchedulerEvent::ExecutorRemoved { .. } => {
                    continue;
                }
            });
        }
    });
    assert_eq!(
        kinds,
        vec![
            "job started",
            "stage submitted",
            "task started",
            "task ended",
            "stage completed",
            "job ended"
        ]
    );

    let bad = Arc::new(Node {
        label: "bad".into(),
        partitions: 1,
        kind: NodeKind::Invalid {
            error: "state does not serialize".into(),
        },
    });
    let job = submit(&h, result_job(bad));
    assert!(matches!(h.wait(job), Err(DriverError::Plan(m)) if m.contains("serialize")));
    h.no_launch();
}

fn fetch_failed(h: &Harness, map: TaskId, shuffle: u32) -> Result<TaskOutput, TaskFailure> {
    let path = h
        .shuffle
        .data_path(map.job, ShuffleId(shuffle), map.partition, map.attempt);
    Err(TaskFailure {
        kind: FailureKind::FetchFailed {
            shuffle: ShuffleId(shuffle),
            map_partition: map.partition,
            data_path: path.to_string(),
        },
        message: format!("{path} is missing"),
    })
}

/// Ends the 2 map tasks of a 2 x 2 shuffle job with their outputs; the
/// map tasks and the 2 reads launched next.
fn maps_then_reads(h: &mut Harness) -> (Vec<TaskId>, Vec<TaskId>) {
    let maps = h.launched_n(2);
    for t in &maps {
        let out = map_output(h, *t, 1, 2);
        h.fake.end(*t, Ok(out));
    }
    (maps, h.launched_n(2))
}

/// Two executors of 2 slots, speculating once half a stage finished.
fn speculating_harness() -> Harness {
    let spec = Speculation {
        multiplier: 1.5,
        quantile: 0.5,
    };
    harness_with(
        &[2, 2],
        SchedulingMode::Fifo,
        Duration::from_secs(5),
        Some(spec),
    )
}

#[test]
fn a_fetch_failure_recomputes_only_the_lost_map_output_then_the_unfinished_reads() {
    let mut h = harness(&[2], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(shuffled(vec![(1, source(2))], 2)));
    let (maps, reads) = maps_then_reads(&mut h);
    h.fake.end(reads[0], ok(0));
    // Statuses travel through tasks of their own: let this one land first
    // (a success arriving after its stage attempt ended would be stale).
    std::thread::sleep(Duration::from_millis(100));
    // Reduce partition 1 cannot read map partition 1's output.
    h.fake.end(reads[1], fetch_failed(&h, maps[1], 1));
    let (_, again) = h.launched();
    assert_eq!(
        (again.stage, again.partition, again.attempt),
        (StageId(0), 1, 1),
        "only the lost map output reruns, as a new attempt"
    );
    h.no_launch();
    let out = map_output(&h, again, 1, 2);
    h.fake.end(again, Ok(out));
    let (_, reread) = h.launched();
    assert_eq!(
        (reread.stage, reread.partition, reread.attempt),
        (StageId(1), 1, 1),
        "only the unfinished read reruns"
    );
    h.no_launch();
    h.fake.end(reread, ok(1));
    let outputs = h.wait(job).unwrap();
    let bytes: Vec<_> = outputs
        .iter()
        .map(|o| match o {
            TaskOutput::Result(b) => b.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bytes, vec![vec![0], vec![1]]);
    let summary = h.last.lock().unwrap().clone();
    assert_eq!(summary.resubmitted_stages, 2, "{summary}");
    assert_eq!(summary.recomputed_tasks, 2, "{summary}");
    assert_eq!(summary.failed_tasks, 1, "{summary}");
}

#[test]
fn a_map_output_lost_every_time_fails_the_job_after_the_stage_attempts() {
    let mut h = harness(&[1], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(shuffled(vec![(1, source(1))], 1)));
    for attempt in 0..3 {
        let (_, map) = h.launched();
        assert_eq!((map.stage, map.attempt), (StageId(0), attempt));
        let out = map_output(&h, map, 1, 1);
        h.fake.end(map, Ok(out));
        let (_, read) = h.launched();
        assert_eq!((read.stage, read.attempt), (StageId(1), attempt));
        h.fake.end(read, fetch_failed(&h, map, 1));
    }
    match h.wait(job) {
        Err(e @ DriverError::StageFailed { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("stage-1 was attempted 3 times")
                    && text.contains("map partition 0 of shuffle-1")
                    && text.contains("attempt 2 on executor-0"),
                "{text}"
            );
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
    h.no_launch();
}

#[test]
fn a_lost_executor_does_not_count_against_the_task() {
    let mut h = harness(&[1], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(source(1)));
    // More losses than the 3 attempts a task may fail.
    for attempt in 0..4 {
        let (_, t) = h.launched();
        assert_eq!(t.attempt, attempt);
        h.fake.end(t, failure(FailureKind::ExecutorLost));
    }
    let (_, t) = h.launched();
    h.fake.end(t, ok(1));
    assert!(h.wait(job).is_ok());
}

#[test]
fn a_straggler_gets_a_speculative_copy_elsewhere_and_the_first_success_wins() {
    let mut h = speculating_harness();
    let job = submit(&h, result_job(source(4)));
    let mut launched: Vec<(ExecutorId, TaskId)> = (0..4).map(|_| h.launched()).collect();
    launched.sort_by_key(|(_, t)| t.partition);
    for (_, t) in &launched[..3] {
        h.fake.end(*t, ok(t.partition));
    }
    let (slow_on, slow) = launched[3];
    // Longer than 1.5 x the median and the 100 ms floor: copied.
    let (copy_on, copy) = h.launched();
    assert_eq!((copy.partition, copy.attempt), (slow.partition, 1));
    assert_ne!(copy_on, slow_on, "a copy runs on another executor");
    h.fake.end(copy, ok(9));
    let outputs = h.wait(job).unwrap();
    assert!(matches!(&outputs[3], TaskOutput::Result(b) if b == &vec![9]));
    assert_eq!(h.fake.killed.lock().unwrap().clone(), vec![slow]);
    let summary = h.last.lock().unwrap().clone();
    assert_eq!(summary.speculative_tasks, 1, "{summary}");
    assert_eq!(summary.killed_tasks, 1, "{summary}");
}

#[test]
fn a_recomputed_output_that_is_not_deterministic_reruns_every_consumer_partition() {
    let mut h = harness(&[2], SchedulingMode::Fifo, Duration::from_secs(5));
    let mut graph = StageGraph::build(result_job(shuffled(vec![(1, source(2))], 2))).unwrap();
    graph.stages[0].deterministic = false;
    let (reply, rx) = oneshot::channel();
    let job = ActiveJob::new(JobId(0), graph, String::new(), reply);
    h.scheduler.tx.send(Command::Submit(Box::new(job))).unwrap();
    let (maps, reads) = maps_then_reads(&mut h);
    h.fake.end(reads[0], ok(0));
    std::thread::sleep(Duration::from_millis(100));
    h.fake.end(reads[1], fetch_failed(&h, maps[1], 1));
    let (_, again) = h.launched();
    assert_eq!((again.stage, again.partition), (StageId(0), 1));
    let out = map_output(&h, again, 1, 2);
    h.fake.end(again, Ok(out));
    // Partition 0 had read the old output: it reruns too.
    let rereads = h.launched_n(2);
    assert_eq!(
        rereads
            .iter()
            .map(|t| (t.stage, t.partition))
            .collect::<Vec<_>>(),
        vec![(StageId(1), 0), (StageId(1), 1)]
    );
    for t in rereads {
        h.fake.end(t, ok(t.partition + 10));
    }
    let outputs =
        h.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx).await })
            .unwrap()
            .unwrap()
            .unwrap();
    assert!(matches!(&outputs[0], TaskOutput::Result(b) if b == &vec![10]));
}

#[test]
fn outputs_lost_together_are_all_recovered_within_the_stage_attempt_limit() {
    let mut h = harness(&[2], SchedulingMode::Fifo, Duration::from_secs(5));
    let job = submit(&h, result_job(shuffled(vec![(1, source(2))], 2)));
    let (maps, reads) = maps_then_reads(&mut h);
    // Both map outputs are gone: reader 1 says so first; reader 0's report
    // arrives after its stage attempt ended (a stale status) and must
    // still count.
    h.fake.end(reads[1], fetch_failed(&h, maps[1], 1));
    // Let reader 1's status (which travels through a task of its own)
    // land before reader 0's is injected.
    std::thread::sleep(Duration::from_millis(100));
    let stale = TaskStatus {
        id: reads[0],
        executor: ExecutorId(0),
        result: fetch_failed(&h, maps[0], 1),
        metrics: TaskMetrics::default(),
    };
    let _ = h.scheduler.tx.send(Command::TaskEnded {
        executor: ExecutorId(0),
        status: stale,
        launched: std::time::Instant::now(),
    });
    let mut rerun = Vec::new();
    for _ in 0..2 {
        let (_, t) = h.launched();
        assert_eq!(t.stage, StageId(0));
        rerun.push(t.partition);
        let out = map_output(&h, t, 1, 2);
        h.fake.end(t, Ok(out));
    }
    rerun.sort();
    assert_eq!(rerun, vec![0, 1]);
    for t in h.launched_n(2) {
        assert_eq!(t.stage, StageId(1));
        h.fake.end(t, ok(t.partition));
    }
    assert!(h.wait(job).is_ok());
}

#[test]
fn a_speculative_copy_is_killed_when_the_original_fails_the_job() {
    let mut h = speculating_harness();
    let job = submit(&h, result_job(source(2)));
    let mut launched: Vec<(ExecutorId, TaskId)> = (0..2).map(|_| h.launched()).collect();
    launched.sort_by_key(|(_, t)| t.partition);
    h.fake.end(launched[0].1, ok(0));
    let slow = launched[1].1;
    let (_, copy) = h.launched();
    assert_eq!((copy.partition, copy.attempt), (1, 1));
    h.fake.end(slow, failure(FailureKind::User));
    assert!(matches!(h.wait(job), Err(DriverError::TaskFailed { .. })));
    assert_eq!(h.fake.killed.lock().unwrap().clone(), vec![copy]);
}

#[test]
fn bad_speculation_settings_are_refused() {
    for (multiplier, quantile) in [(0.5, 0.75), (f64::NAN, 0.75), (1.5, 1.5), (1.5, -0.1)] {
        let err = Speculation {
            multiplier,
            quantile,
        }
        .check()
        .unwrap_err();
        assert!(err.contains("speculation"), "{err}");
    }
    assert!(Speculation::default().check().is_ok());
}

//! Killing running tasks in process: a Dataset pipeline over a text file, a
//! shuffle read, and a SQL fragment are each cancelled while they run.
//!
//! The pipelines' sink is deliberately slow (it sleeps per item), so an
//! uncancelled task would run for tens of seconds: a status within a second,
//! and the sink seeing the end of its input within a second, can only come
//! from the kill. Nothing depends on how fast the machine is beyond that.

use crate::Executor;
use arrow_array::BinaryArray;
use riffle_planner::PipelineError;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use riffle_planner::pipeline::{BatchIter, Partition, ReduceOp, ShuffleWriteOp, TaskContext};
use riffle_planner::task::{
    Compression, FailureKind, FileSplit, PartitionPlan, ShuffleInput, SqlOutput, StageSink,
    StageSpec, TaskSpec, TaskStatus, encode,
};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use riffle_shuffle::writer::{encode_map_output, put_map_output};
use std::any::Any;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a test's slow sink observed; one slot per test, picked by the
/// operator's state byte, since tests run concurrently in one process.
struct Progress {
    started: AtomicBool,
    ended: AtomicBool,
    items: AtomicU64,
}

impl Progress {
    const fn new() -> Self {
        Progress {
            started: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            items: AtomicU64::new(0),
        }
    }
}

static PROGRESS: [Progress; 3] = [Progress::new(), Progress::new(), Progress::new()];

const TEXT_SLOT: u8 = 0;
const SHUFFLE_SLOT: u8 = 1;
const PREPARED_SLOT: u8 = 2;

/// Per item: long enough that no input used here is consumed in under ten
/// seconds unless the task is killed.
const SLOW_ITEM: Duration = Duration::from_millis(1);

/// A shuffle writer that consumes its input slowly and writes one empty
/// reduce partition.
struct SlowWriter<T> {
    progress: &'static Progress,
    _items: std::marker::PhantomData<fn() -> T>,
}

impl<T: 'static> ShuffleWriteOp for SlowWriter<T> {
    fn write(
        &self,
        input: Partition,
        _partitions: usize,
        _ctx: &TaskContext,
        _out: &mut riffle_planner::pipeline::MapOutputSink<'_>,
    ) -> Result<(), PipelineError> {
        for _ in input.into_typed::<T>()? {
            self.progress.items.fetch_add(1, Ordering::SeqCst);
            self.progress.started.store(true, Ordering::SeqCst);
            std::thread::sleep(SLOW_ITEM);
        }
        self.progress.ended.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn slow_writer_factory<T: 'static>(
    state: &[u8],
) -> Result<Box<dyn Any + Send + Sync>, PipelineError> {
    let slot = state.first().copied().unwrap_or(0) as usize;
    let op: Box<dyn ShuffleWriteOp> = Box::new(SlowWriter::<T> {
        progress: &PROGRESS[slot],
        _items: std::marker::PhantomData,
    });
    Ok(Box::new(op))
}

/// The reduce side of one shuffle, passed through batch by batch.
struct Batches;

impl ReduceOp for Batches {
    fn reduce(
        &self,
        inputs: Vec<BatchIter>,
        _ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        Ok(Partition::new::<BinaryArray>(Box::new(
            inputs.into_iter().flatten(),
        )))
    }
}

fn batches_factory(_: &[u8]) -> Result<Box<dyn Any + Send + Sync>, PipelineError> {
    let op: Box<dyn ReduceOp> = Box::new(Batches);
    Ok(Box::new(op))
}

fn executor(shuffle_dir: &Path) -> Arc<Executor> {
    let stores = ObjectStores::default();
    let url = ObjectStores::to_url(&shuffle_dir.display().to_string()).unwrap();
    let (store, prefix) = stores.resolve(&url).unwrap();
    let shuffle = ShuffleStore::new(store, prefix);
    Arc::new(
        Executor::new(
            ExecutorId(7),
            2,
            tokio::runtime::Handle::current(),
            stores,
            shuffle,
            &crate::memory::MemoryConfig::default(),
        )
        .unwrap(),
    )
}

fn task_id(job: u32) -> TaskId {
    TaskId {
        job: JobId(job),
        stage: StageId(1),
        partition: 0,
        attempt: 0,
    }
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Waits (up to `limit`) for `condition`; panics naming `what` otherwise.
async fn wait_for(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Launches `task`, waits until `started`, kills it with `cancel`, and
/// returns the status, asserting it is `Killed` and came within a second.
async fn launch_and_kill(
    executor: &Arc<Executor>,
    task: TaskSpec,
    started: impl Fn() -> bool,
    cancel: impl FnOnce(&Executor) -> usize,
) -> TaskStatus {
    let bytes = encode(&task).unwrap();
    let running = {
        let executor = executor.clone();
        tokio::spawn(async move { executor.run(&bytes).await })
    };
    wait_for("the task to start", Duration::from_secs(30), started).await;
    let killed_at = Instant::now();
    assert_eq!(cancel(executor), 1, "the task is running and found");
    let status = tokio::time::timeout(Duration::from_secs(1), running)
        .await
        .expect("a killed task reports within a second")
        .unwrap()
        .unwrap();
    assert!(killed_at.elapsed() < Duration::from_secs(1));
    match &status.result {
        Err(failure) => {
            assert_eq!(failure.kind, FailureKind::Killed, "{}", failure.message);
            assert!(!failure.kind.retryable());
        }
        Ok(output) => panic!("a killed task succeeded: {output:?}"),
    }
    assert_eq!(status.id, task.id);
    // Its registry entry went with it.
    assert_eq!(executor.cancel_tasks(&[task.id]), 0);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_text_file_task_stops_its_source_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shuffle_dir = dir.path().join("shuffle");
    std::fs::create_dir(&shuffle_dir).unwrap();
    // 16 MiB of lines: several ranged reads, and far more lines than the
    // slow sink gets through in the test.
    let input = dir.path().join("input.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut size = 0u64;
    let mut line = 0u64;
    while size < 16 << 20 {
        let text = format!("line {line:>10} of a large generated input file\n");
        file.write_all(text.as_bytes()).unwrap();
        size += text.len() as u64;
        line += 1;
    }
    file.flush().unwrap();
    drop(file);

    let executor = executor(&shuffle_dir);
    let id = task_id(1);
    let stage = StageSpec {
        job: id.job,
        stage: id.stage,
        attempt: 0,
        ops: vec![FnRef::new(
            slow_writer_factory::<String>,
            vec![TEXT_SLOT],
            "slow_writer",
        )],
        sink: StageSink::Shuffle {
            shuffle: ShuffleId(3),
            writer: 0,
            partitions: 1,
        },
    };
    // SAFETY: encoded by this test, in this process.
    unsafe { executor.register_stage(&encode(&stage).unwrap()) }.unwrap();
    let task = TaskSpec {
        id,
        plan: PartitionPlan::TextFile(FileSplit {
            url: format!("file://{}", input.display()),
            start: 0,
            end: size,
            size,
            compression: Compression::None,
        }),
    };
    let progress = &PROGRESS[TEXT_SLOT as usize];
    let status = launch_and_kill(
        &executor,
        task,
        || progress.started.load(Ordering::SeqCst),
        |e| e.cancel_tasks(&[id]),
    )
    .await;
    assert!(status.metrics.records_read > 0);

    // The source ended at its next line, so the sink saw the end of its
    // input (an uncancelled run lasts over ten seconds).
    wait_for("the sink to end", Duration::from_secs(1), || {
        progress.ended.load(Ordering::SeqCst)
    })
    .await;
    assert!(progress.items.load(Ordering::SeqCst) < line);
    // The CPU side is done and the task's future has returned: nothing can
    // be committed any more, and nothing was.
    assert_eq!(files_under(&shuffle_dir), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_kills_its_shuffle_read() {
    let dir = tempfile::tempdir().unwrap();
    let shuffle_dir = dir.path().join("shuffle");
    std::fs::create_dir(&shuffle_dir).unwrap();
    let executor = executor(&shuffle_dir);
    let job = JobId(2);

    // One parent map output of one block; the reduce task reads that block
    // many times over, each read one batch for the slow sink.
    let shuffle = ShuffleId(1);
    let records: Vec<&[u8]> = vec![b"record"; 100];
    let encoded = encode_map_output(
        vec![BinaryArray::from_vec(records)],
        riffle_shuffle::ShuffleCompression::None,
    )
    .unwrap();
    let store = &executor.env.shuffle;
    let map = put_map_output(store, store.data_path(job, shuffle, 0, 0), encoded)
        .await
        .unwrap();
    let block = map.block_location(0, 0).unwrap();
    let before = files_under(&shuffle_dir);
    assert_eq!(before.len(), 2, "one data object and its index");

    let id = TaskId {
        job,
        stage: StageId(2),
        partition: 0,
        attempt: 0,
    };
    let stage = StageSpec {
        job,
        stage: id.stage,
        attempt: 0,
        ops: vec![
            FnRef::new(batches_factory, vec![], "batches"),
            FnRef::new(
                slow_writer_factory::<BinaryArray>,
                vec![SHUFFLE_SLOT],
                "slow_writer",
            ),
        ],
        sink: StageSink::Shuffle {
            shuffle: ShuffleId(2),
            writer: 1,
            partitions: 1,
        },
    };
    // SAFETY: encoded by this test, in this process.
    unsafe { executor.register_stage(&encode(&stage).unwrap()) }.unwrap();
    let blocks = 20_000;
    let task = TaskSpec {
        id,
        plan: PartitionPlan::Shuffled {
            op: 0,
            inputs: vec![ShuffleInput {
                shuffle,
                partition: 0,
                blocks: vec![block; blocks],
            }],
        },
    };
    let progress = &PROGRESS[SHUFFLE_SLOT as usize];
    let status = launch_and_kill(
        &executor,
        task,
        || progress.started.load(Ordering::SeqCst),
        |e| e.cancel_job(job),
    )
    .await;
    assert!(status.metrics.shuffle_bytes_read > 0);
    wait_for("the sink to end", Duration::from_secs(1), || {
        progress.ended.load(Ordering::SeqCst)
    })
    .await;
    assert!(progress.items.load(Ordering::SeqCst) < blocks as u64);
    assert_eq!(files_under(&shuffle_dir), before, "no map output written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_sql_task_aborts_its_datafusion_task() {
    use riffle_sql::datafusion::prelude::CsvReadOptions;

    let dir = tempfile::tempdir().unwrap();
    let shuffle_dir = dir.path().join("shuffle");
    std::fs::create_dir(&shuffle_dir).unwrap();
    let csv = dir.path().join("t.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(file, "a,b").unwrap();
    for i in 0..2_000 {
        writeln!(file, "{i},{}", i % 13).unwrap();
    }
    file.flush().unwrap();
    drop(file);

    // A three-way cross join: 8e9 rows to count, minutes of work.
    let executor = executor(&shuffle_dir);
    let stores = ObjectStores::default();
    let url = ObjectStores::to_url(&shuffle_dir.display().to_string()).unwrap();
    let (store, prefix) = stores.resolve(&url).unwrap();
    let session =
        riffle_sql::engine::new_session(1, stores, ShuffleStore::new(store, prefix)).unwrap();
    session
        .register_csv("t", &csv.display().to_string(), CsvReadOptions::new())
        .await
        .unwrap();
    let plan = session
        .sql("SELECT count(*) FROM t x, t y, t z WHERE x.b + y.b + z.b >= 0")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut next = 0;
    let stages = riffle_sql::stages::split(plan, &mut || {
        next += 1;
        ShuffleId(next)
    })
    .unwrap();
    // The first stage holds the join, whatever the cut above it.
    let first = stages.first().unwrap();
    let output = match first.shuffle {
        Some(shuffle) => SqlOutput::Shuffle { shuffle },
        None => SqlOutput::Result,
    };
    let id = task_id(3);
    let stage = StageSpec {
        job: id.job,
        stage: id.stage,
        attempt: 0,
        ops: Vec::new(),
        sink: StageSink::Sql {
            plan: riffle_sql::codec::encode_plan(first.plan.clone()).unwrap(),
            output,
        },
    };
    // SAFETY: encoded by this test, in this process.
    unsafe { executor.register_stage(&encode(&stage).unwrap()) }.unwrap();
    let task = TaskSpec {
        id,
        plan: PartitionPlan::Sql { partition: 0 },
    };
    let sql_runtime = executor.sql.get().unwrap().runtime_metrics().unwrap();
    launch_and_kill(
        &executor,
        task,
        || sql_runtime.num_alive_tasks() > 0,
        |e| e.cancel_tasks(&[id]),
    )
    .await;
    // The DataFusion task was aborted (its streams dropped), not left to
    // run in the background.
    wait_for("the DataFusion task to end", Duration::from_secs(1), || {
        sql_runtime.num_alive_tasks() == 0
    })
    .await;
    assert_eq!(files_under(&shuffle_dir), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_before_it_starts_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let shuffle_dir = dir.path().join("shuffle");
    std::fs::create_dir(&shuffle_dir).unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "one\ntwo\n").unwrap();
    let executor = executor(&shuffle_dir);
    let id = task_id(4);
    let stage = StageSpec {
        job: id.job,
        stage: id.stage,
        attempt: 0,
        ops: vec![FnRef::new(
            slow_writer_factory::<String>,
            vec![PREPARED_SLOT],
            "slow_writer",
        )],
        sink: StageSink::Shuffle {
            shuffle: ShuffleId(5),
            writer: 0,
            partitions: 1,
        },
    };
    // SAFETY: encoded by this test, in this process.
    unsafe { executor.register_stage(&encode(&stage).unwrap()) }.unwrap();
    let task = TaskSpec {
        id,
        plan: PartitionPlan::TextFile(FileSplit {
            url: format!("file://{}", input.display()),
            start: 0,
            end: 8,
            size: 8,
            compression: Compression::None,
        }),
    };
    // As the worker does: registered at launch, started later; the cancel
    // comes in between.
    let prepared = executor.prepare(&encode(&task).unwrap()).unwrap();
    assert_eq!(prepared.id(), id);
    assert_eq!(executor.cancel_job(id.job), 1);
    let status = prepared.run().await;
    assert_eq!(status.result.unwrap_err().kind, FailureKind::Killed);
    assert_eq!(status.metrics.records_read, 0);
    let progress = &PROGRESS[PREPARED_SLOT as usize];
    assert!(!progress.started.load(Ordering::SeqCst) && !progress.ended.load(Ordering::SeqCst));
    assert_eq!(executor.cancel_tasks(&[id]), 0);
    assert_eq!(files_under(&shuffle_dir), Vec::<std::path::PathBuf>::new());
}

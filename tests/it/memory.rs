//! Bounded memory: real executor processes under a cgroup v1 memory limit
//! (see `../shared/TESTING.md`), and spill files cleaned up after failures.

use riffle::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const CGROUP_ROOT: &str = "/sys/fs/cgroup/memory";

/// A cgroup v1 memory cgroup of its own, removed when dropped (its
/// processes have exited by then).
struct Cgroup(PathBuf);

impl Cgroup {
    /// A new cgroup limited to `bytes`, or `None` (with the reason printed)
    /// where the memory controller cannot be used.
    fn new(name: &str, bytes: u64) -> Option<Cgroup> {
        let path = Path::new(CGROUP_ROOT).join(format!("riffle-{name}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&path)
            .and_then(|()| std::fs::write(path.join("memory.limit_in_bytes"), bytes.to_string()))
        {
            eprintln!(
                "skipped: no cgroup v1 memory controller here ({}: {e})",
                path.display()
            );
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(Cgroup(path))
    }

    /// How many processes the kernel OOM-killed in the cgroup.
    fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.0.join("memory.oom_control"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// Runs the `spill` example inside the cgroup on `local-cluster[1,2]`
    /// (driver and executor process both under the limit), with `env`.
    fn run_spill(&self, job: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let example = crate::examples::example("spill");
        Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&self.0)
            .arg(example)
            .args(["--partitions", "2", "--master", "local-cluster[1,2]"])
            .args(job)
            .envs(env.iter().copied())
            .env("RIFFLE_EXECUTOR_WAIT_SECS", "3")
            .env("RIFFLE_UI", "0")
            .output()
            .unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` once killed tasks have had up to 5 s to end.
fn files_left_after(dir: &Path) -> Vec<PathBuf> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !files_under(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    files_under(dir)
}

/// A word count, a sort, a join and a SQL `GROUP BY` that hold several
/// times the executor's memory pool give the unconstrained answers inside a
/// 400 MiB cgroup, spill, and nobody is OOM-killed; the spill directory is
/// empty afterwards. With no pool limit the join's executor is OOM-killed
/// in the same cgroup: the limit bites.
#[test]
fn wide_operations_spill_under_a_memory_limit_instead_of_dying() {
    let spill_dir = tempfile::tempdir().unwrap();
    let spill = spill_dir.path().to_str().unwrap();
    let jobs: [(&[&str], String); 4] = [
        (
            &["words", "3000000"],
            "words: keys=3000000 checksum=8999997000000".into(),
        ),
        (
            &["sort", "3000000"],
            "sort: records=3000000 ordered=true".into(),
        ),
        (
            &["join", "2000000"],
            "join: pairs=2000000 checksum=127999936000000".into(),
        ),
        (
            &["sql-group", "3000000"],
            "sql-group: groups=3000000 rows=6000000".into(),
        ),
    ];
    for (job, expected) in &jobs {
        let Some(cgroup) = Cgroup::new(job[0], 400 << 20) else {
            return;
        };
        let out = cgroup.run_spill(
            job,
            &[
                ("RIFFLE_EXECUTOR_MEMORY", "48m"),
                ("RIFFLE_SPILL_DIR", spill),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{job:?} failed under the limit: {stderr}"
        );
        assert_eq!(stdout.trim(), expected, "{job:?}");
        assert!(
            stderr.contains("spilled: "),
            "{job:?} did not spill: {stderr}"
        );
        assert_eq!(cgroup.oom_kills(), 0, "{job:?}");
        assert_eq!(files_under(spill_dir.path()), Vec::<PathBuf>::new());
    }

    let Some(cgroup) = Cgroup::new("unlimited", 400 << 20) else {
        return;
    };
    let out = cgroup.run_spill(
        &["join", "2000000"],
        &[("RIFFLE_EXECUTOR_MEMORY", "unlimited")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the negative control passed: {stderr}"
    );
    assert!(cgroup.oom_kills() > 0, "{stderr}");
}

/// A task that fails after spilling leaves no spill file: the runs are
/// deleted as the failed task's operators are dropped.
#[test]
fn a_failed_task_leaves_no_spill_file() {
    let spill_dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .master("local[2]")
        .spill(Some(spill_dir.path().to_path_buf()), None)
        .force_spill_every(10)
        .max_attempts(1)
        .build()
        .unwrap();
    let err = ctx
        .parallelize((0..5000u32).map(|i| (i % 700, i)).collect(), 2)
        .reduce_by_key(|a, b| a + b)
        .map(|(k, v)| {
            // Runs only once the reduce side has spilled and is merging.
            assert!(k != 13, "bad key {k} ({v})");
            (k, v)
        })
        .count()
        .unwrap_err();
    assert!(err.to_string().contains("bad key 13"), "{err}");
    // The job fails with its first failed task; the other task is killed
    // and ends at its next record.
    assert_eq!(files_left_after(spill_dir.path()), Vec::<PathBuf>::new());
    // The same job without the failure spilled into that directory.
    let n = ctx
        .parallelize((0..5000u32).map(|i| (i % 700, i)).collect(), 2)
        .reduce_by_key(|a, b| a + b)
        .count()
        .unwrap();
    assert_eq!(n, 700);
    assert!(ctx.last_job().spill_count > 0);
    assert_eq!(files_under(spill_dir.path()), Vec::<PathBuf>::new());
}

/// A row of the SQL join test's tables.
#[derive(serde::Serialize, serde::Deserialize)]
struct Keyed {
    k: i64,
    pad: String,
}

/// SQL draws from the same pool: a sort and an aggregation over more than
/// it holds spill (and give the unconstrained answer); a hash join whose
/// build side cannot fit fails with an error naming the setting, never an
/// out-of-memory kill.
#[test]
fn sql_spills_or_names_the_memory_setting() {
    let spill_dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .master("local[2]")
        // SQL reservations count 3x (executor/src/memory/pool.rs): SQL
        // operators see 4 MiB of this.
        .executor_memory(12 << 20)
        .spill(Some(spill_dir.path().to_path_buf()), None)
        .max_attempts(1)
        .build()
        .unwrap();
    let rows = |n: i64| {
        ctx.parallelize((0..n).collect(), 4).map(|k| Keyed {
            k,
            pad: format!("{k:0>60}"),
        })
    };
    ctx.register_dataset("a", &rows(200_000)).unwrap();
    ctx.register_dataset("b", &rows(200_000)).unwrap();
    let batches = ctx
        .sql(
            "SELECT count(*) AS n, sum(c) AS s FROM \
             (SELECT pad, count(*) AS c FROM a GROUP BY pad ORDER BY pad DESC)",
        )
        .unwrap()
        .collect()
        .unwrap();
    let text = riffle::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("200000"), "{text}");
    assert!(ctx.last_job().spill_count > 0, "{}", ctx.last_job());

    let err = ctx
        .sql("SELECT count(*) FROM a JOIN b ON a.pad = b.pad")
        .unwrap()
        .collect()
        .unwrap_err();
    let message = riffle::report(&err);
    assert!(message.contains("RIFFLE_EXECUTOR_MEMORY"), "{message}");
    assert_eq!(files_left_after(spill_dir.path()), Vec::<PathBuf>::new());
}

/// A job cancelled while its reduce tasks merge spilled runs leaves no
/// spill file: the killed tasks' merges stop at their next record and
/// their runs are deleted.
#[test]
fn a_cancelled_job_leaves_no_spill_file() {
    let spill_dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .master("local[2]")
        .spill(Some(spill_dir.path().to_path_buf()), None)
        .force_spill_every(10)
        .build()
        .unwrap();
    let mut events = ctx.subscribe_events();
    let handle = ctx
        .parallelize((0..20_000u32).map(|i| (i % 3000, i)).collect(), 2)
        .group_by_key()
        .map(|(k, vs)| {
            // Slow, so the merge is still going when the job is cancelled.
            std::thread::sleep(std::time::Duration::from_millis(2));
            (k, vs.len())
        })
        .count_async();
    // Cancel once a reduce task has started (its runs are on disk by then).
    let started = std::time::Instant::now();
    let mut reduce_started = false;
    while !reduce_started && started.elapsed() < std::time::Duration::from_secs(30) {
        match events.try_recv() {
            Ok(riffle::SchedulerEvent::TaskStarted { task, .. }) if task.stage.0 > 0 => {
                reduce_started = true;
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    assert!(reduce_started, "no reduce task started");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !files_under(spill_dir.path()).is_empty(),
        "nothing spilled yet"
    );
    handle.cancel();
    let err = handle.wait().unwrap_err();
    assert!(err.to_string().contains("cancel"), "{err}");
    // The killed tasks' CPU side ends at its next record.
    assert_eq!(files_left_after(spill_dir.path()), Vec::<PathBuf>::new());
}

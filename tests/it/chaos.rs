//! Real processes failing under a running job (issue 9): an executor
//! process killed in the middle of a map stage and in the middle of a
//! reduce stage, and one stopped (a hung machine: it neither answers nor
//! dies). Every job must end with the fault-free answer, and the driver's
//! log must show that the fault hit the stage it aimed at (a task of that
//! stage retried after its executor was lost), so a fault that came too
//! early or too late fails the test instead of passing it vacuously.
//!
//! Where a stage is, is read from the shuffle store (a local directory):
//! a map task's index object is written last, so fewer index objects than
//! map tasks means the map stage is running, and all of them means it
//! is over.

use crate::cluster::{Processes, child_pids, wait_for_stderr, wait_output, wait_until_gone};
use crate::examples::example;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Input files, gzipped: one map task each (plain files would be split by
/// size and slots), and as many reduce partitions (`reduce_by_key` keeps
/// the number of partitions). Twice the 3 slots, so every executor is busy
/// while a stage runs.
const FILES: usize = 6;

fn generate(lines: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines,
        files: FILES,
        seed: 9,
        out: dir.path().to_path_buf(),
        gzip: true,
        wild: false,
    })
    .unwrap();
    dir
}

/// The job's answer with no fault, embedded.
fn fault_free(job: &str, args: &[&str]) -> String {
    let out = Command::new(example(job))
        .args(["--master", "local[2]"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{job} {args:?}: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `job` on `local-cluster[3,1]` at RIFFLE_LOG=info with its
/// shuffle store in `shuffle`; returns its index in `procs` once the job
/// started, and its 3 executor processes.
fn start_on_local_cluster(
    procs: &mut Processes,
    job: &str,
    args: &[&str],
    shuffle: &Path,
    env: &[(&str, &str)],
) -> (usize, Vec<u32>) {
    let child = Command::new(example(job))
        .args(["--master", "local-cluster[3,1]"])
        .args(args)
        .env("RIFFLE_LOG", "info")
        .env(
            "RIFFLE_SHUFFLE_STORE",
            format!("file://{}", shuffle.display()),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let driver = procs.push(child);
    wait_for_stderr(procs, driver, "job started", Duration::from_secs(60));
    let executors = child_pids(pid);
    assert_eq!(executors.len(), 3, "{executors:?}");
    (driver, executors)
}

/// Map outputs complete in the shuffle store (their index objects).
fn map_outputs(shuffle: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        let mut n = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                n += walk(&path);
            } else if path.extension().is_some_and(|e| e == "index") {
                n += 1;
            }
        }
        n
    }
    walk(shuffle)
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A stopped process, continued and killed when the test ends whatever
/// happens (stopped, it would not see its driver go away).
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        for s in ["CONT", "KILL"] {
            let _ = Command::new("kill")
                .args([&format!("-{s}"), &self.0.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits for the driver to end, asserts it succeeded; its stdout and stderr.
fn finish(procs: &mut Processes, driver: usize) -> (String, String) {
    let (ok, out, err) = wait_output(procs, driver, Duration::from_secs(180));
    assert!(ok, "the job failed: {err}");
    (out, err)
}

/// Asserts that an executor was lost and a task of stage `stage` retried.
fn assert_retried(err: &str, stage: &str) {
    assert!(err.contains("executor lost"), "no executor lost: {err}");
    let retried = err
        .lines()
        .any(|l| l.contains("task failed; retrying") && l.contains(&format!("/{stage}/task-")));
    assert!(retried, "no task of {stage} was retried: {err}");
}

/// Waits until `pred` holds for the map outputs of `shuffle`.
fn wait_for_outputs(shuffle: &Path, what: &str, pred: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pred(map_outputs(shuffle)) {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_executor_killed_mid_map_stage_leaves_the_cloudfront_report_unchanged() {
    let input = generate(300_000);
    let dir = input.path().to_str().unwrap();
    let expected = fault_free("cloudfront", &[dir]);
    let shuffle = tempfile::tempdir().unwrap();
    let mut procs = Processes::default();
    let (driver, executors) =
        start_on_local_cluster(&mut procs, "cloudfront", &[dir], shuffle.path(), &[]);
    // Mid map stage: some time in, and not every map output written yet.
    std::thread::sleep(Duration::from_millis(300));
    let done = map_outputs(shuffle.path());
    assert!(
        done < FILES,
        "the map stage ended before the kill ({done} outputs)"
    );
    signal(executors[0], "KILL");
    let (out, err) = finish(&mut procs, driver);
    assert_eq!(out, expected, "{err}");
    assert_retried(&err, "stage-0");
    wait_until_gone(&executors, "executor processes outlived the job");
}

/// The CloudFront report's reduce stage merges a handful of counters and
/// lasts milliseconds, too short to aim a kill at from outside: a delay
/// failpoint holds each reduce task's first attempt for 3 s (a kill still
/// stops it), so the stage is surely running when the executor dies.
#[test]
fn an_executor_killed_mid_reduce_stage_leaves_the_cloudfront_report_unchanged() {
    let input = generate(300_000);
    let dir = input.path().to_str().unwrap();
    let expected = fault_free("cloudfront", &[dir]);
    let shuffle = tempfile::tempdir().unwrap();
    let mut procs = Processes::default();
    let (driver, executors) = start_on_local_cluster(
        &mut procs,
        "cloudfront",
        &[dir],
        shuffle.path(),
        &[("RIFFLE_FAILPOINTS", "task-delay(stage=1,attempt=0,ms=3000)")],
    );
    // Every map output written: the reduce stage is being launched.
    wait_for_outputs(shuffle.path(), "the map stage did not end", |n| n >= FILES);
    std::thread::sleep(Duration::from_millis(500));
    signal(executors[0], "KILL");
    let (out, err) = finish(&mut procs, driver);
    assert_eq!(out, expected, "{err}");
    assert_retried(&err, "stage-1");
    wait_until_gone(&executors, "executor processes outlived the job");
}

#[test]
fn a_stopped_executor_has_its_tasks_rerun_after_the_heartbeat_timeout() {
    let input = generate(300_000);
    let dir = input.path().to_str().unwrap();
    let expected = fault_free("cloudfront", &[dir]);
    let shuffle = tempfile::tempdir().unwrap();
    let mut procs = Processes::default();
    let started = Instant::now();
    let (driver, executors) = start_on_local_cluster(
        &mut procs,
        "cloudfront",
        &[dir],
        shuffle.path(),
        &[("RIFFLE_HEARTBEAT_TIMEOUT_MS", "2000")],
    );
    std::thread::sleep(Duration::from_millis(300));
    let done = map_outputs(shuffle.path());
    assert!(
        done < FILES,
        "the map stage ended before the stop ({done} outputs)"
    );
    signal(executors[0], "STOP");
    let stopped = Stopped(executors[0]);
    let (out, err) = finish(&mut procs, driver);
    assert_eq!(out, expected, "{err}");
    assert!(err.contains("no heartbeat for"), "{err}");
    assert_retried(&err, "stage-0");
    assert!(started.elapsed() > Duration::from_secs(2));
    // The driver killed its children as it ended, the stopped one too.
    drop(stopped);
    wait_until_gone(&executors, "executor processes outlived the job");
}

#[test]
fn a_bad_heartbeat_timeout_is_refused_naming_the_variable() {
    for (value, says) in [("soon", "is not a number"), ("100", "must exceed")] {
        let out = Command::new(example("cloudfront"))
            .args(["--master", "local[1]", "/nonexistent"])
            .env("RIFFLE_HEARTBEAT_TIMEOUT_MS", value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("RIFFLE_HEARTBEAT_TIMEOUT_MS"), "{err}");
        assert!(err.contains(says), "{value}: {err}");
    }
}

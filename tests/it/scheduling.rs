//! The scheduler seen from outside: concurrent jobs, cancellation of a
//! job on real executor processes, Ctrl-C, and actions called from inside
//! a tokio runtime.

use crate::cluster::{child_pids, wait_until_gone};
use crate::examples::example;
use riffle::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn join_answer(ctx: &Context) -> Vec<(u32, (u32, String))> {
    let left = ctx.parallelize((0..2000u32).map(|i| (i % 97, i)).collect(), 7);
    let right = ctx.parallelize((0..300u32).map(|i| (i % 89, format!("r{i}"))).collect(), 3);
    let mut out = left.join(&right).collect().unwrap();
    out.sort();
    out
}

fn distinct_answer(ctx: &Context) -> Vec<String> {
    let mut out = ctx
        .parallelize((0..10_000u32).map(|i| format!("k{}", i % 313)).collect(), 5)
        .distinct()
        .collect()
        .unwrap();
    out.sort();
    out
}

#[test]
fn two_jobs_from_two_threads_give_the_answers_they_give_alone() {
    for mode in [riffle::SchedulingMode::Fifo, riffle::SchedulingMode::Fair] {
        let ctx = Context::builder()
            .master("local[2]")
            .scheduling_mode(mode)
            .build()
            .unwrap();
        let (join, distinct) = (join_answer(&ctx), distinct_answer(&ctx));
        for _ in 0..3 {
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| join_answer(&ctx));
                let b = s.spawn(|| distinct_answer(&ctx));
                (a.join().unwrap(), b.join().unwrap())
            });
            assert_eq!(a, join, "{mode:?}");
            assert_eq!(b, distinct, "{mode:?}");
        }
    }
}

#[test]
fn concurrent_jobs_on_local_cluster_equal_the_jobs_run_alone() {
    let run = |args: &[&str]| {
        let out = Command::new(example("jobs")).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let alone =
        run(&["--master", "local[2]", "join"]) + &run(&["--master", "local[2]", "distinct"]);
    let together = run(&["--master", "local-cluster[2,1]", "concurrent"]);
    assert_eq!(together, alone);
}

#[test]
fn a_job_cancelled_mid_stage_on_local_cluster_stops_at_once_and_leaves_nothing() {
    let input = tempfile::tempdir().unwrap();
    // Seven quick files, then one that takes minutes (2 ms per line).
    for i in 0..7 {
        let lines: String = (0..50).map(|j| format!("line {i} {j}\n")).collect();
        std::fs::write(input.path().join(format!("part-{i}.txt")), lines).unwrap();
    }
    let slow: String = (0..100_000).map(|j| format!("slow {j}\n")).collect();
    std::fs::write(input.path().join("z-slow.txt"), slow).unwrap();
    let shuffle = tempfile::tempdir().unwrap();
    let mut child = Command::new(example("jobs"))
        .args([
            "--master",
            "local-cluster[2,1]",
            "--shuffle-store",
            &format!("file://{}", shuffle.path().display()),
            "cancel",
            input.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("driver:"), "{line}");
    let executors = child_pids(pid);
    assert_eq!(executors.len(), 2, "{executors:?}");
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    let output = child.wait_with_output().unwrap();
    let err = drain.join().unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{out}{err}");
    let ms: u64 = out
        .split("ended ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cancel time in {out:?}"));
    assert!(
        ms < 1000,
        "the cancelled job took {ms} ms to end: {out}{err}"
    );
    let left: Vec<_> = walk(shuffle.path())
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "shuffle objects left behind: {left:?}");
    wait_until_gone(&executors, "executor processes outlived the job");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn ctrl_c_cancels_the_cloudfront_example() {
    let dir = tempfile::tempdir().unwrap();
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines: 1_500_000,
        files: 2,
        seed: 5,
        out: dir.path().to_path_buf(),
        gzip: true,
        wild: false,
    })
    .unwrap();
    let mut child = Command::new(example("cloudfront"))
        .args(["--master", "local[1]", dir.path().to_str().unwrap()])
        .env("RIFFLE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no job started: {seen}"
        );
        seen.push_str(&line);
        if line.contains("job started") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{seen}{rest}");
    assert!(!output.status.success(), "{seen}{rest}");
    assert!(rest.contains("was cancelled"), "{seen}{rest}");
}

#[tokio::test]
async fn actions_work_inside_a_tokio_runtime_blocking_and_awaited() {
    let ctx = Context::new("local[2]").unwrap();
    let data = ctx.parallelize((0..1000u64).collect(), 4);
    // The blocking form from inside a (current-thread) runtime.
    assert_eq!(data.count().unwrap(), 1000);
    // The async forms, awaited.
    let counted = data
        .map(|x| (x % 3, x))
        .reduce_by_key(|a, b| a + b)
        .count_async();
    assert_eq!(counted.await.unwrap(), 3);
    let mut all = data.collect_async().unwrap().await.unwrap();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    let batches = ctx
        .sql("SELECT 1 AS one")
        .unwrap()
        .collect_async()
        .unwrap()
        .await
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    // Dropping the context inside the runtime must not panic either.
    drop(ctx);
}

#[test]
fn job_events_reach_subscribers_and_last_job_is_built_from_them() {
    let ctx = Context::new("local[2]").unwrap();
    let mut events = ctx.subscribe_events();
    let handle = ctx
        .parallelize((0..100u32).map(|i| (i % 5, 1u32)).collect(), 4)
        .reduce_by_key(|a, b| a + b)
        .count_async();
    let id = handle.id();
    assert_eq!(handle.wait().unwrap(), 5);
    let mut stages = Vec::new();
    let mut tasks = 0;
    loop {
        match events.try_recv() {
            Ok(riffle::SchedulerEvent::StageCompleted {
                job,
                stage,
                failure,
                ..
            }) => {
                assert_eq!(job, id);
                assert!(failure.is_none());
                stages.push(stage);
            }
            Ok(riffle::SchedulerEvent::TaskEnded { failure, .. }) => {
                assert!(failure.is_none());
                tasks += 1;
            }
            Ok(riffle::SchedulerEvent::JobEnded { outcome, .. }) => {
                assert_eq!(outcome, riffle::JobOutcome::Succeeded);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("events ended early: {e}"),
        }
    }
    assert_eq!(stages.len(), 2);
    assert_eq!(tasks, 8);
    let summary = ctx.last_job();
    assert_eq!((summary.stages, summary.tasks), (2, 8));
}

//! Injected faults (`RIFFLE_FAILPOINTS`) under real jobs (issue 9): a
//! deleted or damaged map output is recomputed alone, a failure that
//! repeats fails the job with its cause and one that does not is survived,
//! and a straggler is overtaken by a speculative copy. Each run is the
//! compiled example binary, so the failpoints are read fresh by every
//! process (driver and executors alike); answers are compared with a
//! fault-free run, and what the scheduler did is read from the job
//! summary it logs at `info`.

use crate::examples::example;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn generate(dir: &Path, lines: u64, files: usize) {
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines,
        files,
        seed: 11,
        out: dir.to_path_buf(),
        gzip: false,
        wild: false,
    })
    .unwrap();
}

fn run(job: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(example(job))
        .args(args)
        .env("RIFFLE_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout.clone()).unwrap(), stderr)
}

/// The (stage, attempt, tasks) rows of the last job summary logged, in
/// the order the stage attempts were submitted.
fn stage_rows(stderr: &str) -> Vec<(u32, u32, usize)> {
    let last = stderr.rfind("job: ").expect("a job summary was logged");
    stderr[last..]
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let name = cols.next()?.strip_prefix("stage-")?;
            let (stage, attempt) = name.split_once('.').unwrap_or((name, "0"));
            let tasks = cols.next()?.parse().ok()?;
            Some((stage.parse().ok()?, attempt.parse().ok()?, tasks))
        })
        .collect()
}

/// Word count over 4 files (4 map tasks in stage 0), with `failpoint`.
fn wordcount(dir: &Path, failpoint: Option<&str>) -> Output {
    let input = dir.join("*.log");
    let input = input.to_str().unwrap();
    let env: Vec<(&str, &str)> = failpoint
        .map(|f| ("RIFFLE_FAILPOINTS", f))
        .into_iter()
        .collect();
    run(
        "wordcount",
        &["--master", "local[2]", "--top", "50", input],
        &env,
    )
}

#[test]
fn a_deleted_map_output_is_recomputed_alone_and_the_answer_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 4_000, 4);
    let (expected, clean) = ok(&wordcount(dir.path(), None));
    assert_eq!(stage_rows(&clean), vec![(0, 0, 4), (1, 0, 4)], "{clean}");

    let (got, stderr) = ok(&wordcount(
        dir.path(),
        Some("map-output-delete(stage=0,partition=1,attempt=0)"),
    ));
    assert_eq!(got, expected);
    assert!(stderr.contains("fetch failed; recomputing"), "{stderr}");
    let rows = stage_rows(&stderr);
    // The map stage's second attempt reran the one lost output; the
    // reduce stage's second attempt ran what had not finished.
    assert_eq!(rows[0], (0, 0, 4), "{stderr}");
    assert!(
        matches!(rows[1], (1, 0, n) if (1..=4).contains(&n)),
        "{stderr}"
    );
    assert_eq!(rows[2], (0, 1, 1), "{stderr}");
    assert!(
        matches!(rows[3], (1, 1, n) if (1..=4).contains(&n)),
        "{stderr}"
    );
    assert_eq!(rows.len(), 4, "{stderr}");
    assert!(stderr.contains("resubmitted stage attempts"), "{stderr}");
}

#[test]
fn a_damaged_map_output_is_detected_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 4_000, 4);
    let (expected, _) = ok(&wordcount(dir.path(), None));
    let (got, stderr) = ok(&wordcount(
        dir.path(),
        Some("map-output-corrupt(stage=0,partition=2,attempt=0)"),
    ));
    assert_eq!(got, expected);
    assert!(stderr.contains("CRC-32"), "{stderr}");
    assert_eq!(stage_rows(&stderr)[2], (0, 1, 1), "{stderr}");
}

#[test]
fn a_failure_that_repeats_fails_the_job_with_its_cause_and_one_that_does_not_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 2_000, 2);
    let (expected, _) = ok(&wordcount(dir.path(), None));

    let (got, stderr) = ok(&wordcount(
        dir.path(),
        Some("task-fail(stage=1,partition=0,attempt=0)"),
    ));
    assert_eq!(got, expected);
    assert!(stderr.contains("task failed; retrying"), "{stderr}");

    let out = wordcount(dir.path(), Some("task-fail(stage=1,partition=0)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        "stage-1 task 0 (attempt 3)",
        "injected failure",
        "executor-0",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }

    let out = wordcount(dir.path(), Some("task-fail(stage=1,kind=user)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("(attempt 0)"), "not retried: {stderr}");
}

#[test]
fn a_misspelt_failpoint_or_bad_fault_setting_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 100, 1);
    let out = wordcount(dir.path(), Some("map-output-delet(stage=0)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("RIFFLE_FAILPOINTS") && stderr.contains("map-output-delet"),
        "{stderr}"
    );
    let input = dir.path().join("*.log");
    for (var, value) in [
        ("RIFFLE_SPECULATION", "maybe"),
        ("RIFFLE_SPECULATION_MULTIPLIER", "0.5"),
        ("RIFFLE_SPECULATION_QUANTILE", "2"),
        ("RIFFLE_MAX_STAGE_ATTEMPTS", "many"),
    ] {
        let out = run("wordcount", &[input.to_str().unwrap()], &[(var, value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(var) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn a_sql_join_survives_a_deleted_map_output() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--master",
        "local[2]",
        "--scale",
        "0.01",
        "--query",
        "3",
        "--data",
        data.path().to_str().unwrap(),
    ];
    let (expected, _) = ok(&run("tpch", &args, &[]));
    let (got, stderr) = ok(&run(
        "tpch",
        &args,
        &[(
            "RIFFLE_FAILPOINTS",
            "map-output-delete(stage=0,partition=0,attempt=0)",
        )],
    ));
    assert_eq!(got, expected);
    assert!(stderr.contains("fetch failed; recomputing"), "{stderr}");
    assert!(stage_rows(&stderr).contains(&(0, 1, 1)), "{stderr}");
}

#[test]
fn a_straggler_is_overtaken_by_a_speculative_copy_and_its_output_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let url = format!("file://{}", out.display());
    let started = Instant::now();
    // The save stage's task 0 sleeps a minute on its first attempt.
    let (_, stderr) = ok(&run(
        "jobs",
        &["--master", "local-cluster[2,1]", "save", &url],
        &[
            ("RIFFLE_SPECULATION", "1"),
            (
                "RIFFLE_FAILPOINTS",
                "task-delay(stage=3,partition=0,attempt=0,ms=60000)",
            ),
        ],
    ));
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "waited for the straggler: {stderr}"
    );
    assert!(stderr.contains("speculating"), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "_SUCCESS",
            "part-00000",
            "part-00001",
            "part-00002",
            "part-00003"
        ],
        "{stderr}"
    );
    let text: String = names[1..]
        .iter()
        .map(|n| std::fs::read_to_string(out.join(n)).unwrap())
        .collect();
    assert_eq!(text.lines().count(), 101, "one line per distinct word");
}

#[test]
fn an_executor_that_stops_heartbeating_is_dropped_and_its_tasks_rerun() {
    let (out, stderr) = ok(&run(
        "jobs",
        &["--master", "local-cluster[2,1]", "slow"],
        &[
            ("RIFFLE_FAILPOINTS", "heartbeat-drop(executor=1)"),
            ("RIFFLE_HEARTBEAT_TIMEOUT_MS", "1500"),
        ],
    ));
    assert_eq!(out.trim(), "40");
    assert!(
        stderr.contains("executor-1") && stderr.contains("no heartbeat for"),
        "{stderr}"
    );
}

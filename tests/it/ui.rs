//! The web UI, its JSON API, the event log and the history server
//! (issue 10), against real processes: the `jobs ui-demo` example on
//! `local-cluster[2,1]` (a slow two-stage job with one task failing once,
//! then a job that fails), headless Chromium driven by Playwright
//! (`tests/ui/browser_check.py`), and `riffle history` over the event log
//! the example wrote.

use crate::examples::example;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `GET url` over HTTP/1.1 on 127.0.0.1: the status code and body.
fn get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, body.to_string())
}

fn json(url: &str) -> Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// Lines of a child's stream, read on a thread so the child never blocks.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits up to 2 minutes for a line containing `needle`; returns it.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut String) -> String {
    wait_for_or(rx, needle, seen).unwrap_or_else(|| panic!("no line with {needle:?}; saw:\n{seen}"))
}

/// [`wait_for`], `None` when the stream ends or 2 minutes pass first.
fn wait_for_or(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut String) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return Some(line);
                }
            }
            Err(_) => break,
        }
    }
    None
}

/// The API answers to compare between the live UI and the history server.
fn snapshot(base: &str) -> Vec<(String, Value)> {
    let mut paths = vec![
        "api/v1/jobs".to_string(),
        "api/v1/stages".to_string(),
        "api/v1/executors".to_string(),
    ];
    for job in json(&format!("{base}/api/v1/jobs")).as_array().unwrap() {
        let id = &job["id"];
        paths.push(format!("api/v1/jobs/{id}"));
    }
    for stage in json(&format!("{base}/api/v1/stages")).as_array().unwrap() {
        paths.push(format!(
            "api/v1/jobs/{}/stages/{}/{}",
            stage["job"], stage["stage"], stage["attempt"]
        ));
    }
    paths
        .into_iter()
        .map(|p| {
            let mut v = json(&format!("{base}/{p}"));
            // Heartbeats are seen live only.
            if let Some(rows) = v.as_array_mut() {
                for row in rows {
                    if let Some(o) = row.as_object_mut() {
                        o.remove("last_heartbeat_ms");
                    }
                }
            }
            (p, v)
        })
        .collect()
}

struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Chromium and Playwright when missing (the README's test
/// command must work on a fresh machine).
fn ensure_browser() {
    let ready = Path::new("/usr/bin/chromium").exists()
        && Command::new("python3")
            .args(["-c", "import playwright"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        crate::install_test_deps("the web UI test needs Chromium and Playwright");
    }
}

#[test]
fn live_ui_in_a_browser_api_counts_and_history_replay() {
    ensure_browser();
    let logs = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = Command::new(example("jobs"))
        .args(["--master", "local-cluster[2,1]", "ui-demo"])
        .env("RIFFLE_LOG", "info")
        .env("RIFFLE_UI_PORT", "0")
        .env("RIFFLE_EVENT_LOG", logs.path())
        .env(
            "RIFFLE_FAILPOINTS",
            "task-fail(job=0,stage=0,partition=1,attempt=0)",
        )
        .env("UI_DEMO_TASK_MS", "700")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut demo = Demo { child };
    let mut seen = String::new();
    let line = wait_for(&stderr, "web UI: ", &mut seen);
    let base = line.split("web UI: ").nth(1).unwrap().trim().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    // Keep draining stderr so the demo never blocks on a full pipe.
    std::thread::spawn(move || while stderr.recv().is_ok() {});

    // The page, in a real browser, while job 0 runs: the demo starts its
    // jobs only once the page has loaded, however slowly Chromium starts.
    let mut check = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/ui/browser_check.py"
        ))
        .args(["--url", &base, "--out"])
        .arg(&shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-test-deps.sh installs Playwright)");
    let check_out = lines_of(check.stdout.take().unwrap());
    let check_err = lines_of(check.stderr.take().unwrap());
    let mut check_log = String::new();
    let start = wait_for_or(&check_out, "page loaded", &mut check_log);
    if start.is_some() {
        let stdin = demo.child.stdin.as_mut().unwrap();
        stdin.write_all(b"start\n").unwrap();
        stdin.flush().unwrap();
    }
    let status = check.wait().unwrap();
    check_log.extend(check_out.iter().map(|l| l + "\n"));
    let errors: String = check_err.iter().map(|l| l + "\n").collect();
    assert!(
        start.is_some() && status.success(),
        "browser check failed (screenshots in {}):\n{check_log}\n{errors}",
        shots.display(),
    );

    let mut out = String::new();
    wait_for(&stdout, "ui-demo: done", &mut out);
    assert!(out.contains("failing job: failed"), "{out}");

    // The JSON API: counts of a job with a known shape.
    let jobs = json(&format!("{base}/api/v1/jobs"));
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (failing, slow) = (&jobs[0], &jobs[1]);
    assert_eq!(slow["id"], 0);
    assert_eq!(slow["status"], "succeeded");
    assert_eq!(slow["description"], "ui-demo: slow count by residue");
    assert_eq!(
        (slow["stages_total"].as_u64(), slow["stages_done"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(slow["tasks_failed"], 1, "{slow}");
    assert_eq!(failing["status"], "failed");
    assert!(
        failing["failure"]
            .as_str()
            .unwrap()
            .contains("boom in the ui demo"),
        "{failing}"
    );
    let dag = json(&format!("{base}/api/v1/jobs/0"));
    let stages = dag["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[1]["parents"], serde_json::json!([0]));
    assert!(stages.iter().all(|s| s["state"] == "available"), "{dag}");
    let map = json(&format!("{base}/api/v1/jobs/0/stages/0/0"));
    let tasks = map["tasks"].as_array().unwrap();
    assert_eq!(map["tasks_total"], 8);
    assert_eq!(tasks.len(), 9, "8 partitions and one retry: {map}");
    let retried: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "failed").collect();
    assert_eq!(retried.len(), 1, "{map}");
    assert_eq!(retried[0]["partition"], 1);
    assert_eq!(retried[0]["failure_kind"], "Retryable");
    let q = &map["duration_quantiles"];
    assert!(q["min"].as_u64() <= q["median"].as_u64() && q["median"].as_u64() <= q["max"].as_u64());
    assert!(q["median"].as_u64().unwrap() >= 8 * 700 / 2, "{q}");
    let executors = json(&format!("{base}/api/v1/executors"));
    let executors = executors.as_array().unwrap();
    assert_eq!(executors.len(), 2, "{executors:?}");
    let run: u64 = executors
        .iter()
        .map(|e| e["tasks_run"].as_u64().unwrap())
        .sum();
    let all_tasks: usize = json(&format!("{base}/api/v1/stages"))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let detail = json(&format!(
                "{base}/api/v1/jobs/{}/stages/{}/{}",
                s["job"], s["stage"], s["attempt"]
            ));
            detail["tasks"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(run as usize, all_tasks);
    assert!(executors.iter().all(|e| e["state"] == "active"));
    assert!(
        executors
            .iter()
            .all(|e| e["last_heartbeat_ms"].as_u64().is_some())
    );
    assert_eq!(get(&format!("{base}/api/v1/jobs/7")).0, 404);
    assert_eq!(get(&format!("{base}/nowhere")).0, 404);
    let live = snapshot(&base);

    // Let the demo end: the event log gets its last line and final name.
    drop(demo.child.stdin.take());
    let status = demo.child.wait().unwrap();
    assert!(status.success());
    let files: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("app-") && !files[0].ends_with(".inprogress"),
        "{files:?}"
    );

    // The history server replays it to the same answers.
    let mut history = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["history", "--port", "0"])
        .arg(logs.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let history_out = lines_of(history.stdout.take().unwrap());
    let mut seen = String::new();
    let line = wait_for(&history_out, "history server at ", &mut seen);
    let root = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let apps = json(&format!("{root}/api/v1/applications"));
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    assert_eq!(apps[0]["live"], false);
    assert!(apps[0]["ended_ms"].as_u64().is_some());
    let app = format!("{root}/app/{}", files[0]);
    let (status, page) = get(&format!("{app}/"));
    assert_eq!(status, 200);
    assert!(
        page.contains("<svg") || page.contains("dag"),
        "not the UI page"
    );
    let replayed = snapshot(&app);
    let _ = history.kill();
    let _ = history.wait();
    assert_eq!(live.len(), replayed.len());
    for ((path, a), (_, b)) in live.iter().zip(&replayed) {
        assert_eq!(
            a, b,
            "{path} differs between the live UI and the history server"
        );
    }
}

#[test]
fn a_frozen_version_1_log_still_replays() {
    // Written by this version (`RIFFLE_EVENT_LOG`, `jobs ui-demo` cut
    // short); kept as it was so that later changes stay readable.
    let text = include_str!("../data/event-log-v1.jsonl");
    let app = riffle_driver::ui::event_log::replay("event-log-v1.jsonl", text).unwrap();
    let jobs = app.jobs(0);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, "succeeded");
    assert_eq!((jobs[0].stages_total, jobs[0].stages_done), (2, 2));
    assert_eq!(app.executors().len(), 2);
    assert!(app.info().ended_ms.is_some());
    let stage = app.stage(0, 0, 0, 0).unwrap();
    assert_eq!(stage.tasks.len(), stage.stage.tasks_total + 1);
    assert_eq!(stage.stage.tasks_failed, 1);
}

#[test]
fn bad_event_logs_are_refused_with_the_file_and_line() {
    let replay = riffle_driver::ui::event_log::replay;
    let err = replay("x.jsonl", "").err().unwrap();
    assert!(err.to_string().contains("x.jsonl"), "{err}");
    let future = r#"{"version":99,"time_ms":1,"record":"ApplicationEnded"}"#;
    let err = replay("f.jsonl", future).err().unwrap().to_string();
    assert!(
        err.contains("f.jsonl") && err.contains("line 1") && err.contains("version 99"),
        "{err}"
    );
    let started = r#"{"version":1,"time_ms":1,"record":"ApplicationStarted","app_id":"app-1-1","master":"local","riffle_version":"0"}"#;
    let garbage = format!("{started}\nnot json at all}}\n{started}\n");
    let err = replay("g.jsonl", &garbage).err().unwrap().to_string();
    assert!(err.contains("g.jsonl") && err.contains("line 2"), "{err}");
    // A torn last line of an in-progress log is skipped.
    let torn = format!("{started}\n{{\"version\":1,\"time_ms\":2,\"rec");
    let app = replay("t.jsonl", &torn).unwrap();
    assert_eq!(app.info().id, "app-1-1");
    assert!(app.info().ended_ms.is_none());
}

#[test]
fn progress_bars_reach_100_percent_on_a_terminal_and_draw_nothing_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("typescript");
    let jobs = example("jobs");
    // `script` runs the example on a pseudo-terminal and keeps every byte
    // drawn on it, including frames later cleared.
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{} --master local[2] slow", jobs.display()))
        .arg(&transcript)
        .env("RIFFLE_UI", "0")
        .env_remove("RIFFLE_PROGRESS")
        .output()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap()).into_owned();
    assert!(drawn.contains("job-0 stage-0.0"), "{drawn}");
    assert!(drawn.contains("40/40 tasks 100%"), "{drawn}");
    assert!(drawn.contains("rows"), "{drawn}");

    // With stderr a pipe, nothing is drawn.
    let piped = Command::new(&jobs)
        .args(["--master", "local[2]", "slow"])
        .env("RIFFLE_UI", "0")
        .env_remove("RIFFLE_PROGRESS")
        .output()
        .unwrap();
    assert!(piped.status.success());
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("tasks 100%") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "40");
}

#[test]
fn history_refuses_a_missing_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["history", "/definitely/not/a/log/dir", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/definitely/not/a/log/dir") && err.contains("no such event log directory"),
        "{err}"
    );
}

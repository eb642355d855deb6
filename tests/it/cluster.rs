//! The cluster runtime with real executor processes on 127.0.0.1: answers
//! equal to embedded mode, executors joining mid-job, refused
//! registrations, and bad messages on the wire.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::examples::example;

/// Child processes killed when the test ends, whatever happens, with
/// their piped output drained by threads (a full pipe would block them).
#[derive(Default)]
pub(crate) struct Processes(
    pub(crate) Vec<Child>,
    pub(crate) Vec<(Option<Drain>, Option<Drain>)>,
);

/// A thread reading a pipe line by line; what it read so far is in `seen`.
pub(crate) struct Drain {
    thread: std::thread::JoinHandle<String>,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drain {
    fn join(self) -> String {
        self.thread.join().unwrap()
    }
}

fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<Drain> {
    pipe.map(|p| {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = seen.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(p).lines().map_while(Result::ok) {
                let mut s = shared.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            shared.lock().unwrap().clone()
        });
        Drain { thread, seen }
    })
}

/// What process `index` has written to stderr so far.
pub(crate) fn stderr_so_far(procs: &Processes, index: usize) -> String {
    procs.1[index]
        .1
        .as_ref()
        .map(|d| d.seen.lock().unwrap().clone())
        .unwrap_or_default()
}

/// Waits until process `index` has written `text` to stderr.
pub(crate) fn wait_for_stderr(procs: &Processes, index: usize, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = stderr_so_far(procs, index);
        if seen.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} on stderr in {limit:?}: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Processes {
    pub(crate) fn push(&mut self, mut child: Child) -> usize {
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        self.0.push(child);
        self.1.push((out, err));
        self.0.len() - 1
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn jobs(args: &[&str]) -> Output {
    Command::new(example("jobs")).args(args).output().unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn local_cluster_answers_equal_embedded() {
    for job in ["join", "sort", "distinct", "count-by-key", "sql-dataset"] {
        let embedded = stdout_of(&jobs(&["--master", "local[2]", job]));
        let cluster = jobs(&["--master", "local-cluster[2,1]", job]);
        assert_eq!(stdout_of(&cluster), embedded, "{job}");
        let stderr = String::from_utf8_lossy(&cluster.stderr);
        assert!(stderr.contains("executors used: 2"), "{job}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines: 3000,
        files: 2,
        seed: 1,
        out: dir.path().to_path_buf(),
        gzip: false,
        wild: false,
    })
    .unwrap();
    let wc = |master: &str| {
        let out = Command::new(example("wordcount"))
            .args([
                "--master",
                master,
                "--top",
                "10",
                dir.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        stdout_of(&out)
    };
    assert_eq!(wc("local-cluster[2,1]"), wc("local[1]"));
}

/// Starts `jobs` as a driver on a fixed port waiting for `min` executors.
pub(crate) fn start_driver(procs: &mut Processes, port: u16, min: usize, job: &str) -> usize {
    let child = Command::new(example("jobs"))
        .args([
            "--master",
            &format!("riffle://127.0.0.1:{port}"),
            "--min-executors",
            &min.to_string(),
            job,
        ])
        .env("RIFFLE_SECRET", crate::wire::SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    procs.push(child)
}

pub(crate) fn start_executor(
    procs: &mut Processes,
    binary: std::path::PathBuf,
    args: &[&str],
) -> usize {
    let child = Command::new(binary)
        .args(args)
        .env("RIFFLE_SECRET", crate::wire::SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    procs.push(child)
}

pub(crate) fn wait_output(
    procs: &mut Processes,
    index: usize,
    limit: Duration,
) -> (bool, String, String) {
    let deadline = Instant::now() + limit;
    let child = &mut procs.0[index];
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let (out, err) = &mut procs.1[index];
            let text = |d: &mut Option<Drain>| d.take().map(Drain::join).unwrap_or_default();
            return (status.success(), text(out), text(err));
        }
        assert!(
            Instant::now() < deadline,
            "process did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn separate_executor_processes_run_the_job() {
    let mut procs = Processes::default();
    let port = free_port();
    let driver = start_driver(&mut procs, port, 2, "join");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..2 {
        start_executor(
            &mut procs,
            example("jobs"),
            &["--executor", "--driver", &url, "--cores", "1"],
        );
    }
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert_eq!(out, stdout_of(&jobs(&["--master", "local[2]", "join"])));
    assert!(err.contains("executors used: 2"), "{err}");
}

#[test]
fn executor_joining_mid_job_gets_tasks_and_a_refused_one_does_no_harm() {
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let driver = start_driver(&mut procs, port, 1, "slow");
    start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    // Let the job start on the first executor, then add a second one, and
    // try to add an executor of another binary (another build id).
    wait_for_stderr(&procs, driver, "driver:", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let riffle = std::path::PathBuf::from(env!("CARGO_BIN_EXE_riffle"));
    let refused = start_executor(
        &mut procs,
        riffle,
        &["executor", "--driver", &url, "--cores", "1"],
    );
    start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    let (ok, out, err) = wait_output(&mut procs, refused, Duration::from_secs(60));
    assert!(!ok, "an executor of another build must be refused");
    assert!(err.contains("build id mismatch"), "{err}");
    assert!(
        err.contains("executor runs build") && err.contains("driver runs build"),
        "{err}"
    );
    assert!(out.is_empty());
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert_eq!(out, "40\n");
    assert!(
        err.contains("executors used: 2"),
        "the late executor got no task: {err}"
    );
}

#[test]
fn a_result_over_the_message_limit_names_the_setting() {
    let out = Command::new(example("jobs"))
        .args(["--master", "local-cluster[1,1]", "big-result"])
        .env("RIFFLE_MAX_MESSAGE_BYTES", "1000000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RIFFLE_MAX_MESSAGE_BYTES"), "{err}");
    assert!(err.contains("save_as_text_file"), "{err}");
    // Within the limit, the same result comes back.
    let out = jobs(&["--master", "local-cluster[1,1]", "big-result"]);
    assert_eq!(stdout_of(&out), format!("{}\n", 3 << 20));
}

#[test]
fn a_lost_executor_costs_only_its_tasks() {
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let driver = start_driver(&mut procs, port, 2, "slow");
    start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    let victim = start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    // The driver announces itself once both executors registered; kill one
    // while the job runs.
    wait_for_stderr(&procs, driver, "driver:", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1000));
    procs.0[victim].kill().unwrap();
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert_eq!(out, "40\n");
}

#[test]
fn a_job_with_no_executor_left_fails_with_a_hint() {
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(example("jobs"))
        .args(["--master", &format!("riffle://127.0.0.1:{port}"), "slow"])
        .env("RIFFLE_EXECUTOR_WAIT_SECS", "10")
        .env("RIFFLE_SECRET", crate::wire::SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let driver = procs.push(child);
    let only = start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    wait_for_stderr(&procs, driver, "driver:", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1000));
    procs.0[only].kill().unwrap();
    let (ok, _, err) = wait_output(&mut procs, driver, Duration::from_secs(60));
    assert!(!ok);
    assert!(err.contains("start an executor with"), "{err}");
    assert!(err.contains(&url), "{err}");
}

#[test]
fn local_cluster_children_stop_with_the_driver() {
    let mut procs = Processes::default();
    let child = Command::new(example("jobs"))
        .args(["--master", "local-cluster[2,1]", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let pid = child.id();
    // Wait until the driver has announced itself, then kill it hard
    // (no destructors run): its children must exit by themselves.
    let stderr = child.stderr.take().unwrap();
    procs.push(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("driver:"), "{line}");
    let children = child_pids(pid);
    assert_eq!(children.len(), 2, "{children:?}");
    let _ = procs.0[0].kill();
    let _ = procs.0[0].wait();
    wait_until_gone(&children, "executor processes outlived their driver");
}

/// Waits up to 10 s for every process of `pids` to exit (or be a zombie).
pub(crate) fn wait_until_gone(pids: &[u32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|c| std::path::Path::new(&format!("/proc/{c}")).exists() && !is_zombie(*c))
    {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn child_pids(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string())
            && rest.split_whitespace().nth(1) == Some(&parent.to_string())
        {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

//! Authentication is never off: a real driver and real executor processes
//! on 127.0.0.1 refuse every call kind without the shared secret, with a
//! wrong one, or naming an executor id the driver did not assign; a rogue
//! process cannot launch a task; refusals are logged with the peer's
//! address and never with the secret; executors started by hand find the
//! secret in the user's file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use riffle::prelude::*;
use riffle_executor::rpc::v1::executor_service_client::ExecutorServiceClient;
use riffle_planner::proto::v1;

use crate::cluster::{Processes, free_port, wait_for_stderr, wait_output};
use crate::examples::example;
use crate::wire::{SECRET, build_id, client_with};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn unauthenticated<T: std::fmt::Debug>(result: Result<T, tonic::Status>, call: &str) {
    let err = result.expect_err(call);
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{call}: {err:?}");
    assert!(
        !err.message().contains(SECRET),
        "{call} leaks the secret: {err:?}"
    );
}

#[test]
fn every_driver_call_needs_the_secret_and_an_assigned_executor_id() {
    let ctx = Context::builder()
        .master("riffle://127.0.0.1:0")
        .min_executors(0)
        .secret(SECRET)
        .build()
        .unwrap();
    let url = ctx.driver_url().unwrap().to_string();
    let registration = v1::RegisterExecutorRequest {
        protocol_version: riffle_planner::proto::PROTOCOL_VERSION,
        build_id: build_id().to_string(),
        address: "http://127.0.0.1:9".into(),
        cores: 1,
        memory_bytes: 0,
        host: "rogue".into(),
    };
    runtime().block_on(async {
        let plain = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut anonymous =
            riffle_executor::rpc::v1::driver_service_client::DriverServiceClient::new(plain);
        let mut wrong = client_with(&url, "not-the-secret").await;
        for (who, result) in [
            (
                "no secret",
                anonymous.register_executor(registration.clone()).await,
            ),
            (
                "wrong secret",
                wrong.register_executor(registration.clone()).await,
            ),
        ] {
            unauthenticated(result, &format!("RegisterExecutor with {who}"));
        }
        let heartbeat = v1::HeartbeatRequest {
            executor_id: 0,
            running: vec![],
        };
        unauthenticated(anonymous.heartbeat(heartbeat.clone()).await, "Heartbeat");
        unauthenticated(wrong.heartbeat(heartbeat.clone()).await, "Heartbeat");
        let report = v1::ReportTaskStatusRequest {
            executor_id: 0,
            statuses: vec![],
        };
        unauthenticated(
            anonymous.report_task_status(report.clone()).await,
            "ReportTaskStatus",
        );
        unauthenticated(
            wrong.report_task_status(report.clone()).await,
            "ReportTaskStatus",
        );
        let watch = v1::WatchExecutorRequest { executor_id: 0 };
        unauthenticated(
            anonymous.watch_executor(watch).await.map(|_| ()),
            "WatchExecutor",
        );
        unauthenticated(
            wrong.watch_executor(watch).await.map(|_| ()),
            "WatchExecutor",
        );

        // With the secret, but naming an executor id never assigned.
        let mut forger = client_with(&url, SECRET).await;
        let known = forger
            .heartbeat(v1::HeartbeatRequest {
                executor_id: 7,
                running: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .known;
        assert!(!known, "a heartbeat of a forged executor id was accepted");
        let err = forger
            .report_task_status(v1::ReportTaskStatusRequest {
                executor_id: 7,
                statuses: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("executor-7"), "{err:?}");
        let err = forger
            .watch_executor(v1::WatchExecutorRequest { executor_id: 7 })
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    });
    assert!(
        ctx.executors().is_empty(),
        "a refused call registered an executor"
    );
}

/// The `address=` an executor logs when it has registered.
fn executor_address(procs: &Processes, index: usize) -> String {
    wait_for_stderr(procs, index, "executor registered", Duration::from_secs(60));
    let seen = crate::cluster::stderr_so_far(procs, index);
    let line = seen
        .lines()
        .find(|l| l.contains("executor registered"))
        .unwrap();
    let start = line.find("address=").unwrap() + "address=".len();
    line[start..].split_whitespace().next().unwrap().to_string()
}

/// The executor id an executor logs when it has registered.
fn executor_id(procs: &Processes, index: usize) -> u32 {
    let seen = crate::cluster::stderr_so_far(procs, index);
    let line = seen
        .lines()
        .find(|l| l.contains("executor registered"))
        .unwrap();
    let start = line.find("id=executor-").unwrap() + "id=executor-".len();
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_rogue_process_cannot_launch_or_cancel_tasks_on_an_executor() {
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // The driver waits for two executors, so the first one is serving
    // (and idle) while the rogue calls it.
    let driver = crate::cluster::start_driver(&mut procs, port, 2, "join");
    let executor = procs.push(
        Command::new(example("jobs"))
            .args(["--executor", "--driver", &url, "--cores", "1"])
            .env("RIFFLE_SECRET", SECRET)
            .env("RIFFLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let address = executor_address(&procs, executor);
    let id = executor_id(&procs, executor);

    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let auth = |secret: &str| {
            riffle_executor::rpc::Auth::new(
                riffle_executor::secret::Secret::new(secret, "test").unwrap(),
            )
            .client()
        };
        let launch = |executor_id: Option<u32>, build: &str| v1::LaunchTasksRequest {
            stages: vec![v1::StageDefinition {
                job: 0,
                stage: 0,
                // Any bytes at all: none of them may be looked at.
                spec: vec![0xAB; 64],
            }],
            tasks: vec![],
            executor_id,
            build_id: build.to_string(),
        };
        let cancel = |executor_id: Option<u32>| v1::CancelTasksRequest {
            tasks: vec![v1::TaskKey::default()],
            executor_id,
        };

        let mut anonymous = ExecutorServiceClient::new(channel.clone());
        let mut wrong = ExecutorServiceClient::with_interceptor(channel.clone(), auth("guess"));
        unauthenticated(
            anonymous.launch_tasks(launch(Some(id), build_id())).await,
            "LaunchTasks without a secret",
        );
        unauthenticated(
            wrong.launch_tasks(launch(Some(id), build_id())).await,
            "LaunchTasks with a wrong secret",
        );
        unauthenticated(
            anonymous.cancel_tasks(cancel(Some(id))).await,
            "CancelTasks",
        );
        unauthenticated(wrong.cancel_tasks(cancel(Some(id))).await, "CancelTasks");
        unauthenticated(anonymous.shutdown(v1::ShutdownRequest {}).await, "Shutdown");
        unauthenticated(
            wrong.remove_job(v1::RemoveJobRequest { job: 0 }).await,
            "RemoveJob",
        );

        // With the secret: a call naming another executor id, or none.
        let mut insider = ExecutorServiceClient::with_interceptor(channel, auth(SECRET));
        for named in [Some(id + 1), None] {
            let err = insider
                .launch_tasks(launch(named, build_id()))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
            let err = insider.cancel_tasks(cancel(named)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        }
        // The right id, but a driver of another build: refused before the
        // stage bytes are decoded.
        let err = insider
            .launch_tasks(launch(Some(id), "0000-1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("build"), "{err:?}");
    });

    // The executor is unharmed: with a second one the job runs, right.
    crate::cluster::start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    let expected = Command::new(example("jobs"))
        .args(["--master", "local[2]", "join"])
        .output()
        .unwrap();
    assert_eq!(out, String::from_utf8(expected.stdout).unwrap());
    assert!(err.contains("executors used: 2"), "{err}");

    // Each refusal reason was logged once, with the peer, never the secret.
    let log = crate::cluster::stderr_so_far(&procs, executor);
    for reason in [
        "no shared secret",
        "wrong shared secret",
        "wrong executor id",
        "build id mismatch",
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("refused a call") && l.contains(reason))
            .collect();
        assert_eq!(lines.len(), 1, "{reason}: {log}");
        assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    }
    assert!(
        !log.contains(SECRET),
        "the executor logged the secret: {log}"
    );
}

#[test]
fn executors_without_the_secret_are_refused_and_logged_without_it() {
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let driver = crate::cluster::start_driver(&mut procs, port, 1, "join");
    let empty_home = tempfile::tempdir().unwrap();

    // A wrong secret: registration refused, the executor exits saying why.
    let wrong = procs.push(
        Command::new(example("jobs"))
            .args(["--executor", "--driver", &url, "--cores", "1"])
            .env("RIFFLE_SECRET", "not-the-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (ok, _, err) = wait_output(&mut procs, wrong, Duration::from_secs(60));
    assert!(!ok);
    assert!(err.contains("wrong shared secret"), "{err}");
    assert!(
        !err.contains(SECRET) && !err.contains("not-the-secret"),
        "{err}"
    );

    // No secret anywhere: the executor does not even start.
    let none = procs.push(
        Command::new(example("jobs"))
            .args(["--executor", "--driver", &url, "--cores", "1"])
            .env_remove("RIFFLE_SECRET")
            .env_remove("RIFFLE_SECRET_FILE")
            .env("HOME", empty_home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (ok, _, err) = wait_output(&mut procs, none, Duration::from_secs(60));
    assert!(!ok);
    assert!(
        err.contains("no shared secret") && err.contains("riffle secret"),
        "{err}"
    );

    // The driver logged the refusal with the peer address, not the secret.
    crate::cluster::start_executor(
        &mut procs,
        example("jobs"),
        &["--executor", "--driver", &url, "--cores", "1"],
    );
    let (ok, _, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    let refusals: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("refused a call"))
        .collect();
    assert_eq!(refusals.len(), 1, "{err}");
    assert!(
        refusals[0].contains("wrong shared secret") && refusals[0].contains("peer=127.0.0.1:"),
        "{err}"
    );
    assert!(
        !err.contains(SECRET) && !err.contains("not-the-secret"),
        "{err}"
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn executors_started_by_hand_find_the_secret_in_the_users_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".riffle").join("secret");
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let with_home = |command: &mut Command| {
        command
            .env_remove("RIFFLE_SECRET")
            .env_remove("RIFFLE_SECRET_FILE")
            .env("HOME", home.path())
            .stderr(Stdio::piped());
    };
    // `riffle secret` creates the file, private, and never prints it.
    let mut secret_cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    secret_cmd.arg("secret");
    with_home(&mut secret_cmd);
    let out = secret_cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&file.display().to_string()), "{stdout}");
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(!stdout.contains(secret.trim()));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);

    let mut driver = Command::new(example("jobs"));
    driver
        .args(["--master", &format!("riffle://127.0.0.1:{port}"), "join"])
        .stdout(Stdio::piped());
    with_home(&mut driver);
    let driver = procs.push(driver.spawn().unwrap());
    let mut executor = Command::new(example("jobs"));
    executor
        .args(["--executor", "--driver", &url, "--cores", "1"])
        .stdout(Stdio::null());
    with_home(&mut executor);
    procs.push(executor.spawn().unwrap());
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert!(!out.is_empty());
    assert!(!err.contains(secret.trim()), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        secret,
        "the file changed"
    );

    // A secret file other users can read is refused, naming the fix.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut exposed = Command::new(example("jobs"));
    exposed
        .args(["--executor", "--driver", &url, "--cores", "1"])
        .stdout(Stdio::null());
    with_home(&mut exposed);
    let out = exposed.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chmod 600") && !err.contains(secret.trim()),
        "{err}"
    );
}

#[test]
fn a_driver_listening_for_executors_creates_the_secret_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".riffle").join("secret");
    let mut procs = Processes::default();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let driver = procs.push(
        Command::new(example("jobs"))
            .args(["--master", &format!("riffle://127.0.0.1:{port}"), "join"])
            .env_remove("RIFFLE_SECRET")
            .env_remove("RIFFLE_SECRET_FILE")
            .env("HOME", home.path())
            .env("RIFFLE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_stderr(
        &procs,
        driver,
        "created the shared secret file",
        Duration::from_secs(60),
    );
    assert_eq!(mode(&file), 0o600);
    // An executor given the secret by variable (as on another machine).
    let secret = std::fs::read_to_string(&file).unwrap();
    procs.push(
        Command::new(example("jobs"))
            .args(["--executor", "--driver", &url, "--cores", "1"])
            .env("RIFFLE_SECRET", secret.trim())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (ok, _, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert!(!err.contains(secret.trim()), "{err}");
}

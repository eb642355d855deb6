//! TLS between driver and executors, with certificates from `riffle
//! certs`: jobs over `local-cluster` and over executors started by hand,
//! with TLS and with mutual TLS; peers without the CA, with another CA's
//! certificate, or speaking plain text are refused; `openssl s_client` sees
//! TLS 1.3 and the chain; a full job's logs hold neither the shared secret,
//! the object-store keys nor key material.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use riffle::prelude::*;
use riffle_executor::rpc::v1::driver_service_client::DriverServiceClient;
use riffle_executor::tls::TlsFiles;
use riffle_planner::proto::v1;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::cluster::{Processes, free_port, wait_output};
use crate::examples::example;
use crate::wire::{SECRET, build_id};

/// `riffle certs --out DIR`.
fn certs(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["certs", "--out", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.to_path_buf()
}

/// The `RIFFLE_TLS_*` variables for `role` (`driver` or `executor`).
fn tls_env(certs: &Path, role: &str, mutual: bool) -> Vec<(&'static str, String)> {
    let file = |name: String| certs.join(name).display().to_string();
    vec![
        ("RIFFLE_TLS_CA", file("ca.pem".into())),
        ("RIFFLE_TLS_CERT", file(format!("{role}.pem"))),
        ("RIFFLE_TLS_KEY", file(format!("{role}-key.pem"))),
        ("RIFFLE_TLS_MUTUAL", if mutual { "1" } else { "0" }.into()),
    ]
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn expected_join() -> String {
    stdout_ok(
        &Command::new(example("jobs"))
            .args(["--master", "local[2]", "join"])
            .output()
            .unwrap(),
    )
}

#[test]
fn jobs_run_over_tls_and_mutual_tls_on_local_cluster_and_separate_executors() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let expected = expected_join();
    for mutual in [false, true] {
        let out = Command::new(example("jobs"))
            .args(["--master", "local-cluster[2,1]", "join"])
            .envs(tls_env(&certs, "driver", mutual))
            .output()
            .unwrap();
        assert_eq!(stdout_ok(&out), expected, "local-cluster, mutual {mutual}");

        let mut procs = Processes::default();
        let port = free_port();
        let driver = procs.push(
            Command::new(example("jobs"))
                .args([
                    "--master",
                    &format!("riffle://127.0.0.1:{port}"),
                    "--min-executors",
                    "2",
                    "join",
                ])
                .envs(tls_env(&certs, "driver", mutual))
                .env("RIFFLE_SECRET", SECRET)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        for _ in 0..2 {
            procs.push(
                Command::new(example("jobs"))
                    .args([
                        "--executor",
                        "--driver",
                        &format!("https://127.0.0.1:{port}"),
                        "--cores",
                        "1",
                    ])
                    .envs(tls_env(&certs, "executor", mutual))
                    .env("RIFFLE_SECRET", SECRET)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
        assert!(ok, "{err}");
        assert_eq!(out, expected, "separate executors, mutual {mutual}");
        assert!(err.contains("executors used: 2"), "{err}");
        assert!(
            err.contains(&format!("driver: https://127.0.0.1:{port}")),
            "{err}"
        );
    }
}

/// Calls `Heartbeat` on the driver at `url` over `endpoint`.
async fn heartbeat(endpoint: Endpoint) -> Result<bool, String> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let auth = riffle_executor::rpc::Auth::new(
        riffle_executor::secret::Secret::new(SECRET, "test").unwrap(),
    );
    let mut client = DriverServiceClient::with_interceptor(channel, auth.client());
    client
        .heartbeat(v1::HeartbeatRequest {
            executor_id: 0,
            running: vec![],
        })
        .await
        .map(|r| r.into_inner().known)
        .map_err(|e| format!("call: {e:?}"))
}

fn pem(path: PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn peers_without_the_ca_with_another_cas_certificate_or_in_plain_text_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(&dir.path().join("ours"));
    let theirs = self::certs(&dir.path().join("theirs"));
    let ctx = Context::builder()
        .master("riffle://127.0.0.1:0")
        .min_executors(0)
        .secret(SECRET)
        .tls(TlsFiles {
            cert: certs.join("driver.pem"),
            key: certs.join("driver-key.pem"),
            ca: certs.join("ca.pem"),
            mutual: true,
        })
        .build()
        .unwrap();
    let url = ctx.driver_url().unwrap().to_string();
    assert!(url.starts_with("https://"), "{url}");
    let port = url.rsplit(':').next().unwrap().to_string();

    let ca = Certificate::from_pem(pem(certs.join("ca.pem")));
    let ours = Identity::from_pem(
        pem(certs.join("executor.pem")),
        pem(certs.join("executor-key.pem")),
    );
    let foreign = Identity::from_pem(
        pem(theirs.join("executor.pem")),
        pem(theirs.join("executor-key.pem")),
    );
    let https = |tls: ClientTlsConfig| {
        Endpoint::from_shared(url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The CA and our certificate: accepted (the id is unknown, so `false`).
        let known = heartbeat(https(
            ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(ours.clone()),
        ))
        .await
        .unwrap();
        assert!(!known);
        // A client that does not trust our CA refuses the driver.
        let err = heartbeat(https(ClientTlsConfig::new().identity(ours.clone())))
            .await
            .unwrap_err();
        assert!(err.contains("connect") || err.contains("call"), "{err}");
        // Trusting another CA: the driver's certificate does not verify.
        let theirs_ca = Certificate::from_pem(pem(theirs.join("ca.pem")));
        heartbeat(https(
            ClientTlsConfig::new()
                .ca_certificate(theirs_ca)
                .identity(ours.clone()),
        ))
        .await
        .unwrap_err();
        // Mutual TLS: no client certificate, or one from another CA, is refused.
        heartbeat(https(ClientTlsConfig::new().ca_certificate(ca.clone())))
            .await
            .unwrap_err();
        heartbeat(https(
            ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(foreign),
        ))
        .await
        .unwrap_err();
        // Plain text to a TLS port.
        let plain = Endpoint::from_shared(url.replace("https://", "http://")).unwrap();
        heartbeat(plain).await.unwrap_err();

        // An executor advertising a plain-text address is refused at
        // registration: the driver would otherwise call it in plain text.
        let channel = https(
            ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(ours.clone()),
        )
        .connect()
        .await
        .unwrap();
        let auth = riffle_executor::rpc::Auth::new(
            riffle_executor::secret::Secret::new(SECRET, "test").unwrap(),
        );
        let err = DriverServiceClient::with_interceptor(channel, auth.client())
            .register_executor(v1::RegisterExecutorRequest {
                protocol_version: riffle_planner::proto::PROTOCOL_VERSION,
                build_id: build_id().to_string(),
                address: "http://127.0.0.1:9".into(),
                cores: 1,
                memory_bytes: 0,
                host: "plain".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("plain http://"), "{err:?}");
    });
    assert!(ctx.executors().is_empty());

    // From outside the project: TLS 1.3 and the chain up to our CA.
    let s_client = |extra: &[&str]| {
        let mut args = vec!["s_client", "-connect"];
        let target = format!("127.0.0.1:{port}");
        args.push(&target);
        let ca_file = certs.join("ca.pem").display().to_string();
        args.extend(["-CAfile", &ca_file, "-alpn", "h2"]);
        args.extend(extra);
        let out = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let cert = certs.join("executor.pem").display().to_string();
    let key = certs.join("executor-key.pem").display().to_string();
    let seen = s_client(&["-cert", &cert, "-key", &key]);
    assert!(seen.contains("New, TLSv1.3"), "{seen}");
    assert!(
        seen.contains("s:CN = Riffle driver") && seen.contains("i:CN = Riffle cluster CA"),
        "{seen}"
    );
    assert!(seen.contains("Verify return code: 0 (ok)"), "{seen}");

    // An executor configured for TLS refuses a plain http:// driver URL.
    let out = Command::new(example("jobs"))
        .args([
            "--executor",
            "--driver",
            &url.replace("https://", "http://"),
        ])
        .envs(tls_env(&certs, "executor", true))
        .env("RIFFLE_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain http://") && err.contains("https://"),
        "{err}"
    );
}

#[test]
fn a_full_job_with_tls_and_s3_credentials_logs_neither_the_secret_nor_the_keys() {
    const ACCESS_KEY: &str = "AKIARIFFLELOGCHECK01";
    const SECRET_KEY: &str = "riffle/log+check/secret/access/key/0001";
    let server = crate::s3::S3Server::start();
    server.create_bucket("logcheck");
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let driver_key = std::fs::read_to_string(certs.join("driver-key.pem")).unwrap();
    let key_body: String = driver_key.lines().nth(1).unwrap().to_string();
    let mut env: Vec<(&str, String)> = server
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .collect();
    env.push(("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()));
    env.push(("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()));
    env.extend(tls_env(&certs, "driver", true));
    let mut procs = Processes::default();
    let driver = procs.push(
        Command::new(example("jobs"))
            .args([
                "--master",
                "local-cluster[2,1]",
                "--shuffle-store",
                "s3://logcheck/shuffle",
                "slow",
            ])
            .envs(env)
            .env("RIFFLE_SECRET", SECRET)
            .env("RIFFLE_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The executors' command lines (readable by every user) carry nothing.
    let pid = procs.0[driver].id();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let children = loop {
        let children = crate::cluster::child_pids(pid);
        if children.len() >= 2 || std::time::Instant::now() > deadline {
            break children;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        children.len(),
        2,
        "the local-cluster executors did not start"
    );
    for child in children {
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        for secret in [SECRET, ACCESS_KEY, SECRET_KEY] {
            assert!(
                !cmdline.contains(secret),
                "executor {child} arguments: {cmdline}"
            );
        }
    }
    let (ok, out, err) = wait_output(&mut procs, driver, Duration::from_secs(120));
    assert!(ok, "{err}");
    assert_eq!(out, "40\n");
    assert!(err.contains("DEBUG"), "debug logging was not on: {err}");
    for (what, secret) in [
        ("the shared secret", SECRET),
        ("the S3 access key id", ACCESS_KEY),
        ("the S3 secret key", SECRET_KEY),
        ("the TLS private key", key_body.as_str()),
    ] {
        assert!(
            !err.contains(secret) && !out.contains(secret),
            "{what} is in the log"
        );
    }
}

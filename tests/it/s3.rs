//! The shuffle and job output in S3, against a real S3-compatible server
//! (moto_server, installed by scripts/install-test-deps.sh) on loopback.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use riffle::prelude::*;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A moto_server process on a free loopback port, stopped on drop.
pub(crate) struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    pub(crate) fn start() -> S3Server {
        if Command::new("moto_server").arg("--help").output().is_err() {
            crate::install_test_deps("the S3 tests need moto_server");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts an unsigned PUT).
    pub(crate) fn create_bucket(&self, bucket: &str) {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            conn,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    /// The environment every process uses to reach this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_region("us-east-1")
                .build()
                .unwrap(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut names: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

#[test]
fn job_reads_shuffles_and_writes_in_s3() {
    let server = S3Server::start();
    server.create_bucket("riffle");
    let store = server.store("riffle");
    let rt = runtime();
    rt.block_on(async {
        store
            .put(&Path::from("in/a.log"), PutPayload::from("x y\ny z\n"))
            .await
            .unwrap();
        store
            .put(&Path::from("in/b.log"), PutPayload::from("z z\n"))
            .await
            .unwrap();
    });
    let ctx = Context::builder()
        .master("local[2]")
        .object_store("s3://riffle", store.clone())
        .shuffle_store("s3://riffle/shuffle")
        .build()
        .unwrap();
    let counts = ctx
        .text_file("s3://riffle/in/*.log")
        .unwrap()
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    counts
        .map(|(w, n)| format!("{w} {n}"))
        .sort_by(|s: &String| s.clone(), true)
        .save_as_text_file("s3://riffle/out")
        .unwrap();
    assert!(ctx.last_job().shuffle_bytes_written > 0);
    rt.block_on(async {
        let out = list(&store, "out").await;
        assert!(out.contains(&"out/_SUCCESS".to_string()), "{out:?}");
        assert!(!out.iter().any(|p| p.contains("_temporary")), "{out:?}");
        let mut text = String::new();
        for p in out.iter().filter(|p| p.contains("part-")) {
            let bytes = store
                .get(&Path::from(p.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        assert_eq!(text, "x 1\ny 2\nz 3\n");
        // The job's shuffle objects are gone once it ended.
        assert_eq!(list(&store, "shuffle").await, Vec::<String>::new());
    });
    let err = ctx
        .parallelize(vec![1], 1)
        .save_as_text_file("s3://riffle/out")
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn executor_processes_share_a_shuffle_in_s3() {
    let server = S3Server::start();
    server.create_bucket("cluster");
    let expected = {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let status = Command::new(crate::examples::example("jobs"))
            .args(["--master", "local[2]", "save", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(status.status.success());
        let mut text = String::new();
        for p in 0..4 {
            text.push_str(&std::fs::read_to_string(out.join(format!("part-{p:05}"))).unwrap());
        }
        text
    };
    let out = Command::new(crate::examples::example("jobs"))
        .args([
            "--master",
            "local-cluster[2,1]",
            "--shuffle-store",
            "s3://cluster/shuffle",
            "save",
            "s3://cluster/out",
        ])
        .envs(server.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = server.store("cluster");
    runtime().block_on(async {
        let mut text = String::new();
        for p in 0..4 {
            let path = Path::from(format!("out/part-{p:05}"));
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        assert_eq!(text, expected);
        assert_eq!(list(&store, "shuffle").await, Vec::<String>::new());
    });
}

#[test]
fn sql_reads_tables_and_writes_parquet_in_s3() {
    let server = S3Server::start();
    server.create_bucket("sql");
    let store = server.store("sql");
    let rt = runtime();
    let mut csv = String::from("id,region,amount\n");
    for i in 0..500 {
        csv.push_str(&format!("{i},r{},{}\n", i % 4, i % 10));
    }
    rt.block_on(async {
        store
            .put(&Path::from("sales/part-0.csv"), PutPayload::from(csv))
            .await
            .unwrap();
    });
    let ctx = Context::builder()
        .master("local[2]")
        .object_store("s3://sql", store.clone())
        .shuffle_store("s3://sql/shuffle")
        .build()
        .unwrap();
    ctx.run_statement(
        "CREATE EXTERNAL TABLE sales STORED AS CSV LOCATION 's3://sql/sales/' OPTIONS ('has_header' 'true')",
    )
    .unwrap();
    let query = "SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region ORDER BY region";
    let text = ctx.sql(query).unwrap().to_table_string().unwrap();
    // 125 rows per region; amounts 0..9 repeat every 10 ids, so each
    // region (i % 4) sums to 125 * 4.5 = 562.5 -> exact integer sums below.
    for (region, total) in [("r0", 500), ("r1", 625), ("r2", 500), ("r3", 625)] {
        assert!(
            text.contains(&format!("| {region}     | 125 | {total}   |")),
            "{text}"
        );
    }
    // Written from the executors straight into the bucket, read back.
    ctx.sql(query)
        .unwrap()
        .write_parquet("s3://sql/out")
        .unwrap();
    rt.block_on(async {
        let out = list(&store, "out").await;
        assert!(out.contains(&"out/_SUCCESS".to_string()), "{out:?}");
        assert!(out.iter().any(|p| p.ends_with(".parquet")), "{out:?}");
        assert!(!out.iter().any(|p| p.contains("_temporary")), "{out:?}");
        assert_eq!(list(&store, "shuffle").await, Vec::<String>::new());
    });
    ctx.register_parquet("back", "s3://sql/out/").unwrap();
    let back = ctx
        .sql("SELECT region, n, total FROM back ORDER BY region")
        .unwrap()
        .to_table_string()
        .unwrap();
    assert_eq!(back, text);
}

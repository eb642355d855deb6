//! SQL on Riffle's stages compared with DataFusion run directly in one
//! process on the same files.

use riffle::prelude::*;
use riffle::sql::datafusion::prelude::{CsvReadOptions, SessionContext};
use std::io::Write;

fn write_csv(dir: &std::path::Path) -> (String, String) {
    let sales = dir.join("sales.csv");
    let mut f = std::fs::File::create(&sales).unwrap();
    writeln!(f, "id,region,amount,day").unwrap();
    for i in 0..3000 {
        writeln!(f, "{i},r{},{},{}", i % 7, (i * 37) % 1000, i % 31).unwrap();
    }
    let regions = dir.join("regions.csv");
    let mut f = std::fs::File::create(&regions).unwrap();
    writeln!(f, "region,name").unwrap();
    for r in 0..5 {
        writeln!(f, "r{r},Region {r}").unwrap();
    }
    // A NULL region, for NOT IN's null-aware semantics.
    writeln!(f, ",Nowhere").unwrap();
    (sales.display().to_string(), regions.display().to_string())
}

/// The batches of `query`, pretty-printed with rows sorted (row order of
/// an unordered query is not defined).
fn sorted_rows(batches: &[riffle::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let text = riffle::arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(str::to_owned)
        .collect();
    rows.sort();
    rows
}

const QUERIES: &[&str] = &[
    "SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region",
    "SELECT s.region, r.name, avg(s.amount) AS a FROM sales s JOIN regions r ON s.region = r.region GROUP BY s.region, r.name",
    "SELECT id, amount FROM sales WHERE amount > 900 ORDER BY amount DESC, id LIMIT 17",
    "SELECT day, rank() OVER (PARTITION BY region ORDER BY amount DESC, id) AS rk FROM sales WHERE day < 3",
    "SELECT region FROM sales WHERE day = 1 UNION ALL SELECT region FROM regions",
    "SELECT count(DISTINCT region) AS regions, max(amount) AS top FROM sales",
    // Joins that emit unmatched rows: each must see all matches even when
    // the small side is broadcast to several tasks.
    "SELECT s.id, r.name FROM sales s LEFT JOIN regions r ON s.region = r.region WHERE s.day = 2",
    "SELECT r.region, count(s.id) AS n FROM regions r LEFT JOIN sales s ON s.region = r.region AND s.day = 3 GROUP BY r.region",
    "SELECT s.region AS a, r.region AS b FROM (SELECT DISTINCT region FROM sales) s FULL JOIN regions r ON s.region = r.region",
    "SELECT count(*) AS n FROM sales WHERE region IN (SELECT region FROM regions)",
    "SELECT id FROM sales s WHERE day = 4 AND NOT EXISTS (SELECT 1 FROM regions r WHERE r.region = s.region)",
    "SELECT id FROM sales WHERE day = 5 AND region NOT IN (SELECT region FROM regions WHERE name <> 'Nowhere')",
    "SELECT id FROM sales WHERE day = 5 AND region NOT IN (SELECT region FROM regions)",
];

#[test]
fn queries_match_datafusion_embedded_and_on_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (sales, regions) = write_csv(dir.path());
    let df = SessionContext::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Parquet copies carry row counts, so DataFusion broadcasts the small
    // side of joins (CollectLeft); CSV tables have no statistics and are
    // joined partitioned. Both must give DataFusion's answers.
    let parquet = |name: &str| {
        dir.path()
            .join(format!("{name}_parquet"))
            .display()
            .to_string()
    };
    rt.block_on(async {
        df.register_csv("sales", &sales, CsvReadOptions::new())
            .await
            .unwrap();
        df.register_csv("regions", &regions, CsvReadOptions::new())
            .await
            .unwrap();
        for table in ["sales", "regions"] {
            df.sql(&format!(
                "COPY {table} TO '{}/' STORED AS PARQUET",
                parquet(table)
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        }
    });
    for master in ["local[2]"] {
        let ctx = Context::new(master).unwrap();
        ctx.register_csv("sales", &sales).unwrap();
        ctx.register_csv("regions", &regions).unwrap();
        let pq = Context::new(master).unwrap();
        pq.register_parquet("sales", &format!("{}/", parquet("sales")))
            .unwrap();
        pq.register_parquet("regions", &format!("{}/", parquet("regions")))
            .unwrap();
        for q in QUERIES {
            let expected = rt.block_on(async { df.sql(q).await.unwrap().collect().await.unwrap() });
            for ctx in [&ctx, &pq] {
                let frame = ctx.sql(q).unwrap();
                let got = frame.collect().unwrap();
                assert_eq!(
                    sorted_rows(&got),
                    sorted_rows(&expected),
                    "{master}: {q}\n{}",
                    frame.explain().unwrap()
                );
            }
        }
        // ORDER BY results keep their order.
        let q = QUERIES[2];
        let expected = rt.block_on(async { df.sql(q).await.unwrap().collect().await.unwrap() });
        let got = ctx.sql(q).unwrap().collect().unwrap();
        assert_eq!(
            riffle::arrow::util::pretty::pretty_format_batches(&got)
                .unwrap()
                .to_string(),
            riffle::arrow::util::pretty::pretty_format_batches(&expected)
                .unwrap()
                .to_string()
        );
    }
}

#[test]
fn explain_shows_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (sales, _) = write_csv(dir.path());
    let ctx = Context::new("local[2]").unwrap();
    ctx.register_csv("sales", &sales).unwrap();
    let plan = ctx
        .sql("SELECT region, count(*) FROM sales GROUP BY region ORDER BY region")
        .unwrap()
        .explain()
        .unwrap();
    assert!(plan.matches("Stage ").count() >= 3, "{plan}");
    assert!(plan.contains("ShuffleWriterExec"), "{plan}");
    assert!(plan.contains("ShuffleReaderExec"), "{plan}");
}

#[test]
fn sql_errors_name_the_problem() {
    let ctx = Context::new("local[2]").unwrap();
    let err = ctx.sql("SELECT * FROM nowhere").err().unwrap().to_string();
    assert!(err.contains("nowhere"), "{err}");
    let err = ctx.sql("SELEC 1").err().unwrap().to_string();
    assert!(err.contains("SELEC"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let (sales, _) = write_csv(dir.path());
    ctx.register_csv("sales", &sales).unwrap();
    let err = ctx.sql("SELECT nope FROM sales").err().unwrap().to_string();
    assert!(err.contains("nope"), "{err}");
    let err = ctx
        .register_parquet("t", "/no/such/dir/")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/no/such/dir"), "{err}");
}

fn riffle(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn hive_cloudfront_script_matches_the_dataset_example() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("in/cloudfront/data");
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines: 6000,
        files: 3,
        seed: 9,
        out: data.clone(),
        gzip: true,
        wild: false,
    })
    .unwrap();
    let expected = std::process::Command::new(crate::examples::example("cloudfront"))
        .args(["--master", "local[2]", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(expected.status.success());
    let expected = String::from_utf8(expected.stdout).unwrap();
    for master in ["local[2]", "local-cluster[2,1]"] {
        let got = hive_cloudfront_report(master, &dir.path().join("in"));
        assert_eq!(got, expected, "{master}");
    }
}

/// Runs `examples/cloudfront.hql` on `master` over `INPUT=input` (logs in
/// `input/cloudfront/data`) and returns its output as `os<TAB>count` lines,
/// sorted, as the Dataset example prints them.
pub(crate) fn hive_cloudfront_report(master: &str, input: &std::path::Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cloudfront.hql");
    let name = input.file_name().unwrap().to_string_lossy();
    let out_dir = input.with_file_name(format!("{name}-out-{}", master.len()));
    let run = riffle(&[
        "sql",
        "--master",
        master,
        "--var",
        &format!("INPUT={}", input.display()),
        "--var",
        &format!("OUTPUT={}", out_dir.display()),
        "-f",
        script,
    ]);
    assert!(
        run.status.success(),
        "{master}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(out_dir.join("os_requests/000000_0")).unwrap();
    let mut rows: Vec<String> = written.lines().map(|l| l.replace('\u{1}', "\t")).collect();
    rows.sort();
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// Queries DataFusion answers in one process and Riffle once failed or
/// answered wrongly (issue 14), with the right answers (DataFusion's, or
/// SQL's where DataFusion 55 is wrong too), as `riffle sql --format csv`
/// prints them.
const AS_DATAFUSION_ANSWERS: &[(&str, &str)] = &[
    // datafusion-proto 55 drops these fields. Riffle's codec carries them,
    // and a window FILTER over an aggregate that skips NULLs travels as a
    // CASE (`riffle_sql::window_filter`).
    (
        "SELECT x, sum(x) FILTER (WHERE x > 1) OVER () AS s FROM (VALUES (1),(2),(3)) AS t(x) ORDER BY x",
        "x,s\n1,5\n2,5\n3,5\n",
    ),
    (
        "SELECT x, first_value(x) IGNORE NULLS OVER () AS f FROM (VALUES (NULL),(3),(4)) AS t(x) ORDER BY x",
        "x,f\n3,3\n4,3\n,3\n",
    ),
    (
        "SELECT x, lag(x) OVER (ORDER BY x DESC) AS d, lag(x) OVER (ORDER BY x) AS a FROM (VALUES (1),(2),(3)) AS t(x) ORDER BY x",
        "x,d,a\n1,2,\n2,3,1\n3,,2\n",
    ),
    (
        "SELECT count(*) AS n FROM (VALUES (1),(2)) AS t(x) GROUP BY GROUPING SETS (())",
        "n\n2\n",
    ),
    (
        "SELECT arrow_typeof(min(f)) AS t FROM (SELECT arrow_cast(1,'Float16') AS f)",
        "t\nFloat16\n",
    ),
    (
        "SELECT k, min(f) AS m FROM (SELECT 1 AS k, arrow_cast(1.5,'Float16') AS f) GROUP BY k",
        "k,m\n1,1.5\n",
    ),
    (
        "SELECT x, count(*) FILTER (WHERE x < 3) OVER (ORDER BY x) AS c, min(x) FILTER (WHERE x > 1) OVER (ORDER BY x) AS m FROM (VALUES (1),(2),(3)) AS t(x) ORDER BY x",
        "x,c,m\n1,1,\n2,2,2\n3,2,2\n",
    ),
    (
        "SELECT x, lag(x) IGNORE NULLS OVER (ORDER BY x) AS l FROM (VALUES (1),(NULL),(3)) AS t(x) ORDER BY x",
        "x,l\n1,\n3,1\n,3\n",
    ),
    (
        "SELECT x, first_value(x) OVER (ORDER BY x DESC) AS f, last_value(x) OVER (ORDER BY x) AS l FROM (VALUES (1),(2),(3)) AS t(x) ORDER BY x",
        "x,f,l\n1,3,1\n2,3,2\n3,3,3\n",
    ),
    (
        "SELECT count(*) AS n FROM (VALUES (1),(2)) AS t(x) GROUP BY GROUPING SETS ((), ())",
        "n\n2\n2\n",
    ),
    // An empty projection, a recursive query, inserts into a memory table.
    (
        "SELECT count(*) AS n FROM generate_series(1, 10)",
        "n\n10\n",
    ),
    (
        "WITH RECURSIVE nums(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM nums WHERE n < 3) SELECT n FROM nums ORDER BY n",
        "n\n1\n2\n3\n",
    ),
    (
        "CREATE TABLE t (a INT, b VARCHAR); INSERT INTO t VALUES (1,'x'), (2,'y'); INSERT INTO t SELECT a + 2, b FROM t; SELECT * FROM t ORDER BY a",
        "count\n2\ncount\n2\na,b\n1,x\n2,y\n3,x\n4,y\n",
    ),
    // Shuffle readers declare their hash partitioning: a union of two
    // aggregates interleaves them.
    (
        "SELECT k, count(*) AS n FROM (VALUES (1),(1),(2)) AS t(k) GROUP BY k UNION ALL SELECT k, count(*) AS n FROM (VALUES (3),(3)) AS u(k) GROUP BY k ORDER BY k",
        "k,n\n1,2\n2,1\n3,2\n",
    ),
    // Shuffle readers declare what held of their input (`c1 = 1` makes
    // `c1` constant): the window above needs no sort by `c1`.
    (
        "CREATE TABLE t1 (c1 INT, c2 INT) AS VALUES (1,10),(1,20),(2,10),(2,30); SELECT c1, c2, rank() OVER (PARTITION BY c1 ORDER BY c2) AS r FROM t1 WHERE c1 = 1 AND c2 = 10",
        "c1,c2,r\n1,10,1\n",
    ),
    // DataFusion 55 answers these wrongly in one process too
    // (`riffle_sql::rewrite`).
    (
        "SELECT x FROM (VALUES (1),(1),(1),(2)) AS a(x) INTERSECT ALL SELECT x FROM (VALUES (1),(1),(3)) AS b(x) ORDER BY x",
        "x\n1\n1\n",
    ),
    (
        "SELECT x FROM (VALUES (1),(1),(1),(2)) AS a(x) EXCEPT ALL SELECT x FROM (VALUES (1),(3)) AS b(x) ORDER BY x",
        "x\n1\n1\n2\n",
    ),
    (
        "CREATE TABLE t_out(id INT, g INT) AS VALUES (1,1),(2,2); CREATE TABLE t_in(id INT, g INT) AS VALUES (1,1),(NULL,2); SELECT id FROM t_out WHERE 3 NOT IN (SELECT id FROM t_in WHERE t_in.g = t_out.g) ORDER BY id",
        "id\n1\n",
    ),
    (
        "CREATE TABLE t(id INT, a INT) AS VALUES (1,1),(2,2),(7,5),(8,NULL); CREATE TABLE s(x INT) AS VALUES (1),(NULL); SELECT id FROM t WHERE a NOT IN (SELECT x FROM s) OR id = 7 ORDER BY id",
        "id\n7\n",
    ),
    (
        "CREATE TABLE t(id INT, a INT) AS VALUES (1,1),(2,2),(7,5),(8,NULL); CREATE TABLE s(x INT) AS VALUES (1),(NULL); SELECT id FROM t WHERE (a NOT IN (SELECT x FROM s)) IS NULL ORDER BY id",
        "id\n2\n7\n8\n",
    ),
    (
        "CREATE TABLE t(id INT, a INT) AS VALUES (1,1),(2,2),(7,5),(8,NULL); CREATE TABLE s(x INT) AS VALUES (1),(NULL); SELECT id, a NOT IN (SELECT x FROM s) AS v FROM t ORDER BY id",
        "id,v\n1,false\n2,\n7,\n8,\n",
    ),
    (
        "CREATE TABLE s(x INT) AS VALUES (1),(3); SELECT a, a NOT IN (SELECT x FROM s) AS v FROM (VALUES (1),(2),(NULL)) AS t(a) ORDER BY a",
        "a,v\n1,false\n2,true\n,\n",
    ),
];

#[test]
fn queries_give_the_right_answers_on_both_masters() {
    for master in ["local[2]", "local-cluster[2,1]"] {
        for (sql, expected) in AS_DATAFUSION_ANSWERS {
            let run = riffle(&["sql", "--master", master, "--format", "csv", "-e", sql]);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{master}: {sql}: {stderr}");
            let got = String::from_utf8_lossy(&run.stdout);
            assert_eq!(got, *expected, "{master}: {sql}\n{stderr}");
            // Every one reaches the executors intact.
            assert!(
                !stderr.contains("query runs on the driver, in one process"),
                "{master}: {sql}: {stderr}"
            );
        }
    }
}

#[test]
fn a_query_that_cannot_ship_intact_runs_on_the_driver_and_says_so() {
    // datafusion-proto 55 drops a window's FILTER, and `array_agg` keeps
    // NULLs, so the filter cannot become a CASE: shipped, this query would
    // collect every row.
    let run = riffle(&[
        "sql",
        "--master",
        "local-cluster[2,1]",
        "--format",
        "csv",
        "-e",
        "SELECT x, array_length(array_agg(x) FILTER (WHERE x > 1) OVER ()) AS n FROM (VALUES (1),(2),(3)) AS t(x) ORDER BY x",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "x,n\n1,2\n2,2\n3,2\n");
    assert!(
        stderr.contains("query runs on the driver") && stderr.contains("WindowAggExec"),
        "{stderr}"
    );
}

#[test]
fn an_unbounded_source_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.csv");
    std::fs::write(&file, "1\n2\n").unwrap();
    let sql = format!(
        "CREATE UNBOUNDED EXTERNAL TABLE d (a INT) STORED AS CSV LOCATION '{}'; SELECT * FROM d",
        file.display()
    );
    let run = riffle(&["sql", "--master", "local[2]", "-e", &sql]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("unbounded (streaming) source"), "{stderr}");
}

#[test]
fn a_plan_larger_than_grpcs_default_limit_but_within_riffles_runs_on_executors() {
    // An 8 MB literal the optimizer cannot fold away (it is concatenated
    // with a column): over tonic's 4 MiB default, under the 64 MiB setting
    // every channel, the executors' servers included, is built with.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args([
            "sql",
            "--master",
            "local-cluster[2,1]",
            "--format",
            "csv",
            "-e",
            "SELECT length(concat(column1, repeat('x', 8000000))) AS n FROM (VALUES ('a'), ('bc')) t ORDER BY n",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "n\n8000001\n8000002\n",
        "{stderr}"
    );
    assert!(!stderr.contains("runs on the driver"), "{stderr}");
}

#[test]
fn a_plan_too_large_for_a_message_fails_its_job_and_spares_the_executors() {
    // `repeat` of a constant is folded into a 70 MB literal in the plan,
    // over the 64 MiB default message limit.
    // The interactive shell keeps one context: after the failed statement
    // the same executors run the next one.
    use std::io::Write;
    let mut shell = std::process::Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["sql", "--master", "local-cluster[2,1]", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT repeat('x', 70000000) AS s;\nSELECT 1 + 1 AS two;\n")
        .unwrap();
    let out = shell.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("more than fits in one message")
            && stderr.contains("RIFFLE_MAX_MESSAGE_BYTES"),
        "{stderr}"
    );
    assert!(!stderr.contains("executor lost"), "{stderr}");
    assert!(
        stdout.contains("two\n2\n"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
}

#[test]
fn copy_to_csv_writes_dates_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    for master in ["local[2]", "local-cluster[2,1]"] {
        let out = dir.path().join(format!("o-{}.csv", master.len()));
        let run = riffle(&[
            "sql",
            "--master",
            master,
            "-e",
            &format!(
                "COPY (SELECT DATE '2020-01-01' AS d, TIMESTAMP '2020-01-01 10:00:00' AS ts, 1.5 AS x) TO '{}' STORED AS CSV",
                out.display()
            ),
        ]);
        assert!(
            run.status.success(),
            "{master}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            written, "d,ts,x\n2020-01-01,2020-01-01T10:00:00,1.5\n",
            "{master}"
        );
    }
}

#[test]
fn riffle_sql_cli_formats_errors_and_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (sales, _) = write_csv(dir.path());
    let setup = format!(
        "CREATE EXTERNAL TABLE sales STORED AS CSV LOCATION '{sales}' OPTIONS ('has_header' 'true');"
    );
    let query = "SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region;";
    let script = format!("{setup} {query}");
    let embedded = riffle(&[
        "sql", "--master", "local[2]", "--format", "csv", "-e", &script,
    ]);
    assert!(
        embedded.status.success(),
        "{}",
        String::from_utf8_lossy(&embedded.stderr)
    );
    let text = String::from_utf8(embedded.stdout.clone()).unwrap();
    assert!(text.starts_with("region,n\nr0,429\n"), "{text}");
    assert!(String::from_utf8_lossy(&embedded.stderr).contains("7 rows in"));
    let cluster = riffle(&[
        "sql",
        "--master",
        "local-cluster[2,1]",
        "--format",
        "csv",
        "-e",
        &script,
    ]);
    assert!(
        cluster.status.success(),
        "{}",
        String::from_utf8_lossy(&cluster.stderr)
    );
    assert_eq!(cluster.stdout, embedded.stdout);
    let json = riffle(&[
        "sql",
        "--format",
        "json",
        "-e",
        &format!("{setup} SELECT count(*) AS n FROM sales"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&json.stdout).trim(),
        r#"{"n":3000}"#
    );

    let bad = riffle(&["sql", "-e", "SELECT 1; SELEC 2"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("SELEC"), "{err}");
    assert!(err.contains("Line: 1, Column: 1"), "{err}");
    let unset = riffle(&["sql", "-e", "SELECT '${WHO}'"]);
    assert!(String::from_utf8_lossy(&unset.stderr).contains("--var WHO=VALUE"));
}

#[test]
fn bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ragged.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4,5\n").unwrap();
    let fake = dir.path().join("fake.parquet");
    std::fs::write(&fake, "this is not parquet").unwrap();
    let ctx = Context::new("local[2]").unwrap();
    // Schema inference reads the file, so the error may come at registration.
    let err = match ctx.register_csv("ragged", csv.to_str().unwrap()) {
        Err(e) => e.to_string(),
        Ok(()) => ctx
            .sql("SELECT * FROM ragged")
            .unwrap()
            .collect()
            .unwrap_err()
            .to_string(),
    };
    assert!(
        err.contains("ragged.csv") && err.contains("line 3"),
        "{err}"
    );
    let err = match ctx.register_parquet("fake", fake.to_str().unwrap()) {
        Err(e) => e.to_string(),
        Ok(()) => ctx
            .sql("SELECT * FROM fake")
            .unwrap()
            .collect()
            .unwrap_err()
            .to_string(),
    };
    assert!(err.contains("fake.parquet"), "{err}");
    let err = ctx
        .run_statement("CREATE EXTERNAL TABLE t (a STRING) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' WITH SERDEPROPERTIES ('input.regex' = '(x)') LOCATION '/no/such/place'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/place"), "{err}");
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Sale {
    id: u64,
    region: String,
    amount: f64,
    day: Option<u32>,
}

fn sales() -> Vec<Sale> {
    (0..3000u64)
        .map(|i| Sale {
            id: i,
            region: format!("r{}", i % 7),
            amount: ((i * 37) % 1000) as f64,
            day: (i % 5 != 0).then_some((i % 31) as u32),
        })
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, PartialOrd)]
struct RegionStats {
    region: String,
    n: u64,
    total: f64,
    first_day: Option<u32>,
}

#[test]
fn datasets_are_sql_tables_and_results_are_datasets() {
    let ctx = Context::new("local[2]").unwrap();
    let ds = ctx.parallelize(sales(), 4);
    ctx.register_dataset("sales", &ds).unwrap();
    // Expected, computed sequentially.
    let mut expected: std::collections::BTreeMap<String, (u64, f64, Option<u32>)> =
        Default::default();
    for s in sales().into_iter().filter(|s| s.amount >= 100.0) {
        let e = expected.entry(s.region.clone()).or_insert((0, 0.0, None));
        e.0 += 1;
        e.1 += s.amount;
        e.2 = match (e.2, s.day) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let frame = ctx
        .sql(
            "SELECT region, count(*) AS n, sum(amount) AS total, min(day) AS first_day \
             FROM sales WHERE amount >= 100 GROUP BY region",
        )
        .unwrap();
    // SQL result -> Dataset<T>, then Dataset operations on it.
    let mut got: Vec<RegionStats> = frame
        .to_dataset::<RegionStats>()
        .unwrap()
        .filter(|s: &RegionStats| s.n > 0)
        .collect()
        .unwrap();
    got.sort_by(|a, b| a.region.cmp(&b.region));
    let want: Vec<RegionStats> = expected
        .into_iter()
        .map(|(region, (n, total, first_day))| RegionStats {
            region,
            n,
            total,
            first_day,
        })
        .collect();
    assert_eq!(got, want);
    // The table is as lazy as the dataset, and joins with other tables.
    let dir = tempfile::tempdir().unwrap();
    let (_, regions) = write_csv(dir.path());
    ctx.register_csv("regions", &regions).unwrap();
    let joined = ctx
        .sql("SELECT r.name, count(*) AS n FROM sales s JOIN regions r ON s.region = r.region GROUP BY r.name ORDER BY r.name")
        .unwrap()
        .collect()
        .unwrap();
    let text = riffle::arrow::util::pretty::pretty_format_batches(&joined)
        .unwrap()
        .to_string();
    // r0..r4 exist in regions.csv; r0 has ids 0, 7, 14, ... (429 of them).
    assert!(text.contains("| Region 0 | 429 |"), "{text}");
    assert_eq!(text.matches("| Region").count(), 5, "{text}");
    // A dataset from a query can feed another table.
    let again = ctx
        .sql("SELECT id, region, amount, day FROM sales WHERE id < 10")
        .unwrap()
        .to_dataset::<Sale>()
        .unwrap();
    ctx.register_dataset("first_ten", &again).unwrap();
    let n = ctx.sql("SELECT * FROM first_ten").unwrap().count().unwrap();
    assert_eq!(n, 10);
    let mut back = again.collect().unwrap();
    back.sort_by_key(|s| s.id);
    assert_eq!(back, sales()[..10].to_vec());
}

#[test]
fn dataset_sql_bridge_errors_name_the_problem() {
    let ctx = Context::new("local[2]").unwrap();
    // A row type that is not a struct.
    let numbers = ctx.parallelize(vec![1u64, 2, 3], 1);
    let err = ctx
        .register_dataset("numbers", &numbers)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("register_dataset(numbers)") && err.contains("u64"),
        "{err}"
    );
    // A field the result does not have.
    ctx.register_dataset("sales", &ctx.parallelize(sales(), 2))
        .unwrap();
    let err = ctx
        .sql("SELECT region, count(*) AS count FROM sales GROUP BY region")
        .unwrap()
        .to_dataset::<RegionStats>()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`n`") && err.contains("region, count"),
        "{err}"
    );
    // A NULL where the record type has no Option fails the job, naming it.
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    struct Strict {
        id: u64,
        day: u32,
    }
    let err = ctx
        .sql("SELECT id, day FROM sales")
        .unwrap()
        .to_dataset::<Strict>()
        .unwrap()
        .count()
        .unwrap_err()
        .to_string();
    assert!(err.contains("day") || err.contains("null"), "{err}");
}

#[test]
fn write_parquet_and_csv_write_one_file_per_partition_from_the_executors() {
    let dir = tempfile::tempdir().unwrap();
    let (sales, _) = write_csv(dir.path());
    let ctx = Context::new("local[2]").unwrap();
    ctx.register_csv("sales", &sales).unwrap();
    let query = "SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region";
    let expected = sorted_rows(&ctx.sql(query).unwrap().collect().unwrap());
    let frame = ctx.sql(query).unwrap();
    for (format, ext) in [("parquet", "parquet"), ("csv", "csv")] {
        let out = dir.path().join(format!("out-{format}"));
        let out_str = out.to_str().unwrap();
        match format {
            "parquet" => frame.write_parquet(out_str).unwrap(),
            _ => frame.write_csv(out_str).unwrap(),
        }
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // One file per result partition (the aggregate has two), no
        // leftovers of the attempts.
        assert_eq!(
            names,
            vec![
                format!("_SUCCESS"),
                format!("part-00000.{ext}"),
                format!("part-00001.{ext}")
            ]
        );
        let back = Context::new("local[2]").unwrap();
        match format {
            "parquet" => back.register_parquet("t", &format!("{out_str}/")).unwrap(),
            _ => back.register_csv("t", &format!("{out_str}/")).unwrap(),
        }
        let got = back
            .sql("SELECT region, n, total FROM t")
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(sorted_rows(&got), expected, "{format}");
        // Writing again into the same directory is refused, naming it.
        let err = match format {
            "parquet" => frame.write_parquet(out_str),
            _ => frame.write_csv(out_str),
        }
        .unwrap_err()
        .to_string();
        assert!(err.contains(out_str) && err.contains("not empty"), "{err}");
    }
}

#[test]
fn a_bad_csv_row_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("a-good.csv");
    let bad = dir.path().join("b-bad.csv");
    std::fs::write(&good, "a,b\n1,2\n").unwrap();
    std::fs::write(&bad, "a,b\n1,2\n3,4,5\n6,7\n").unwrap();
    let sql = format!(
        "CREATE EXTERNAL TABLE t (a INT, b INT) STORED AS CSV LOCATION '{}/' OPTIONS ('format.has_header' 'true'); SELECT * FROM t",
        dir.path().display()
    );
    for master in ["local[2]", "local-cluster[2,1]"] {
        let run = riffle(&["sql", "--master", master, "-e", &sql]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{master}: {stderr}");
        assert!(
            stderr.contains("line 3") && stderr.contains(&format!("(reading {})", bad.display())),
            "{master}: {stderr}"
        );
    }
}

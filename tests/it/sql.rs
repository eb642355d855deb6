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
    rt.block_on(async {
        df.register_csv("sales", &sales, CsvReadOptions::new())
            .await
            .unwrap();
        df.register_csv("regions", &regions, CsvReadOptions::new())
            .await
            .unwrap();
    });
    for master in ["local[2]"] {
        let ctx = Context::new(master).unwrap();
        ctx.register_csv("sales", &sales).unwrap();
        ctx.register_csv("regions", &regions).unwrap();
        for q in QUERIES {
            let expected = rt.block_on(async { df.sql(q).await.unwrap().collect().await.unwrap() });
            let frame = ctx.sql(q).unwrap();
            let got = frame.collect().unwrap();
            assert_eq!(
                sorted_rows(&got),
                sorted_rows(&expected),
                "{master}: {q}\n{}",
                frame.explain().unwrap()
            );
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
    })
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cloudfront.hql");
    let expected = std::process::Command::new(crate::examples::example("cloudfront"))
        .args(["--master", "local[2]", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(expected.status.success());
    let expected = String::from_utf8(expected.stdout).unwrap();
    for master in ["local[2]", "local-cluster[2,1]"] {
        let out_dir = dir.path().join(format!("out-{}", master.len()));
        let input = format!("INPUT={}", dir.path().join("in").display());
        let output = format!("OUTPUT={}", out_dir.display());
        let run = riffle(&[
            "sql", "--master", master, "--var", &input, "--var", &output, "-f", script,
        ]);
        assert!(
            run.status.success(),
            "{master}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let written = std::fs::read_to_string(out_dir.join("os_requests/000000_0")).unwrap();
        let mut rows: Vec<String> = written.lines().map(|l| l.replace('\u{1}', "\t")).collect();
        rows.sort();
        let got: String = rows.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(got, expected, "{master}");
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

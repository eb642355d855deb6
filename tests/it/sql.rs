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

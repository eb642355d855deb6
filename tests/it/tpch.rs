//! TPC-H at scale 0.01: all 22 queries on Riffle (embedded and on
//! local-cluster[2,1]) equal DataFusion run directly on the same files.

use riffle::arrow::record_batch::RecordBatch;
use riffle::prelude::*;
use riffle::sql::datafusion::prelude::{ParquetReadOptions, SessionContext};

/// CSV text of each query's result, from plain DataFusion.
fn datafusion_results(data: &std::path::Path) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        for t in riffle::tpch::TABLES {
            ctx.register_parquet(
                t,
                format!("{}/{t}/", data.display()),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        }
        let mut out = Vec::new();
        for n in 1..=22 {
            let batches = ctx
                .sql(riffle::tpch::query(n).unwrap())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            out.push(csv(&batches));
        }
        out
    })
}

fn csv(batches: &[RecordBatch]) -> String {
    let mut buf = Vec::new();
    {
        let mut w = riffle::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    String::from_utf8(buf).unwrap()
}

/// Equal up to row order (for queries without a total order) and float
/// rounding in the last digits.
fn same(query: usize, got: &str, expected: &str) {
    let rows = |s: &str| {
        let mut r: Vec<Vec<String>> = s
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect();
        r.sort();
        r
    };
    let (g, e) = (rows(got), rows(expected));
    assert_eq!(
        g.len(),
        e.len(),
        "q{query}: row count\n{got}\nvs\n{expected}"
    );
    for (a, b) in g.iter().zip(&e) {
        assert_eq!(a.len(), b.len(), "q{query}");
        for (x, y) in a.iter().zip(b) {
            let close = match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                _ => false,
            };
            assert!(
                x == y || close,
                "q{query}: {x} vs {y}\n{got}\nvs\n{expected}"
            );
        }
    }
}

#[test]
fn all_22_queries_embedded_and_on_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sf0.01");
    riffle::tpch::generate(0.01, &data).unwrap();
    let expected = datafusion_results(&data);

    let ctx = Context::new("local[2]").unwrap();
    for t in riffle::tpch::TABLES {
        ctx.register_parquet(t, &format!("{}/{t}/", data.display()))
            .unwrap();
    }
    for n in 1..=22 {
        let got = ctx
            .sql(riffle::tpch::query(n).unwrap())
            .unwrap()
            .collect()
            .unwrap();
        same(n, &csv(&got), &expected[n - 1]);
    }

    let out = std::process::Command::new(crate::examples::example("tpch"))
        .args([
            "--master",
            "local-cluster[2,1]",
            "--data",
            data.to_str().unwrap(),
            "--csv",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Every query is cut into stages and shipped: none may fall back to
    // running whole on the driver (right answers, but not distributed).
    assert!(!stderr.contains("runs on the driver"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let results: Vec<&str> = text.split("-- q").skip(1).collect();
    assert_eq!(results.len(), 22);
    for (i, r) in results.iter().enumerate() {
        let body = r.split_once('\n').map(|(_, b)| b).unwrap_or("");
        same(i + 1, body, &expected[i]);
    }
}

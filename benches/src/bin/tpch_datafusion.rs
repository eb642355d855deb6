//! Baseline: the 22 TPC-H queries on DataFusion alone, in one process,
//! with the same number of partitions as Riffle's `local[2]`.
//!
//! `tpch_datafusion DATA_DIR [REPEAT]` prints `qN: SECONDS s` lines and a
//! total on stderr, like `examples/tpch`; with REPEAT, each query's best
//! time of REPEAT runs.

use riffle::sql::datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

fn main() -> anyhow::Result<()> {
    let data = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: tpch_datafusion DATA_DIR [REPEAT]"))?;
    let repeat: usize = match std::env::args().nth(2) {
        Some(r) => r.parse::<usize>()?.max(1),
        None => 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        for t in riffle::tpch::TABLES {
            ctx.register_parquet(t, format!("{data}/{t}/"), ParquetReadOptions::default())
                .await?;
        }
        let mut total = 0.0;
        for n in 1..=22 {
            let sql = riffle::tpch::query(n).ok_or_else(|| anyhow::anyhow!("no query {n}"))?;
            let mut secs = f64::INFINITY;
            let mut batches = Vec::new();
            for _ in 0..repeat {
                let started = std::time::Instant::now();
                batches = ctx.sql(sql).await?.collect().await?;
                secs = secs.min(started.elapsed().as_secs_f64());
            }
            total += secs;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            eprintln!("q{n}: {secs:.3} s ({rows} rows)");
        }
        eprintln!("total: {total:.3} s");
        Ok(())
    })
}

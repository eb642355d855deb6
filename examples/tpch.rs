//! TPC-H on Riffle SQL: generates the data (once) and runs one query or
//! all 22.
//!
//! ```text
//! cargo run --release --example tpch -- [--master M] [--scale SF] [--data DIR] [--query N] [--repeat R] [--csv]
//! ```
//!
//! Data is written as Parquet under DIR (default `target/tpch-sf<SF>`) by
//! the same generator as `riffle gen tpch`. Each query's result is printed
//! as a table (or CSV with `--csv`, after a `-- qN` line); times go to
//! stderr. With `--repeat R` each query runs R times and its best time
//! counts (the benchmark's defence against a noisy machine).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context as _, bail};
use riffle::prelude::*;
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    riffle::init();
    riffle::init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tpch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut master, mut scale, mut data, mut query, mut csv, mut repeat) =
        ("local".to_string(), 0.01f64, None, None, false, 1usize);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--master" => master = value()?,
            "--scale" => scale = value()?.parse()?,
            "--data" => data = Some(PathBuf::from(value()?)),
            "--query" => query = Some(value()?.parse::<usize>()?),
            "--csv" => csv = true,
            "--repeat" => repeat = value()?.parse::<usize>()?.max(1),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let data = data.unwrap_or_else(|| PathBuf::from(format!("target/tpch-sf{scale}")));
    if !data.join("lineitem").exists() {
        eprintln!("generating TPC-H scale {scale} into {}", data.display());
        riffle::tpch::generate(scale, &data)?;
    }
    let ctx = Context::builder().master(&master).progress(true).build()?;
    // Ctrl-C cancels the job (its tasks stop, its shuffle output is
    // deleted); a second Ctrl-C exits at once.
    ctx.cancel_on_ctrl_c(true)?;
    for table in riffle::tpch::TABLES {
        ctx.register_parquet(table, &format!("{}/{table}/", data.display()))?;
    }
    let queries: Vec<usize> = match query {
        Some(n) => vec![n],
        None => (1..=22).collect(),
    };
    let mut total = 0.0;
    for n in queries {
        let sql = riffle::tpch::query(n).with_context(|| format!("there is no query {n}"))?;
        let mut secs = f64::INFINITY;
        let mut batches = Vec::new();
        for _ in 0..repeat {
            let started = std::time::Instant::now();
            batches = ctx
                .sql(sql)?
                .collect()
                .with_context(|| format!("query {n}"))?;
            secs = secs.min(started.elapsed().as_secs_f64());
        }
        total += secs;
        if csv {
            println!("-- q{n}");
            let mut writer = riffle::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            for b in &batches {
                writer.write(b)?;
            }
        } else {
            println!(
                "{}",
                riffle::arrow::util::pretty::pretty_format_batches(&batches)?
            );
        }
        eprintln!("q{n}: {secs:.3} s");
    }
    eprintln!("total: {total:.3} s");
    Ok(())
}

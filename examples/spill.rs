//! Jobs whose wide operations hold far more than an executor's memory, for
//! the memory-limit test and `benches/spill.sh`. Data is generated inside
//! the tasks (nothing to read), so a job's size is one number.
//!
//! ```text
//! cargo run --release --example spill -- [--master M] [--partitions P] JOB N
//! ```
//!
//! JOB is one of:
//! - `words N`: a word count of 2N words over a vocabulary of N distinct
//!   words (`w0000000000`...), each seen twice: `reduce_by_key` holds N keys.
//!   Prints `words: keys=N checksum=C`, C the sum of word number × count,
//!   which is N(N-1) when every count is right.
//! - `sort N`: `sort_by` of N records (a permutation of 0..N with a 40-byte
//!   payload). Each output partition checks its own order; prints
//!   `sort: records=N ordered=true` when every partition is sorted and each
//!   starts above the previous one's end.
//! - `join N`: N records joined with N records on a key both sides have
//!   (every key once a side). Prints `join: pairs=N checksum=C`.
//! - `sql-group N`: SQL `GROUP BY` over 2N rows with N distinct keys (a
//!   Dataset table). Prints `sql-group: groups=N rows=2N`.
//!
//! The job summary (with spilled bytes) goes to stderr.

/// Riffle's binaries and examples use mimalloc (see the workspace
/// Cargo.toml): memory is measured under the allocator users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context as _, bail};
use riffle::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of the `sql-group` table.
#[derive(Serialize, Deserialize)]
struct Row {
    k: i64,
    v: i64,
}

/// The `sql-group` answer.
#[derive(Serialize, Deserialize)]
struct Groups {
    groups: i64,
    rows: i64,
}

/// One sorted partition's check: its first and last key, records, and
/// whether it was in order.
type Run = (Option<u64>, Option<u64>, u64, bool);

fn main() -> std::process::ExitCode {
    riffle::init();
    riffle::init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spill: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut builder = Context::builder();
    let mut partitions = 8usize;
    let mut job = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--master" => builder = builder.master(args.next().context("--master needs a value")?),
            "--partitions" => {
                partitions = args.next().context("--partitions needs a value")?.parse()?
            }
            _ => job.push(arg),
        }
    }
    let (name, n) = match job.as_slice() {
        [name, n] => (
            name.as_str(),
            n.parse::<u64>().context("N must be a number")?,
        ),
        _ => bail!("usage: spill [--master M] [--partitions P] words|sort|join|sql-group N"),
    };
    let ctx = builder.build()?;
    // Partition p generates numbers p, p + P, p + 2P, ... below `count`.
    let starts = |count: u64| -> Dataset<(u64, u64)> {
        let p = partitions as u64;
        ctx.parallelize((0..p).map(|i| (i, count)).collect(), partitions)
    };
    let line = match name {
        "words" => {
            let p = partitions as u64;
            let (keys, checksum) = starts(2 * n)
                .flat_map_with((p, n), |&(p, n), (first, count)| {
                    (first..count)
                        .step_by(p as usize)
                        .map(move |i| (format!("w{:010}", i % n), 1u64))
                })
                .reduce_by_key(|a, b| a + b)
                .map(|(w, c)| {
                    (
                        1u64,
                        w[1..].parse::<u64>().unwrap_or(u64::MAX).wrapping_mul(c),
                    )
                })
                .reduce(|a, b| (a.0 + b.0, a.1.wrapping_add(b.1)))?
                .unwrap_or((0, 0));
            format!("words: keys={keys} checksum={checksum}")
        }
        "sort" => {
            let p = partitions as u64;
            let mut runs: Vec<Run> = starts(n)
                .flat_map_with((p, n), |&(p, n), (first, count)| {
                    (first..count)
                        .step_by(p as usize)
                        .map(move |i| ((i * 7919) % n, format!("{:040}", i)))
                })
                .sort_by(|(k, _): &(u64, String)| *k, true)
                .map_partitions(|it| {
                    let mut run: Run = (None, None, 0, true);
                    for (k, _) in it {
                        if run.1.is_some_and(|last| last > k) {
                            run.3 = false;
                        }
                        run.0.get_or_insert(k);
                        run.1 = Some(k);
                        run.2 += 1;
                    }
                    std::iter::once(run)
                })
                .collect()?;
            runs.retain(|r| r.2 > 0);
            let records: u64 = runs.iter().map(|r| r.2).sum();
            let ordered = runs.iter().all(|r| r.3) && runs.windows(2).all(|w| w[0].1 < w[1].0);
            format!("sort: records={records} ordered={ordered}")
        }
        "join" => {
            let p = partitions as u64;
            let side = |tag: u64| {
                starts(n).flat_map_with((p, tag), |&(p, tag), (first, count)| {
                    (first..count)
                        .step_by(p as usize)
                        .map(move |i| (i, format!("{tag}-{i:030}")))
                })
            };
            let (pairs, checksum) = side(1)
                .join(&side(2))
                .map(|(k, (a, b))| (1u64, k.wrapping_mul((a.len() + b.len()) as u64)))
                .reduce(|a, b| (a.0 + b.0, a.1.wrapping_add(b.1)))?
                .unwrap_or((0, 0));
            format!("join: pairs={pairs} checksum={checksum}")
        }
        "sql-group" => {
            let p = partitions as u64;
            let rows = starts(2 * n).flat_map_with((p, n), |&(p, n), (first, count)| {
                (first..count).step_by(p as usize).map(move |i| Row {
                    k: (i % n) as i64,
                    v: i as i64,
                })
            });
            ctx.register_dataset("t", &rows)?;
            let answer: Vec<Groups> = ctx
                .sql(
                    "SELECT count(*) AS groups, CAST(sum(c) AS BIGINT) AS rows \
                     FROM (SELECT k, count(*) AS c, max(v) AS m FROM t GROUP BY k)",
                )?
                .to_dataset()?
                .collect()?;
            let g = answer.first().context("no answer row")?;
            format!("sql-group: groups={} rows={}", g.groups, g.rows)
        }
        other => bail!("unknown job {other:?}: expected words, sort, join or sql-group"),
    };
    println!("{line}");
    eprint!("{}", ctx.last_job());
    Ok(())
}

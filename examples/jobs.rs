//! A few small jobs with deterministic output, used to compare deployment
//! modes (the cluster tests run them embedded and on executor processes).
//!
//! ```text
//! cargo run --example jobs -- [--master M] [--min-executors N] [--start-on-stdin] JOB
//! ```
//!
//! `--start-on-stdin` prints the web UI's address and waits for a line on
//! stdin before running JOB, so that a benchmark can connect a browser
//! to the UI first and measure what watching a job costs, not what
//! loading the page costs (`benches/ui.sh`).
//!
//! JOB is one of `join`, `sort`, `distinct`, `count-by-key`, `save DIR`
//! (a word count written with `save_as_text_file`), `slow`
//! (many tasks that each take a while), `noop N` (N tasks that do nothing,
//! for measuring scheduling overhead), `big-result` (a result larger than
//! one message), `sql-dataset` (a Dataset queried with SQL, and the
//! result read back as a Dataset), `cancel DIR` (a job over the files of
//! DIR, cancelled while its last, slow task runs) or `concurrent` (`join`
//! and `distinct` submitted from two threads at once) or
//! `independent-sides` (a join whose two map stages can run at the same
//! time, timed against its sides alone) or `ui-demo` (a slow two-stage
//! job, then a failing one, for the web UI's tests: it prints the UI's
//! address, starts the jobs once a line arrives on stdin (so a browser can
//! load the page first, however slowly it starts), prints `ui-demo: done`,
//! and waits for stdin to close). Results go to
//! stdout; the job summary to stderr.

use anyhow::{Context as _, bail};
use riffle::SchedulerEvent;
use riffle::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A row of the `sql-dataset` job's table.
#[derive(Serialize, Deserialize)]
struct Sale {
    id: u32,
    region: String,
    amount: f64,
    note: Option<String>,
}

/// A row of its query's result.
#[derive(Serialize, Deserialize)]
struct RegionTotal {
    region: String,
    sales: u64,
    total: f64,
}

fn main() -> std::process::ExitCode {
    riffle::init();
    riffle::init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobs: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut builder = Context::builder().progress(true);
    let mut job = Vec::new();
    let mut start_on_stdin = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--master" => builder = builder.master(args.next().context("--master needs a value")?),
            "--shuffle-store" => {
                builder =
                    builder.shuffle_store(args.next().context("--shuffle-store needs a value")?)
            }
            "--min-executors" => {
                builder = builder.min_executors(
                    args.next()
                        .context("--min-executors needs a value")?
                        .parse()?,
                )
            }
            "--start-on-stdin" => start_on_stdin = true,
            _ => job.push(arg),
        }
    }
    let ctx = builder.build()?;
    if let Some(url) = ctx.driver_url() {
        eprintln!("driver: {url}");
    }
    if start_on_stdin {
        eprintln!("web UI: {}", ctx.ui_url().unwrap_or("off"));
        std::io::stdin()
            .read_line(&mut String::new())
            .context("--start-on-stdin: reading stdin")?;
    }
    let lines: Vec<String> = match job.first().map(String::as_str) {
        Some("join") => join_job(&ctx)?,
        Some("sort") => ctx
            .parallelize((0..5000u64).map(|i| (i * 7919) % 5003).collect(), 6)
            .sort_by(|x: &u64| *x, false)
            .map(|x| x.to_string())
            .collect()?,
        Some("distinct") => distinct_job(&ctx)?,
        Some("count-by-key") => {
            let counts = ctx
                .parallelize((0..10_000u32).map(|i| (i % 17, ())).collect(), 4)
                .count_by_key()?;
            let mut out: Vec<String> = counts
                .into_iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.sort();
            out
        }
        Some("save") => {
            let out = job.get(1).context("save needs an output directory")?;
            ctx.parallelize((0..5000u32).map(|i| format!("w{}", i % 101)).collect(), 4)
                .map(|w| (w, 1u64))
                .reduce_by_key(|a, b| a + b)
                .map(|(w, n)| format!("{w}\t{n}"))
                .sort_by(|line: &String| line.clone(), true)
                .save_as_text_file(out)?;
            vec![format!("saved to {out}")]
        }
        Some("ui-demo") => ui_demo(&ctx)?,
        Some("slow") => {
            let n = ctx
                .parallelize((0..40u64).collect(), 40)
                .map(|x| {
                    std::thread::sleep(Duration::from_millis(150));
                    x
                })
                .count()?;
            vec![n.to_string()]
        }
        Some("noop") => {
            let n: usize = job.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
            let started = std::time::Instant::now();
            let count = ctx.parallelize(Vec::<u8>::new(), n).count()?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{n} tasks in {secs:.3} s: {:.0} tasks/s", n as f64 / secs);
            vec![count.to_string()]
        }
        Some("big-result") => {
            let n = ctx
                .parallelize(vec![0u8], 1)
                .flat_map(|_| vec![7u8; 3 << 20])
                .collect()?
                .len();
            vec![n.to_string()]
        }
        Some("cancel") => {
            // A map stage over the files of DIR (sorted; the last one
            // slow), cancelled once its slow task runs and other map
            // tasks have written shuffle output.
            let input = job.get(1).context("cancel needs an input directory")?;
            let mut events = ctx.subscribe_events();
            let files = std::fs::read_dir(input)?.count();
            let handle = ctx
                .text_file(input)?
                .map(|line: String| {
                    std::thread::sleep(Duration::from_millis(2));
                    (line.len() % 10, 1u64)
                })
                .reduce_by_key(|a, b| a + b)
                .count_async();
            let slow = (files - 1) as u32;
            futures::executor::block_on(async {
                loop {
                    match events.recv().await {
                        Ok(SchedulerEvent::TaskStarted { task, .. }) if task.partition == slow => {
                            return Ok(());
                        }
                        Ok(SchedulerEvent::JobEnded { .. }) | Err(_) => {
                            bail!("the job ended before it could be cancelled")
                        }
                        Ok(_) => {}
                    }
                }
            })?;
            std::thread::sleep(Duration::from_millis(300));
            let cancelled = std::time::Instant::now();
            handle.cancel();
            let outcome = handle.wait();
            let ms = cancelled.elapsed().as_millis();
            match outcome {
                Err(DriverError::Cancelled { job }) => {
                    vec![format!("{job} cancelled; ended {ms} ms after cancel")]
                }
                other => bail!("expected a cancelled job, got {other:?}"),
            }
        }
        Some("concurrent") => {
            // The join and the distinct jobs, each from its own thread at
            // the same time; printed in a fixed order.
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| join_job(&ctx));
                let b = s.spawn(|| distinct_job(&ctx));
                (a.join(), b.join())
            });
            let mut out = a.map_err(|_| anyhow::anyhow!("join thread panicked"))??;
            out.extend(b.map_err(|_| anyhow::anyhow!("distinct thread panicked"))??);
            out
        }
        Some("independent-sides") => {
            // Two CPU-bound sides of one partition each, timed alone and
            // then joined: their map stages are independent, so with two
            // free slots the join takes about as long as one side.
            let side = |seed: u64| {
                ctx.parallelize(vec![seed], 1).flat_map(|seed: u64| {
                    // About half a second of arithmetic on one core.
                    let mut x = seed;
                    for _ in 0..150_000_000u64 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    (0..100u64).map(move |k| (k, x)).collect::<Vec<_>>()
                })
            };
            let timed = |f: &dyn Fn() -> anyhow::Result<usize>| -> anyhow::Result<f64> {
                let started = std::time::Instant::now();
                f()?;
                Ok(started.elapsed().as_secs_f64())
            };
            let left = timed(&|| Ok(side(1).count()? as usize))?;
            let right = timed(&|| Ok(side(2).count()? as usize))?;
            let joined = timed(&|| Ok(side(1).join(&side(2)).count()? as usize))?;
            eprintln!(
                "independent sides: left {left:.3} s + right {right:.3} s = {:.3} s; join of both {joined:.3} s ({:.2}x of the sum)",
                left + right,
                joined / (left + right)
            );
            vec![side(1).join(&side(2)).count()?.to_string()]
        }
        Some("sql-dataset") => {
            let sales = ctx.parallelize((0..5000u32).collect(), 5).map(|i| Sale {
                id: i,
                region: format!("r{}", i % 7),
                amount: f64::from(i % 100),
                note: (i % 3 == 0).then(|| format!("n{i}")),
            });
            ctx.register_dataset("sales", &sales)?;
            let totals: Dataset<RegionTotal> = ctx
                .sql(
                    "SELECT region, count(*) AS sales, sum(amount) AS total FROM sales \
                     WHERE note IS NOT NULL GROUP BY region",
                )?
                .to_dataset()?;
            let mut out: Vec<String> = totals
                .map(|t| format!("{} {} {}", t.region, t.sales, t.total))
                .collect()?;
            out.sort();
            out
        }
        other => bail!(
            "unknown job {other:?}: expected join, sort, distinct, count-by-key, save DIR, slow, noop [N], big-result, sql-dataset, cancel DIR, concurrent or independent-sides"
        ),
    };
    for line in lines {
        println!("{line}");
    }
    let summary = ctx.last_job();
    eprint!("{summary}");
    eprintln!(
        "summary: {} stages, {} tasks, executors used: {}",
        summary.stages,
        summary.tasks,
        summary.tasks_per_executor.len()
    );
    Ok(())
}

/// Pairs joined on their keys, sorted.
fn join_job(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let left = ctx.parallelize((0..2000u32).map(|i| (i % 97, i)).collect(), 7);
    let right = ctx.parallelize((0..300u32).map(|i| (i % 89, format!("r{i}"))).collect(), 3);
    let mut out: Vec<String> = left
        .join(&right)
        .map(|(k, (v, w))| format!("{k} {v} {w}"))
        .collect()?;
    out.sort();
    Ok(out)
}

/// Distinct strings, sorted.
fn distinct_job(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = ctx
        .parallelize((0..10_000u32).map(|i| format!("k{}", i % 313)).collect(), 5)
        .distinct()
        .collect()?;
    out.sort();
    Ok(out)
}

/// A slow two-stage job and a failing one, for watching in the web UI.
/// `UI_DEMO_TASK_MS` (default 700) is how long each map task takes.
fn ui_demo(ctx: &Context) -> anyhow::Result<Vec<String>> {
    use std::io::{Read, Write};
    eprintln!("web UI: {}", ctx.ui_url().unwrap_or("off"));
    // The caller says when it is watching: a browser cold-starting on a
    // loaded 2-core machine can take longer than the slow job runs.
    std::io::stdin().read_line(&mut String::new())?;
    let pause: u64 = std::env::var("UI_DEMO_TASK_MS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(700);
    ctx.set_job_description(Some("ui-demo: slow count by residue"));
    let mut counts = ctx
        .parallelize((0..64u32).collect(), 8)
        .map_with(pause, |pause, x| {
            std::thread::sleep(Duration::from_millis(*pause));
            (x % 5, 1u64)
        })
        .reduce_by_key(|a, b| a + b)
        .collect()?;
    counts.sort();
    ctx.set_job_description(Some("ui-demo: failing job"));
    let failed = ctx
        .parallelize(vec![1u32, 2, 3], 3)
        .map(|x| {
            if x == 2 {
                panic!("boom in the ui demo");
            }
            x
        })
        .count();
    ctx.set_job_description(None);
    let mut out = std::io::stdout().lock();
    for (k, n) in &counts {
        writeln!(out, "{k} {n}")?;
    }
    writeln!(
        out,
        "failing job: {}",
        if failed.is_err() {
            "failed"
        } else {
            "succeeded"
        }
    )?;
    writeln!(out, "ui-demo: done")?;
    out.flush()?;
    drop(out);
    // Keep the UI up until the caller is done looking.
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(Vec::new())
}

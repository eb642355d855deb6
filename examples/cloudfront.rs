//! The CloudFront access-log report of the AWS Hive/EMR tutorial, on the
//! Dataset API: requests per operating system between two dates.
//!
//! ```text
//! cargo run --release --example cloudfront -- [--master M] [--from 2014-07-05] [--to 2014-08-05] [INPUT ...]
//! ```
//!
//! Prints `os<TAB>count` lines sorted by os, nothing else on stdout; a
//! summary of the lines read and the lines that did not match goes to
//! stderr. Lines are parsed with exactly the semantics of Hive's
//! `RegexSerDe` and the tutorial's regex (`riffle::sql::cloudfront`): a line
//! that does not match is a row of NULLs, a date that does not convert is
//! NULL, and `BETWEEN` keeps neither. With no INPUT, a sample data set is
//! generated first.

/// Jobs allocate many small values; mimalloc is markedly faster than the
/// system allocator at that (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::Parser;
use riffle::prelude::*;
use riffle::sql::cloudfront::{CloudFrontParser, Date};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

/// Command line of the CloudFront report.
#[derive(Parser)]
struct Args {
    /// Where tasks run: `local`, `local[N]`.
    #[arg(long, default_value = "local")]
    master: String,
    /// First date counted (inclusive), yyyy-mm-dd.
    #[arg(long, default_value = "2014-07-05", value_parser = parse_date)]
    from: Date,
    /// Last date counted (inclusive), yyyy-mm-dd.
    #[arg(long, default_value = "2014-08-05", value_parser = parse_date)]
    to: Date,
    /// Input files, directories or globs (plain or .gz); none for sample data.
    inputs: Vec<String>,
}

fn parse_date(s: &str) -> Result<Date, String> {
    Date::parse(s).ok_or_else(|| format!("{s:?} is not a date of the form yyyy-mm-dd"))
}

/// What one log line counts towards.
#[derive(Serialize, Deserialize, Hash, PartialEq, Eq, Clone, Debug)]
enum Tally {
    /// A request in the date range, by operating system.
    Os(String),
    /// A line that matched but whose date is NULL or out of range.
    Skipped,
    /// A line that did not match the regex (headers, malformed lines).
    Unmatched,
}

/// The parser, compiled once per process (it holds the fallback regex).
static PARSER: LazyLock<CloudFrontParser> = LazyLock::new(CloudFrontParser::new);

fn main() -> std::process::ExitCode {
    // Become an executor when started as one (local-cluster, cluster).
    riffle::init();
    riffle::init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudfront: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sample_dir = None;
    let inputs = if args.inputs.is_empty() {
        let dir =
            std::env::temp_dir().join(format!("riffle-cloudfront-sample-{}", std::process::id()));
        let summary = riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
            lines: 100_000,
            files: 4,
            seed: 42,
            out: dir.clone(),
            gzip: true,
            wild: false,
        })?;
        eprintln!(
            "no INPUT given: generated a sample data set of {} lines in {}",
            summary.lines,
            dir.display()
        );
        sample_dir = Some(dir.clone());
        vec![dir.display().to_string()]
    } else {
        args.inputs.clone()
    };

    let ctx = Context::builder()
        .master(&args.master)
        .progress(true)
        .build()?;
    // Ctrl-C cancels the job (its tasks stop, its shuffle output is
    // deleted); a second Ctrl-C exits at once.
    ctx.cancel_on_ctrl_c(true)?;
    let paths: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let range = (args.from.days_since_epoch(), args.to.days_since_epoch());
    let tallies = ctx
        .text_files(&paths)?
        // Count per partition first: the hot loop looks up borrowed `&str`
        // keys and allocates only for an OS seen for the first time.
        .map_partitions_with(range, |&(from, to), lines| {
            let mut os_counts: HashMap<String, u64> = HashMap::new();
            let (mut skipped, mut unmatched) = (0u64, 0u64);
            for line in lines {
                let Some(groups) = PARSER.groups(&line) else {
                    unmatched += 1;
                    continue;
                };
                let in_range = Date::parse(groups[0])
                    .map(|d| d.days_since_epoch())
                    .is_some_and(|d| from <= d && d <= to);
                if !in_range {
                    skipped += 1;
                } else if let Some(n) = os_counts.get_mut(groups[10]) {
                    *n += 1;
                } else {
                    os_counts.insert(groups[10].to_owned(), 1);
                }
            }
            os_counts
                .into_iter()
                .map(|(os, n)| (Tally::Os(os), n))
                .chain([(Tally::Skipped, skipped), (Tally::Unmatched, unmatched)])
        })
        .reduce_by_key(|a, b| a + b)
        .collect()
        .context("CloudFront report job failed")?;

    let mut report: Vec<(String, u64)> = Vec::new();
    let (mut read, mut unmatched) = (0u64, 0u64);
    for (tally, n) in tallies {
        read += n;
        match tally {
            Tally::Os(os) => report.push((os, n)),
            Tally::Unmatched => unmatched += n,
            Tally::Skipped => {}
        }
    }
    report.sort();
    let mut out = std::io::stdout().lock();
    for (os, n) in report {
        if let Err(e) = writeln!(out, "{os}\t{n}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    eprintln!("{read} lines read, {unmatched} did not match");
    if let Some(dir) = sample_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

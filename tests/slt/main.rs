//! DataFusion's own SQL test suite run against Riffle: the sqllogictest
//! files of `datafusion-sqllogictest` (the version Riffle links, fetched
//! from crates.io, see [`package`]) through `Context::sql` on `local[2]`
//! and `local-cluster[2,1]`.
//!
//! Every statement and query record must pass, or fail only for a written
//! reason: automatically for `EXPLAIN` text (Riffle shows its distributed
//! plan), data files the package does not ship, and rows in an order the
//! query does not define; by hand in `known_failures.txt`. A failure with no
//! reason, or a listed failure that now passes, fails the test.
//!
//! `SLT_FILES=window,joins` and `SLT_MASTERS='local[2] local-cluster[2,1]'`
//! narrow a run; the
//! figures and every failure are written to `<target>/slt/report-*.txt`.
//! A plain test binary (`harness = false`) because `local-cluster` starts
//! its executors from this very executable: `main` calls `riffle::init`.

#![allow(clippy::unwrap_used)]

mod db;
mod package;
mod reasons;

use db::{Kind, RiffleDb, SqlError};
use reasons::{Outcome, Tally};
use riffle::prelude::*;
use sqllogictest::{Record, Runner};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The files run (the list: the core of SQL semantics).
const FILES: &[&str] = &[
    "aggregate",
    "group_by",
    "joins",
    "window",
    "order",
    "limit",
    "union",
    "distinct_on",
    "subquery",
    "cte",
    "select",
    "predicates",
    "count_star_rule",
    "grouping",
    "intersection",
];

const MASTERS: &[&str] = &["local[2]", "local-cluster[2,1]"];

/// A record running longer than this is a hang: the run stops with it named.
const RECORD_TIMEOUT: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    riffle::init();
    // libtest-style flags cargo may pass (`--nocapture`, a filter) are
    // ignored: this binary always runs the whole list it is given by env.
    let dir = match package::unpacked() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("slt: cannot get {}: {e}", package::PACKAGE);
            return ExitCode::FAILURE;
        }
    };
    std::env::set_current_dir(&dir).unwrap();
    let known = reasons::Known::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/slt/known_failures.txt"
    )));
    let known = match known {
        Ok(k) => k,
        Err(e) => {
            eprintln!("slt: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = selected("SLT_FILES", ',', FILES);
    let masters = selected("SLT_MASTERS", ' ', MASTERS);
    let mut ok = true;
    let mut seen_known = std::collections::HashSet::new();
    for master in &masters {
        let started = Instant::now();
        let mut report = String::new();
        let mut total = Tally::default();
        for file in &files {
            let tally = match run_file(master, file, &known, &mut report, &mut seen_known) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("slt {master} {file}: {e}");
                    ok = false;
                    continue;
                }
            };
            println!("slt {master:<18} {file:<16} {}", tally.line());
            ok &= tally.unexpected == 0;
            total.add(&tally);
        }
        println!(
            "slt {master:<18} {:<16} {} ({:.0?})",
            "TOTAL",
            total.line(),
            started.elapsed()
        );
        let name = format!("report-{}.txt", master.replace(['[', ']', ','], "_"));
        let path = dir.parent().unwrap().join(name);
        let _ = std::fs::write(&path, &report);
        if total.unexpected > 0 {
            eprintln!(
                "slt {master}: {} records failed with no written reason (details in {}):\n{}",
                total.unexpected,
                path.display(),
                report
                    .lines()
                    .filter(|l| l.starts_with("UNEXPECTED"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    // A listed failure that no longer fails on any master is stale.
    if files.len() == FILES.len() && masters.len() == MASTERS.len() {
        for key in known.keys() {
            if !seen_known.contains(key) {
                eprintln!("slt: {key} is listed in known_failures.txt but passes now: remove it");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn selected(var: &str, separator: char, all: &[&str]) -> Vec<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .split(separator)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
            .collect(),
        _ => all.iter().map(|s| s.to_string()).collect(),
    }
}

/// Runs one file on a fresh context (its tables and settings are its own)
/// and appends a line per failed record to `report`.
fn run_file(
    master: &str,
    file: &str,
    known: &reasons::Known,
    report: &mut String,
    seen_known: &mut std::collections::HashSet<String>,
) -> Result<Tally, String> {
    let scratch = Path::new("test_files/scratch").join(file);
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let ctx = Context::builder()
        .master(master)
        .ui(false)
        .progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let records = sqllogictest::parse_file::<Kind>(format!("test_files/{file}.slt"))
        .map_err(|e| e.to_string())?;
    let conn = ctx.clone();
    let mut runner = Runner::new(move || {
        let ctx = conn.clone();
        async move { Ok::<_, SqlError>(RiffleDb { ctx }) }
    });
    // DataFusion's runner's label and checks (`bin/sqllogictests.rs`).
    runner.add_label("Datafusion");
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_normalizer(|s| s.trim_end().to_string());
    runner.with_validator(reasons::validator);
    let mut context = reasons::FileContext::default();
    let mut tally = Tally::default();
    for record in records {
        let (loc, sql) = match &record {
            Record::Halt { .. } => break,
            Record::Statement { loc, sql, .. } | Record::Query { loc, sql, .. } => {
                (loc.clone(), sql.clone())
            }
            _ => {
                let _ = runner.run(record);
                continue;
            }
        };
        let key = format!(
            "{}:{}",
            Path::new(loc.file()).file_name().unwrap().to_string_lossy(),
            loc.line()
        );
        let watchdog = reasons::watchdog(RECORD_TIMEOUT, format!("{master} {key}: {sql}"));
        let result = runner.run(record);
        drop(watchdog);
        let outcome = match result {
            Ok(_) => Outcome::Passed,
            Err(e) => {
                let kind = e.kind();
                let detail = e.display(false).to_string();
                if let Some(reason) = known.get(&key) {
                    seen_known.insert(key.clone());
                    Outcome::Known(reason.to_string(), detail)
                } else if let Some(reason) = context.reason(&sql, &kind) {
                    Outcome::Skipped(reason)
                } else {
                    Outcome::Unexpected(detail)
                }
            }
        };
        context.note(&sql, &outcome);
        tally.count(&key, &outcome, report);
    }
    drop(runner);
    drop(ctx);
    Ok(tally)
}

//! Word count: the classic first job, on the Dataset API.
//!
//! ```text
//! cargo run --release --example wordcount -- [--master M] [--top N] [INPUT ...]
//! ```
//!
//! Counts the words (tokens of `str::split_whitespace`) of the input files or
//! globs (plain or `.gz`) and prints the `N` most frequent as `word<TAB>count`
//! lines, highest count first, ties by word ascending. With no INPUT it first
//! generates a small sample data set (CloudFront access logs) and says so on
//! stderr.

/// Jobs allocate many small values; mimalloc is markedly faster than the
/// system allocator at that (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::Parser;
use riffle::prelude::*;
use std::cmp::Reverse;
use std::io::Write;

/// Command line of the word-count example.
#[derive(Parser)]
struct Args {
    /// Where tasks run: `local`, `local[N]`.
    #[arg(long, default_value = "local")]
    master: String,
    /// How many words to print.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Input files, directories or globs; none for generated sample data.
    inputs: Vec<String>,
}

fn main() -> std::process::ExitCode {
    // Become an executor when started as one (local-cluster, cluster).
    riffle::init();
    riffle::init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wordcount: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sample_dir = None;
    let inputs = if args.inputs.is_empty() {
        let dir =
            std::env::temp_dir().join(format!("riffle-wordcount-sample-{}", std::process::id()));
        let summary = riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
            lines: 200_000,
            files: 4,
            seed: 42,
            out: dir.clone(),
            gzip: false,
            wild: false,
        })?;
        eprintln!(
            "no INPUT given: generated a sample data set of {} lines ({} bytes) in {}",
            summary.lines,
            summary.bytes,
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
    let top = ctx
        .text_files(&paths)?
        .flat_map(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|word| (word, 1u64))
        .reduce_by_key(|a, b| a + b)
        .map(|(word, count)| (Reverse(count), word))
        .take_ordered(args.top)
        .context("word count job failed")?;

    let mut out = std::io::stdout().lock();
    for (Reverse(count), word) in top {
        if let Err(e) = writeln!(out, "{word}\t{count}") {
            // A closed pipe (`| head`) is not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    if let Some(dir) = sample_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

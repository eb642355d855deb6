//! The `riffle` command-line tool.
//!
//! ```text
//! riffle gen cloudfront --lines N --files K --seed S --out DIR [--gzip]
//! ```

/// Jobs allocate many small values; mimalloc is markedly faster than the
/// system allocator at that (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Riffle: a distributed dataflow engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate data sets.
    Gen {
        #[command(subcommand)]
        what: Gen,
    },
}

#[derive(Subcommand)]
enum Gen {
    /// CloudFront access logs (legacy format) as in the AWS Hive/EMR tutorial.
    Cloudfront {
        /// Total number of lines.
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        /// Number of files.
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// Seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Write gzip-compressed files (`.log.gz`).
        #[arg(long)]
        gzip: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riffle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen {
            what:
                Gen::Cloudfront {
                    lines,
                    files,
                    seed,
                    out,
                    gzip,
                },
        } => {
            let started = std::time::Instant::now();
            let summary = riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
                lines,
                files,
                seed,
                out: out.clone(),
                gzip,
            })?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "wrote {} lines ({} malformed) in {} files, {:.1} MB ({:.1} MB on disk) to {} in {:.2} s ({:.0} MB/s)",
                summary.lines,
                summary.malformed,
                summary.files,
                summary.bytes as f64 / 1e6,
                summary.disk_bytes as f64 / 1e6,
                out.display(),
                secs,
                summary.bytes as f64 / 1e6 / secs.max(1e-9)
            );
            Ok(())
        }
    }
}

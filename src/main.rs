//! The `riffle` command-line tool.
//!
//! ```text
//! riffle gen cloudfront --lines N --files K --seed S --out DIR [--gzip] [--wild]
//! riffle secret [--file PATH]
//! riffle certs --out DIR [--host NAME]...
//! riffle history DIR [--bind IP] [--port 18080]
//! ```

/// Jobs allocate many small values; mimalloc is markedly faster than the
/// system allocator at that (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod shell;

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
    /// Run SQL: statements from -e or -f, or an interactive shell.
    Sql {
        /// Where tasks run: local, local[N], local-cluster[E,C], riffle://HOST:PORT.
        #[arg(long, default_value = "local")]
        master: String,
        /// A variable for `${NAME}` in the statements, as NAME=VALUE.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Statements to run.
        #[arg(short = 'e', conflicts_with = "file")]
        execute: Option<String>,
        /// A file of statements to run.
        #[arg(short = 'f')]
        file: Option<PathBuf>,
        /// How to print results.
        #[arg(long, value_enum, default_value = "table")]
        format: shell::Format,
    },
    /// Run an executor that registers with a driver (for SQL-only work; a
    /// job binary runs its own executors with `--executor --driver URL`).
    Executor {
        /// The driver's URL, http://HOST:PORT.
        #[arg(long)]
        driver: String,
        /// Task slots (default: one per core).
        #[arg(long)]
        cores: Option<usize>,
        /// Memory pool of the executor's tasks (`512m`, `2g`, bytes or
        /// `unlimited`; default 60% of the process's cgroup or machine
        /// memory). Operators over their share spill to disk.
        #[arg(long)]
        memory: Option<String>,
        /// Shuffle store URL, overriding the one the driver announces.
        #[arg(long)]
        shuffle_store: Option<String>,
        /// Address to listen on for the driver's calls.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
        /// URL the driver should call back on (needed with a wildcard bind).
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Create the shared secret file that drivers and executors of this
    /// user read when RIFFLE_SECRET is not set (mode 0600, in a 0700
    /// directory). Prints the file's path, never the secret; an existing
    /// file is kept.
    Secret {
        /// The file (default: RIFFLE_SECRET_FILE, else ~/.riffle/secret).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write a CA and driver and executor certificates for TLS (a test or
    /// small cluster): OUT/ca.pem, driver.pem, executor.pem and their keys.
    Certs {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// A host name or IP address the certificates must be valid for
        /// (besides localhost, 127.0.0.1 and ::1); repeat for each host.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Generate data sets.
    Gen {
        #[command(subcommand)]
        what: Gen,
    },
    /// Serve the web UI over the event logs in DIR (written with
    /// RIFFLE_EVENT_LOG=DIR), finished and in progress.
    History {
        /// The log directory: a local path or an object-store URL.
        dir: String,
        /// Address to listen on; beyond loopback RIFFLE_SECRET is required.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Port to listen on (0: any free port).
        #[arg(long, default_value_t = riffle_driver::ui::history::DEFAULT_PORT)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum Gen {
    /// The TPC-H tables as Parquet, `DIR/<table>/part-0.parquet`.
    Tpch {
        /// Scale factor (1 is about 1 GB of raw data).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
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
        /// Lay the directory out as real-world tools leave them: marker
        /// files and directories, mixed line ends, byte-order marks, dates
        /// without leading zeros, awkward file names (see
        /// `riffle::datagen::CloudFrontGenOptions::wild`).
        #[arg(long)]
        wild: bool,
    },
}

fn main() -> ExitCode {
    riffle::init();
    riffle::init_logging();
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
        Command::Sql {
            master,
            vars,
            execute,
            file,
            format,
        } => {
            let vars = vars
                .iter()
                .map(|v| {
                    v.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--var {v:?} is not NAME=VALUE"))
                })
                .collect::<anyhow::Result<std::collections::HashMap<_, _>>>()?;
            let ctx = riffle::Context::builder()
                .master(&master)
                .progress(true)
                .build()?;
            // Ctrl-C cancels the running statement; the shell stays (a
            // script run exits on a second Ctrl-C).
            let interactive = execute.is_none() && file.is_none();
            ctx.cancel_on_ctrl_c(!interactive)?;
            match (execute, file) {
                (Some(sql), _) => shell::run_script(&ctx, &sql, &vars, format),
                (None, Some(path)) => {
                    let script = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                    shell::run_script(&ctx, &script, &vars, format)
                }
                (None, None) => shell::interactive(&ctx, &vars, format),
            }
        }
        Command::Executor {
            driver,
            cores,
            memory,
            shuffle_store,
            bind,
            advertise,
        } => {
            let mut args = vec!["--driver".to_string(), driver, "--bind".into(), bind];
            if let Some(c) = cores {
                args.extend(["--cores".to_string(), c.to_string()]);
            }
            if let Some(m) = memory {
                args.extend(["--memory".to_string(), m]);
            }
            if let Some(s) = shuffle_store {
                args.extend(["--shuffle-store".to_string(), s]);
            }
            if let Some(a) = advertise {
                args.extend(["--advertise".to_string(), a]);
            }
            let config = riffle_executor::worker::WorkerConfig::parse(&args, |name| {
                std::env::var(name).ok().filter(|v| !v.is_empty())
            })
            .map_err(anyhow::Error::msg)?;
            riffle_executor::worker::run_blocking(config)?;
            Ok(())
        }
        Command::Certs { out, hosts } => {
            let files = riffle::certs::generate(&out, &hosts)?;
            let (dc, dk) = &files.driver;
            let (ec, ek) = &files.executor;
            println!("wrote a CA and certificates to {}", out.display());
            println!(
                "driver:    RIFFLE_TLS_CA={} RIFFLE_TLS_CERT={} RIFFLE_TLS_KEY={}",
                files.ca.display(),
                dc.display(),
                dk.display()
            );
            println!(
                "executors: RIFFLE_TLS_CA={} RIFFLE_TLS_CERT={} RIFFLE_TLS_KEY={}",
                files.ca.display(),
                ec.display(),
                ek.display()
            );
            Ok(())
        }
        Command::Secret { file } => {
            use riffle_executor::secret::Secret;
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let path = file
                .or_else(|| Secret::default_file(env))
                .ok_or_else(|| anyhow::anyhow!("no home directory: give the file with --file"))?;
            let (_, created) = Secret::read_or_create_file(&path)?;
            let what = if created {
                "created"
            } else {
                "kept the existing"
            };
            println!("{what} shared secret file {}", path.display());
            Ok(())
        }
        Command::History { dir, bind, port } => {
            let secret = std::env::var("RIFFLE_SECRET").ok();
            let server = riffle_driver::ui::history::HistoryServer::start(
                &dir,
                std::net::SocketAddr::new(bind, port),
                secret.as_deref(),
            )?;
            // The address on stdout, for scripts and tests.
            println!("history server at http://{} for {dir}", server.addr);
            server.wait();
            Ok(())
        }
        Command::Gen {
            what: Gen::Tpch { scale, out },
        } => {
            let started = std::time::Instant::now();
            let summary = riffle::tpch::generate(scale, &out)?;
            eprintln!(
                "wrote {} tables, {} rows, {:.1} MB of Parquet to {} in {:.2} s",
                summary.tables,
                summary.rows,
                summary.bytes as f64 / 1e6,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Gen {
            what:
                Gen::Cloudfront {
                    lines,
                    files,
                    seed,
                    out,
                    gzip,
                    wild,
                },
        } => {
            let started = std::time::Instant::now();
            let summary = riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
                lines,
                files,
                seed,
                out: out.clone(),
                gzip,
                wild,
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

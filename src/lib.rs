//! Riffle: a distributed dataflow engine in Rust, in the family of Spark and
//! Dask: typed, lazy datasets (RDD style) and SQL over Arrow, embedded on a
//! laptop with no set-up.
//!
//! ```no_run
//! use riffle::prelude::*;
//!
//! let ctx = Context::local()?;
//! let counts = ctx
//!     .text_file("logs/*.gz")?
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .map(|word| (word, 1u64))
//!     .reduce_by_key(|a, b| a + b)
//!     .collect()?;
//! # Ok::<(), riffle::DriverError>(())
//! ```
//!
//! Closures travel to executors as code addresses, so a closure given to
//! the Dataset API must capture nothing; state goes explicitly through the
//! `*_with` variants. A capturing closure is a compile error (reported by
//! `cargo build`, not by `cargo check`):
//!
//! ```compile_fail,E0080
//! use riffle::prelude::*;
//!
//! fn main() -> Result<(), riffle::DriverError> {
//!     let ctx = Context::local()?;
//!     let offset = 10u64;
//!     let shifted = ctx.parallelize(vec![1u64, 2, 3], 2).map(move |x| x + offset);
//!     println!("{:?}", shifted.collect()?);
//!     Ok(())
//! }
//! ```
//!
//! A closure that captures a value that cannot be copied is refused with
//! the same advice:
//!
//! ```compile_fail,E0277
//! use riffle::prelude::*;
//!
//! fn main() -> Result<(), riffle::DriverError> {
//!     let ctx = Context::local()?;
//!     let prefix = String::from("id-");
//!     let named = ctx.parallelize(vec![1u64, 2, 3], 2).map(move |x| format!("{prefix}{x}"));
//!     println!("{:?}", named.collect()?);
//!     Ok(())
//! }
//! ```
//!
//! Instead:
//!
//! ```no_run
//! use riffle::prelude::*;
//!
//! fn main() -> Result<(), riffle::DriverError> {
//!     let ctx = Context::local()?;
//!     let shifted = ctx.parallelize(vec![1u64, 2, 3], 2).map_with(10u64, |offset, x| x + offset);
//!     println!("{:?}", shifted.collect()?);
//!     Ok(())
//! }
//! ```
//!
//! This crate re-exports the driver API ([`prelude`]) and holds the `riffle`
//! command-line tool. See `ARCHITECTURE.md` for where everything lives.

pub mod certs;
pub mod datagen;
pub mod tpch;

/// Call first thing in `main` of every job binary. In a process started as
/// an executor (`--executor --driver URL`, or `RIFFLE_ROLE=executor`, as
/// `local-cluster` children are) it runs the executor and exits; otherwise
/// it returns at once and the program goes on as the driver. Shipped
/// closures run only in executors of the same binary.
pub fn init() {
    bound_malloc_arenas();
    purge_freed_memory_soon_when_capped();
    let config = match riffle_executor::worker::WorkerConfig::from_process() {
        Ok(None) => return,
        Ok(Some(config)) => config,
        Err(e) => {
            eprintln!("riffle executor: {e}");
            std::process::exit(2);
        }
    };
    init_logging();
    match riffle_executor::worker::run_blocking(config) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("riffle executor: {e}");
            std::process::exit(1);
        }
    }
}

/// Caps glibc malloc at one arena per core (its default is eight per
/// core), unless `MALLOC_ARENA_MAX` says otherwise. Memory freed by one
/// thread's arena is not reused by another's, so with Riffle's task threads
/// allocating and freeing batches a process's resident size drifted to
/// twice what it held: a SQL `GROUP BY` holding 250 MB at its peak (heaptrack)
/// was killed by a 512 MiB limit, and passes at 306 MiB with the cap
/// (`benches/spill.sh`). Programs using another global allocator (Riffle's
/// binaries use mimalloc) are unaffected.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` sets a tuning parameter of the allocator and is
        // safe to call at any time; this runs first thing in `main`.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e`
/// (mimalloc 3.x, `include/mimalloc.h`; the Rust bindings lack the name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before returning it, in ms.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// In a process whose cgroup caps its memory below the machine's, makes
/// mimalloc (the allocator of Riffle's binaries and examples) give freed
/// memory back to the system after 10 ms instead of a second (its
/// default), unless `MIMALLOC_PURGE_DELAY` says otherwise. Tasks free whole
/// batches, hash tables and spill buffers at a high rate; with the default
/// a SQL `GROUP BY` under a 512 MiB limit peaked at 458-493 MiB, with 10 ms
/// at 349 MiB (BENCHMARKS.md). Without a cap the default stays: memory
/// given back that soon is faulted in again by the next batch, which cost
/// TPC-H SF1 on `local[2]` 10-15% (13 times the page faults).
/// A program using another allocator only configures an idle mimalloc.
fn purge_freed_memory_soon_when_capped() {
    if riffle_executor::memory::capped_by_cgroup().is_some() {
        purge_freed_memory_soon();
    }
}

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] unless
/// `MIMALLOC_PURGE_DELAY` is set.
fn purge_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores an option value; any value of a
        // valid option is allowed at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

/// Logs to stderr, filtered by `RIFFLE_LOG` (default `warn`), once.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| LogWriter)
        .try_init();
}

/// Stderr for log lines, written with the progress bars cleared and then
/// redrawn, so that a log line never tears a bar.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        riffle_driver::progress::suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub use riffle_driver::{
    Config, Context, ContextBuilder, Data, Dataset, DriverError, JobHandle, JobOutcome, JobSummary,
    Master, SchedulerEvent, SchedulingMode, Shippable, Speculation, StatementOutput,
};
/// An error and its chain of causes as one line (`anyhow`'s `{:#}`).
pub use riffle_planner::report;
/// Why a task failed, as [`DriverError::TaskFailed`] reports it.
pub use riffle_planner::task::FailureKind;
pub use riffle_sql as sql;
/// Arrow, as used by Riffle's SQL results.
pub use riffle_sql::datafusion::arrow;

/// Everything a job needs: `use riffle::prelude::*;`.
pub mod prelude {
    pub use riffle_driver::{Context, Data, Dataset, DriverError, JobHandle, Shippable};
    pub use riffle_planner::pipeline::BoxIter;
}

#[cfg(test)]
mod tests {
    /// The option index is mimalloc's purge delay: it starts at its
    /// default (1000 ms, `src/options.c` of mimalloc 3.x) and takes the
    /// value set.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1000);
        }
        super::purge_freed_memory_soon();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), super::PURGE_DELAY_MS);
        }
    }

    /// Set in the child runs of the test below: print the purge delay
    /// `riffle::init` leaves, then stop.
    const CHILD: &str = "RIFFLE_TEST_PRINT_PURGE_DELAY";

    /// The purge delay is shortened only in a process whose cgroup caps
    /// its memory: the test runs itself as a child, once as it is and once
    /// inside a cgroup v1 memory cgroup of its own (skipped where the
    /// controller cannot be used).
    #[test]
    fn the_purge_delay_is_short_only_under_a_memory_cap() {
        if std::env::var_os(CHILD).is_some() {
            super::purge_freed_memory_soon_when_capped();
            let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            println!("purge delay {delay}");
            return;
        }
        let child = |cgroup: Option<&std::path::Path>| {
            let exe = std::env::current_exe().unwrap();
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(r#"[ -z "$0" ] || echo $$ > "$0/cgroup.procs"; exec "$@""#)
                .arg(cgroup.map(|c| c.display().to_string()).unwrap_or_default())
                .arg(exe)
                .args([
                    "--exact",
                    "tests::the_purge_delay_is_short_only_under_a_memory_cap",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .env_remove("MIMALLOC_PURGE_DELAY");
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{text}");
            text.lines()
                .find_map(|l| l.strip_prefix("purge delay "))
                .unwrap_or_else(|| panic!("no purge delay printed: {text}"))
                .parse::<i64>()
                .unwrap()
        };
        let capped_here = riffle_executor::memory::capped_by_cgroup().is_some();
        let expected = if capped_here {
            super::PURGE_DELAY_MS
        } else {
            1000
        };
        assert_eq!(child(None) as std::ffi::c_long, expected);

        let cgroup = std::path::Path::new("/sys/fs/cgroup/memory")
            .join(format!("riffle-purge-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&cgroup)
            .and_then(|()| std::fs::write(cgroup.join("memory.limit_in_bytes"), "1073741824"))
        {
            eprintln!("skipped the capped half: no cgroup v1 memory controller ({e})");
            let _ = std::fs::remove_dir(&cgroup);
            return;
        }
        let delay = child(Some(&cgroup));
        let _ = std::fs::remove_dir(&cgroup);
        assert_eq!(delay as std::ffi::c_long, super::PURGE_DELAY_MS);
    }
}

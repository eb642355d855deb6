//! An executor's memory budget and spill directory.
//!
//! One pool per executor process, shared by its Dataset operators and its
//! SQL fragments: [`pool::FairPool`], DataFusion's fair-spill policy (each
//! spillable reservation gets an even share of what unspillable ones
//! leave, so running tasks split the memory fairly) with SQL reservations
//! weighted for what DataFusion's hash tables hold beyond them; seen
//! through `TrackConsumersPool`, so an error names the largest consumers. Spill files go through
//! one DataFusion `DiskManager`, which deletes each file when its last
//! handle drops and enforces the cap on spill space.
//!
//! The default pool is [`DEFAULT_FRACTION`] of the memory the process may
//! use: its cgroup's limit where it has one (v2 `memory.max`, v1
//! `memory.limit_in_bytes`, the smallest along its path), else the
//! machine's. The fraction leaves room for what no reservation tracks
//! (shuffle write buffers, decoded input batches, the allocator's slack),
//! like Spark's `spark.memory.fraction` (0.6) and Ballista's 70%.

use datafusion::execution::DiskManager;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryPool, MemoryReservation, TrackConsumersPool, UnboundedMemoryPool,
};
use riffle_planner::memory::{Reservation, SpillError, SpillFile, TaskMemory};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod pool;

/// Share of the process's memory limit the pool gets by default.
pub const DEFAULT_FRACTION: f64 = 0.6;

/// How big the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolSize {
    /// [`DEFAULT_FRACTION`] of the process's memory limit.
    #[default]
    Default,
    /// This many bytes.
    Bytes(u64),
    /// No limit: operators never spill (what Riffle did before it had a
    /// pool; a negative control for memory-limit tests).
    Unlimited,
}

/// Memory settings of an executor (`RIFFLE_EXECUTOR_MEMORY`, `--memory`,
/// the context builder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryConfig {
    /// The pool.
    pub pool: PoolSize,
    /// Directory for spill files (`RIFFLE_SPILL_DIR`); by default a fresh
    /// directory under the system's temporary directory.
    pub spill_dir: Option<PathBuf>,
    /// Most bytes of spill files at once (`RIFFLE_SPILL_MAX`); 0 turns
    /// spilling off, so an operator over its share fails instead. By
    /// default DataFusion's 100 GiB.
    pub max_spill_bytes: Option<u64>,
    /// Spill every `n` records buffered (`RIFFLE_FORCE_SPILL_EVERY`): a
    /// test setting, Spark's `numElementsForceSpillThreshold`.
    pub force_spill_every: Option<usize>,
}

impl MemoryConfig {
    /// Reads `RIFFLE_EXECUTOR_MEMORY` (`512m`, `2g`, bytes, or
    /// `unlimited`), `RIFFLE_SPILL_DIR`, `RIFFLE_SPILL_MAX` and
    /// `RIFFLE_FORCE_SPILL_EVERY` through `var`; errors name the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut config = MemoryConfig::default();
        if let Some(v) = var("RIFFLE_EXECUTOR_MEMORY") {
            config.pool = parse_pool(&v).map_err(|e| format!("RIFFLE_EXECUTOR_MEMORY: {e}"))?;
        }
        config.spill_dir = var("RIFFLE_SPILL_DIR").map(PathBuf::from);
        if let Some(v) = var("RIFFLE_SPILL_MAX") {
            config.max_spill_bytes =
                Some(parse_bytes(&v).map_err(|e| format!("RIFFLE_SPILL_MAX: {e}"))?);
        }
        if let Some(v) = var("RIFFLE_FORCE_SPILL_EVERY") {
            let n = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("RIFFLE_FORCE_SPILL_EVERY={v:?} is not a positive number")
                })?;
            config.force_spill_every = Some(n);
        }
        Ok(config)
    }

    /// The same settings as `RIFFLE_*` variables, for executor processes a
    /// driver starts (unset ones are left out, so the child's own
    /// environment applies).
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        match self.pool {
            PoolSize::Default => {}
            PoolSize::Bytes(n) => vars.push(("RIFFLE_EXECUTOR_MEMORY", n.to_string())),
            PoolSize::Unlimited => vars.push(("RIFFLE_EXECUTOR_MEMORY", "unlimited".into())),
        }
        if let Some(dir) = &self.spill_dir {
            vars.push(("RIFFLE_SPILL_DIR", dir.display().to_string()));
        }
        if let Some(n) = self.max_spill_bytes {
            vars.push(("RIFFLE_SPILL_MAX", n.to_string()));
        }
        if let Some(n) = self.force_spill_every {
            vars.push(("RIFFLE_FORCE_SPILL_EVERY", n.to_string()));
        }
        vars
    }

    /// The pool size in bytes, `None` for no limit.
    pub fn pool_bytes(&self) -> Option<u64> {
        match self.pool {
            PoolSize::Default => Some((process_memory_limit() as f64 * DEFAULT_FRACTION) as u64),
            PoolSize::Bytes(n) => Some(n),
            PoolSize::Unlimited => None,
        }
    }
}

/// Parses a pool size: `unlimited` or a byte size ([`parse_bytes`]).
pub fn parse_pool(text: &str) -> Result<PoolSize, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(PoolSize::Unlimited);
    }
    match parse_bytes(text)? {
        0 => Err(format!("{text:?}: a memory pool cannot be empty")),
        n => Ok(PoolSize::Bytes(n)),
    }
}

/// Parses a byte size as Spark writes them: a number with an optional
/// binary unit (`k`, `m`, `g`, `t`, optionally followed by `b` or `ib`, any
/// case): `512m` is 512 MiB, `1048576` is 1 MiB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 512m, 2g or bytes)"))?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use k, m, g or t)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The memory this process may use, in bytes: the smallest cgroup limit
/// on its path (v2 or v1), else the machine's total memory, else 4 GiB.
pub fn process_memory_limit() -> u64 {
    capped_by_cgroup().unwrap_or_else(machine_memory)
}

/// The cgroup memory limit of this process (the smallest on its path, v2
/// or v1) when it is below the machine's memory, in bytes; `None` when
/// only the machine bounds it (no cgroup limit, or one above `MemTotal`).
pub fn capped_by_cgroup() -> Option<u64> {
    cgroup_limit().filter(|&limit| limit < machine_memory())
}

/// The machine's total memory (`MemTotal`), in bytes; 4 GiB if unknown.
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib << 10)
        .unwrap_or(4 << 30)
}

/// The smallest memory limit of this process's cgroup and its ancestors.
fn cgroup_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (root, file) = if controllers.is_empty() {
            (PathBuf::from("/sys/fs/cgroup"), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                PathBuf::from("/sys/fs/cgroup/memory"),
                "memory.limit_in_bytes",
            )
        } else {
            continue;
        };
        let mut dir = Some(Path::new(path.trim_start_matches('/')));
        while let Some(d) = dir {
            if let Ok(text) = std::fs::read_to_string(root.join(d).join(file)) {
                // v2 says "max" for none; v1 a number near u64::MAX.
                if let Ok(n) = text.trim().parse::<u64>() {
                    limits.push(n);
                }
            }
            dir = d.parent();
        }
    }
    limits.into_iter().min()
}

/// An executor's pool and spill directory.
pub struct ExecutorMemory {
    /// The pool as Dataset operators see it.
    pool: Arc<dyn MemoryPool>,
    /// The same pool as SQL fragments see it (their reservations weighted).
    sql_pool: Arc<dyn MemoryPool>,
    disk: Arc<DiskManager>,
    pool_bytes: Option<u64>,
    force_spill_every: Option<usize>,
}

impl std::fmt::Debug for ExecutorMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorMemory")
            .field("pool_bytes", &self.pool_bytes)
            .field("force_spill_every", &self.force_spill_every)
            .finish()
    }
}

impl ExecutorMemory {
    /// The pool and spill directory `config` describes; fails when the
    /// spill directory cannot be created.
    pub fn new(config: &MemoryConfig) -> Result<Self, String> {
        let pool_bytes = config.pool_bytes();
        let (pool, sql_pool): (Arc<dyn MemoryPool>, Arc<dyn MemoryPool>) = match pool_bytes {
            Some(n) => {
                let fair = pool::FairPool::new(usize::try_from(n).unwrap_or(usize::MAX));
                let top = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
                (
                    Arc::new(TrackConsumersPool::new(fair.view("riffle", 1), top)),
                    Arc::new(TrackConsumersPool::new(
                        fair.view("riffle-sql", pool::SQL_WEIGHT),
                        top,
                    )),
                )
            }
            None => {
                let unbounded: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
                (unbounded.clone(), unbounded)
            }
        };
        let mut builder = DiskManagerBuilder::default();
        match (&config.spill_dir, config.max_spill_bytes) {
            (_, Some(0)) => builder = builder.with_mode(DiskManagerMode::Disabled),
            (Some(dir), _) => {
                builder = builder.with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
            }
            (None, _) => {}
        }
        if let Some(n) = config.max_spill_bytes.filter(|n| *n > 0) {
            builder = builder.with_max_temp_directory_size(n);
        }
        let disk = builder.build().map_err(|e| {
            format!(
                "cannot use the spill directory {}: {e}",
                config
                    .spill_dir
                    .as_deref()
                    .map_or("(system temp)".into(), |d| d.display().to_string())
            )
        })?;
        Ok(ExecutorMemory {
            pool,
            sql_pool,
            disk: Arc::new(disk),
            pool_bytes,
            force_spill_every: config.force_spill_every,
        })
    }

    /// The pool as the SQL engine's runtime sees it: its reservations
    /// count [`pool::SQL_WEIGHT`] times against the executor's pool.
    pub fn sql_pool(&self) -> Arc<dyn MemoryPool> {
        self.sql_pool.clone()
    }

    /// The spill directory, for the SQL engine's runtime.
    pub fn disk_manager(&self) -> Arc<DiskManager> {
        self.disk.clone()
    }

    /// The pool's size in bytes, `None` for no limit.
    pub fn pool_bytes(&self) -> Option<u64> {
        self.pool_bytes
    }

    /// Bytes reserved from the pool now (SQL reservations weighted).
    pub fn reserved(&self) -> usize {
        self.pool.reserved()
    }

    /// Bytes of spill files on disk now.
    pub fn spill_bytes_on_disk(&self) -> u64 {
        self.disk.used_disk_space()
    }
}

struct PoolReservation(MemoryReservation);

impl Reservation for PoolReservation {
    fn try_grow(&mut self, bytes: usize) -> bool {
        self.0.try_grow(bytes).is_ok()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn free(&mut self) {
        self.0.free();
    }
}

struct DiskSpillFile {
    file: Arc<dyn datafusion::execution::SpillFile>,
    path: PathBuf,
}

impl SpillFile for DiskSpillFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn writer(&self) -> std::io::Result<Box<dyn std::io::Write + Send>> {
        let writer = self.file.open_writer().map_err(std::io::Error::other)?;
        Ok(Box::new(writer))
    }
}

impl TaskMemory for ExecutorMemory {
    fn reserve(&self, consumer: &str) -> Box<dyn Reservation> {
        Box::new(PoolReservation(
            MemoryConsumer::new(consumer)
                .with_can_spill(true)
                .register(&self.pool),
        ))
    }

    fn spill_file(&self) -> Result<Box<dyn SpillFile>, SpillError> {
        let file = self.disk.create_tmp_file("a Dataset operator spilling")?;
        let path = file
            .path()
            .ok_or("the spill directory holds no local files")?
            .to_path_buf();
        Ok(Box::new(DiskSpillFile { file, path }))
    }

    fn force_spill_every(&self) -> Option<usize> {
        self.force_spill_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_spark_writes_them() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes(" 64 MiB "), Ok(64 << 20));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("12x").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("m").unwrap_err().contains("not a size"));
        assert!(
            parse_bytes("99999999999t")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_pool("Unlimited"), Ok(PoolSize::Unlimited));
        assert!(parse_pool("0").is_err());
    }

    #[test]
    fn settings_survive_the_trip_through_variables() {
        let config = MemoryConfig {
            pool: PoolSize::Bytes(300 << 20),
            spill_dir: Some("/tmp/x".into()),
            max_spill_bytes: Some(0),
            force_spill_every: Some(7),
        };
        let vars = config.to_vars();
        let back = MemoryConfig::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        assert_eq!(back, config);
        let err =
            MemoryConfig::from_vars(|n| (n == "RIFFLE_FORCE_SPILL_EVERY").then(|| "0".into()))
                .unwrap_err();
        assert!(err.contains("RIFFLE_FORCE_SPILL_EVERY"), "{err}");
    }

    #[test]
    fn the_default_pool_is_a_fraction_of_what_the_process_may_use() {
        let limit = process_memory_limit();
        assert!(limit > 0);
        let pool = MemoryConfig::default().pool_bytes().unwrap();
        assert!(pool < limit && pool > limit / 2, "{pool} of {limit}");
    }

    #[test]
    fn reservations_share_the_pool_and_spill_files_go_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let memory = ExecutorMemory::new(&MemoryConfig {
            pool: PoolSize::Bytes(1000),
            spill_dir: Some(dir.path().to_path_buf()),
            ..MemoryConfig::default()
        })
        .unwrap();
        let mut a = memory.reserve("a");
        let mut b = memory.reserve("b");
        // Two spillable reservations: each gets half.
        assert!(a.try_grow(500));
        assert!(!a.try_grow(1));
        assert!(b.try_grow(400));
        a.free();
        assert_eq!(memory.reserved(), 400);
        drop(b);
        assert_eq!(memory.reserved(), 0);
        let file = memory.spill_file().unwrap();
        let path = file.path().to_path_buf();
        std::io::Write::write_all(&mut file.writer().unwrap(), b"run").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"run");
        assert_eq!(memory.spill_bytes_on_disk(), 3);
        drop(file);
        assert!(!path.exists());
        assert_eq!(memory.spill_bytes_on_disk(), 0);
    }

    #[test]
    fn spilling_off_or_over_the_cap_is_an_error() {
        let off = ExecutorMemory::new(&MemoryConfig {
            max_spill_bytes: Some(0),
            ..MemoryConfig::default()
        })
        .unwrap();
        assert!(off.spill_file().is_err());
        let dir = tempfile::tempdir().unwrap();
        let capped = ExecutorMemory::new(&MemoryConfig {
            spill_dir: Some(dir.path().to_path_buf()),
            max_spill_bytes: Some(4),
            ..MemoryConfig::default()
        })
        .unwrap();
        let file = capped.spill_file().unwrap();
        let err = std::io::Write::write_all(&mut file.writer().unwrap(), b"too long").unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}

//! The `Context`: configuration, embedded executors, and dataset sources.

use crate::cluster::{Cluster, ClusterSettings};
use crate::dataset::ops::{encode_state, vec_source_factory};
use crate::dataset::{Data, Dataset, Node, NodeKind};
use crate::error::DriverError;
use crate::executors::Backend;
use crate::launch::{Children, Master, serve, wait_for_executors};
use crate::runtime::IoRuntime;
use crate::scheduler::{Scheduler, SchedulingMode, Speculation};
use riffle_executor::Executor;
use riffle_executor::rpc::Auth;
use riffle_executor::secret::Secret;
use riffle_executor::tls::{TlsConfig, TlsFiles};
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ExecutorId, ShuffleId};
use riffle_planner::task::{Compression, FileSplit};
use riffle_shuffle::ShuffleCompression;
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of a driver.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where tasks run: `local` (one slot per core) or `local[N]`.
    pub master: String,
    /// Largest byte range of a plain text file read by one task.
    pub split_size: u64,
    /// Attempts per task before the job fails (failures the task cannot
    /// have caused, such as a lost executor, do not count).
    pub max_attempts: u32,
    /// Attempts per stage, counting resubmissions after fetch failures,
    /// before the job fails (`RIFFLE_MAX_STAGE_ATTEMPTS`; Spark's
    /// `spark.stage.maxConsecutiveAttempts`).
    pub max_stage_attempts: u32,
    /// Speculative execution of stragglers, off by default
    /// (`RIFFLE_SPECULATION=1`, `RIFFLE_SPECULATION_MULTIPLIER`,
    /// `RIFFLE_SPECULATION_QUANTILE`).
    pub speculation: Option<Speculation>,
    /// Shuffle store URL; `None` for a fresh temporary local directory.
    pub shuffle_store: Option<String>,
    /// Shuffle compression, `lz4` or `none`; `None` for the store's default
    /// (none for a local directory, LZ4 for remote stores).
    pub shuffle_compression: Option<String>,
    /// Executors a `cluster` driver waits for before running jobs.
    pub min_executors: usize,
    /// How long to wait for executors (at start-up, and when none is left
    /// during a job) before failing.
    pub executor_wait: Duration,
    /// Shared secret of driver and executors (`RIFFLE_SECRET` or the file
    /// named by `RIFFLE_SECRET_FILE`). Without one, a `local-cluster` driver
    /// makes a random one for its children and a `cluster` driver reads or
    /// creates `~/.riffle/secret` (see [`riffle_executor::secret`]).
    pub secret: Option<Secret>,
    /// TLS on every channel between driver and executors (`RIFFLE_TLS_CERT`,
    /// `RIFFLE_TLS_KEY`, `RIFFLE_TLS_CA`, `RIFFLE_TLS_MUTUAL`; see
    /// [`riffle_executor::tls`]); `local-cluster` children get the same.
    pub tls: Option<TlsConfig>,
    /// The message-size limit of every gRPC channel
    /// (`RIFFLE_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// Interval of executor heartbeats.
    pub heartbeat_interval: Duration,
    /// Heartbeat silence after which an executor is declared lost
    /// (`RIFFLE_HEARTBEAT_TIMEOUT_MS`, more than the heartbeat interval).
    pub heartbeat_timeout: Duration,
    /// How concurrent jobs share slots (`RIFFLE_SCHEDULER_MODE=fifo|fair`).
    pub scheduling_mode: SchedulingMode,
    /// The web UI (`RIFFLE_UI`, `RIFFLE_UI_BIND`, `RIFFLE_UI_PORT`); on by
    /// default, on 127.0.0.1:4040 or the next free port.
    pub ui: crate::ui::UiConfig,
    /// Where to write the event log (`RIFFLE_EVENT_LOG`): a local
    /// directory or an object-store URL; `None` writes none.
    pub event_log: Option<String>,
    /// Progress bars on stderr while jobs run (`RIFFLE_PROGRESS`); drawn
    /// only when stderr is a terminal.
    pub progress: bool,
    /// Each executor's memory pool and spill directory
    /// (`RIFFLE_EXECUTOR_MEMORY`, `RIFFLE_SPILL_DIR`, `RIFFLE_SPILL_MAX`,
    /// `RIFFLE_FORCE_SPILL_EVERY`): the embedded executor's, and the
    /// `local-cluster` children's (which split the default between them).
    /// Executors started by hand take their own (`--memory`).
    pub memory: riffle_executor::memory::MemoryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            master: "local".into(),
            split_size: 64 << 20,
            max_attempts: 4,
            max_stage_attempts: 4,
            speculation: None,
            shuffle_store: None,
            shuffle_compression: None,
            min_executors: 1,
            executor_wait: Duration::from_secs(60),
            secret: None,
            tls: None,
            max_message_bytes: riffle_executor::rpc::DEFAULT_MAX_MESSAGE_BYTES,
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(5),
            scheduling_mode: SchedulingMode::Fifo,
            ui: crate::ui::UiConfig::default(),
            event_log: None,
            progress: false,
            memory: Default::default(),
        }
    }
}

impl Config {
    /// Defaults overridden by `RIFFLE_*` environment variables:
    /// `RIFFLE_MASTER`, `RIFFLE_SHUFFLE_STORE`, `RIFFLE_SHUFFLE_COMPRESSION`,
    /// `RIFFLE_SECRET`,
    /// `RIFFLE_MIN_EXECUTORS`, `RIFFLE_EXECUTOR_WAIT_SECS`,
    /// `RIFFLE_MAX_MESSAGE_BYTES`, `RIFFLE_SCHEDULER_MODE`,
    /// `RIFFLE_HEARTBEAT_TIMEOUT_MS`,
    /// `RIFFLE_MAX_STAGE_ATTEMPTS`, `RIFFLE_SPECULATION` (`1`/`0`),
    /// `RIFFLE_SPECULATION_MULTIPLIER`, `RIFFLE_SPECULATION_QUANTILE`, and
    /// the memory settings (`RIFFLE_EXECUTOR_MEMORY`, ...). It
    /// also checks `RIFFLE_FAILPOINTS` (see
    /// [`riffle_planner::failpoints`]), so a misspelt failpoint fails here
    /// instead of injecting nothing.
    pub fn from_env() -> Result<Config, DriverError> {
        let mut config = Config::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, value: String| {
            value
                .parse::<usize>()
                .map_err(|_| DriverError::Config(format!("{name}={value:?} is not a number")))
        };
        if let Some(v) = var("RIFFLE_MASTER") {
            config.master = v;
        }
        config.shuffle_store = var("RIFFLE_SHUFFLE_STORE");
        config.shuffle_compression = var("RIFFLE_SHUFFLE_COMPRESSION");
        config.secret = Secret::explicit(var).map_err(|e| DriverError::Config(e.to_string()))?;
        config.tls = TlsConfig::from_env(var).map_err(|e| DriverError::Config(e.to_string()))?;
        if let Some(v) = var("RIFFLE_MIN_EXECUTORS") {
            config.min_executors = number("RIFFLE_MIN_EXECUTORS", v)?;
        }
        if let Some(v) = var("RIFFLE_EXECUTOR_WAIT_SECS") {
            config.executor_wait =
                Duration::from_secs(number("RIFFLE_EXECUTOR_WAIT_SECS", v)? as u64);
        }
        if let Some(v) = var("RIFFLE_MAX_MESSAGE_BYTES") {
            config.max_message_bytes = number("RIFFLE_MAX_MESSAGE_BYTES", v)?;
        }
        if let Some(v) = var("RIFFLE_SCHEDULER_MODE") {
            config.scheduling_mode = v
                .parse()
                .map_err(|e| DriverError::Config(format!("RIFFLE_SCHEDULER_MODE: {e}")))?;
        }
        if let Some(v) = var("RIFFLE_HEARTBEAT_TIMEOUT_MS") {
            let ms = number("RIFFLE_HEARTBEAT_TIMEOUT_MS", v)? as u64;
            let interval = config.heartbeat_interval;
            if ms <= interval.as_millis() as u64 {
                return Err(DriverError::Config(format!(
                    "RIFFLE_HEARTBEAT_TIMEOUT_MS={ms} must exceed the heartbeat interval ({} ms)",
                    interval.as_millis()
                )));
            }
            config.heartbeat_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = var("RIFFLE_MAX_STAGE_ATTEMPTS") {
            config.max_stage_attempts = number("RIFFLE_MAX_STAGE_ATTEMPTS", v)?.max(1) as u32;
        }
        config.speculation = speculation_from_env(&var)?;
        if let Some(v) = var("RIFFLE_UI") {
            config.ui.enabled = switch("RIFFLE_UI", &v)?;
        }
        if let Some(v) = var("RIFFLE_PROGRESS") {
            config.progress = switch("RIFFLE_PROGRESS", &v)?;
        }
        if let Some(v) = var("RIFFLE_UI_BIND") {
            config.ui.bind = v.parse().map_err(|_| {
                DriverError::Config(format!("RIFFLE_UI_BIND={v:?} is not an IP address"))
            })?;
        }
        if let Some(v) = var("RIFFLE_UI_PORT") {
            config.ui.port = v.parse().map_err(|_| {
                DriverError::Config(format!("RIFFLE_UI_PORT={v:?} is not a port number"))
            })?;
        }
        config.event_log = var("RIFFLE_EVENT_LOG");
        config.memory =
            riffle_executor::memory::MemoryConfig::from_vars(var).map_err(DriverError::Config)?;
        riffle_planner::failpoints::check_env().map_err(DriverError::Config)?;
        Ok(config)
    }
}

/// The memory settings of each of `executors` `local-cluster` children:
/// they share one machine, so the default pool is split between them.
fn local_cluster_memory(
    memory: &riffle_executor::memory::MemoryConfig,
    executors: usize,
) -> riffle_executor::memory::MemoryConfig {
    use riffle_executor::memory::PoolSize;
    let mut each = memory.clone();
    if each.pool == PoolSize::Default
        && let Some(total) = memory.pool_bytes()
    {
        each.pool = PoolSize::Bytes((total / executors.max(1) as u64).max(1));
    }
    each
}

/// An on/off setting's value; the error names the variable.
fn switch(name: &str, value: &str) -> Result<bool, DriverError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(DriverError::Config(format!(
            "{name}={value:?}: expected 1 or 0"
        ))),
    }
}

/// Speculation settings from `RIFFLE_SPECULATION*`; errors name the
/// variable and the value.
fn speculation_from_env(
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Speculation>, DriverError> {
    let on = match var("RIFFLE_SPECULATION").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if matches!(v.as_str(), "1" | "true" | "on" | "yes") => true,
        Some(v) if matches!(v.as_str(), "0" | "false" | "off" | "no") => false,
        Some(v) => {
            return Err(DriverError::Config(format!(
                "RIFFLE_SPECULATION={v:?}: expected 1 or 0"
            )));
        }
    };
    let mut spec = Speculation::default();
    let float = |name: &str, valid: &dyn Fn(f64) -> bool, range: &str| {
        var(name)
            .map(|v| match v.parse::<f64>() {
                Ok(x) if valid(x) => Ok(x),
                _ => Err(DriverError::Config(format!(
                    "{name}={v:?}: expected a number {range}"
                ))),
            })
            .transpose()
    };
    if let Some(m) = float(
        "RIFFLE_SPECULATION_MULTIPLIER",
        &|x| x >= 1.0 && x.is_finite(),
        "of at least 1",
    )? {
        spec.multiplier = m;
    }
    if let Some(q) = float(
        "RIFFLE_SPECULATION_QUANTILE",
        &|x| (0.0..=1.0).contains(&x),
        "from 0 to 1",
    )? {
        spec.quantile = q;
    }
    Ok(on.then_some(spec))
}

/// Builds a [`Context`], starting from [`Config::from_env`].
#[derive(Debug)]
pub struct ContextBuilder {
    config: Result<Config, DriverError>,
    stores: Vec<(String, Arc<dyn object_store::ObjectStore>)>,
}

impl ContextBuilder {
    fn set(mut self, f: impl FnOnce(&mut Config)) -> Self {
        if let Ok(config) = &mut self.config {
            f(config);
        }
        self
    }

    /// Sets how many executors a `cluster` driver waits for.
    pub fn min_executors(self, n: usize) -> Self {
        self.set(|c| c.min_executors = n)
    }

    /// Sets how long to wait for executors.
    pub fn executor_wait(self, wait: Duration) -> Self {
        self.set(|c| c.executor_wait = wait)
    }

    /// Uses `store` for every URL under `url` (`s3://bucket`), instead of a
    /// store configured from the environment; for this process only.
    pub fn object_store(
        mut self,
        url: impl Into<String>,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> Self {
        self.stores.push((url.into(), store));
        self
    }

    /// Sets the shared secret (printable ASCII without spaces, at most
    /// 1 KiB; anything else makes [`ContextBuilder::build`] fail).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        match Secret::new(&secret.into(), "ContextBuilder::secret") {
            Ok(secret) => self.set(|c| c.secret = Some(secret)),
            Err(e) => {
                self.config = Err(DriverError::Config(e.to_string()));
                self
            }
        }
    }

    /// Serves and calls executors over TLS with these files (as the
    /// `RIFFLE_TLS_*` variables do); they are read and checked here, and
    /// [`ContextBuilder::build`] fails naming a file that is not usable.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        match TlsConfig::from_files(files) {
            Ok(tls) => self.set(|c| c.tls = Some(tls)),
            Err(e) => {
                self.config = Err(DriverError::Config(e.to_string()));
                self
            }
        }
    }

    /// Sets the message-size limit of every channel.
    pub fn max_message_bytes(self, bytes: usize) -> Self {
        self.set(|c| c.max_message_bytes = bytes)
    }

    /// Sets the heartbeat interval and the silence after which an executor
    /// is declared lost.
    pub fn heartbeats(self, interval: Duration, timeout: Duration) -> Self {
        self.set(|c| {
            c.heartbeat_interval = interval;
            c.heartbeat_timeout = timeout;
        })
    }
    /// Sets the master string (`local`, `local[N]`).
    pub fn master(self, master: impl Into<String>) -> Self {
        let master = master.into();
        self.set(|c| c.master = master)
    }

    /// Sets the largest byte range of a text file one task reads.
    pub fn split_size(self, bytes: u64) -> Self {
        self.set(|c| c.split_size = bytes.max(1))
    }

    /// Sets each executor's memory pool in bytes (`RIFFLE_EXECUTOR_MEMORY`;
    /// by default 60% of what the process may use). Operators over their
    /// share of it spill to disk.
    pub fn executor_memory(self, bytes: u64) -> Self {
        use riffle_executor::memory::PoolSize;
        self.set(|c| c.memory.pool = PoolSize::Bytes(bytes.max(1)))
    }

    /// Sets the directory of spill files (`RIFFLE_SPILL_DIR`) and the most
    /// bytes they may take at once (`RIFFLE_SPILL_MAX`; 0 turns spilling
    /// off, so an operator over its share fails instead).
    pub fn spill(self, dir: Option<std::path::PathBuf>, max_bytes: Option<u64>) -> Self {
        self.set(|c| {
            c.memory.spill_dir = dir;
            c.memory.max_spill_bytes = max_bytes;
        })
    }

    /// Makes every spilling operator spill after `records` buffered records
    /// (`RIFFLE_FORCE_SPILL_EVERY`), whatever the pool says: a test setting,
    /// Spark's `spark.shuffle.spill.numElementsForceSpillThreshold`.
    pub fn force_spill_every(self, records: usize) -> Self {
        self.set(|c| c.memory.force_spill_every = Some(records.max(1)))
    }

    /// Sets how concurrent jobs share slots: FIFO (the default) or fair.
    pub fn scheduling_mode(self, mode: SchedulingMode) -> Self {
        self.set(|c| c.scheduling_mode = mode)
    }

    /// Sets the attempts per task.
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.set(|c| c.max_attempts = attempts.max(1))
    }

    /// Sets the attempts per stage (resubmissions after fetch failures).
    pub fn max_stage_attempts(self, attempts: u32) -> Self {
        self.set(|c| c.max_stage_attempts = attempts.max(1))
    }

    /// Draws progress bars on stderr while jobs run, when stderr is a
    /// terminal (off by default; `RIFFLE_PROGRESS`, when set, wins, so a
    /// user can silence a program that asks for them).
    pub fn progress(self, on: bool) -> Self {
        if std::env::var_os("RIFFLE_PROGRESS").is_some_and(|v| !v.is_empty()) {
            return self;
        }
        self.set(|c| c.progress = on)
    }

    /// Turns the web UI on or off (on by default).
    pub fn ui(self, on: bool) -> Self {
        self.set(|c| c.ui.enabled = on)
    }

    /// The first port the web UI tries (0: any free port).
    pub fn ui_port(self, port: u16) -> Self {
        self.set(|c| c.ui.port = port)
    }

    /// Writes the event log under `dir` (a local directory or an
    /// object-store URL), for `riffle history`.
    pub fn event_log(self, dir: &str) -> Self {
        let dir = dir.to_string();
        self.set(|c| c.event_log = Some(dir))
    }

    /// Turns speculative execution on (with Spark's defaults: a task 1.5
    /// times slower than the median, once 75% of its stage attempt has
    /// finished) or off.
    pub fn speculation(self, on: bool) -> Self {
        self.set(|c| c.speculation = on.then(Speculation::default))
    }

    /// Turns speculative execution on with these settings; `build` fails
    /// on settings [`Speculation::check`] refuses.
    pub fn speculation_with(mut self, settings: Speculation) -> Self {
        if let Err(e) = settings.check() {
            self.config = Err(DriverError::Config(e));
            return self;
        }
        self.set(|c| c.speculation = Some(settings))
    }

    /// Sets the shuffle store URL (`file:///dir`, `memory:///`).
    pub fn shuffle_store(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.set(|c| c.shuffle_store = Some(url))
    }

    /// Starts the context (and, for cluster masters, the driver service and
    /// the executors).
    pub fn build(self) -> Result<Context, DriverError> {
        let stores = ObjectStores::default();
        for (url, store) in self.stores {
            let parsed = url::Url::parse(&url)
                .map_err(|e| DriverError::Config(format!("object store URL {url:?}: {e}")))?;
            stores.register(&parsed, store);
        }
        Context::with_config(self.config?, stores)
    }
}

/// What one stage of a job did.
#[derive(Debug, Clone, Default)]
pub struct StageSummary {
    /// The stage.
    pub stage: riffle_planner::ids::StageId,
    /// The stage attempt (above 0: resubmitted to recompute lost output;
    /// shown as `stage-N.A`).
    pub attempt: u32,
    /// Task attempts run.
    pub tasks: usize,
    /// Wall time of the stage.
    pub elapsed: Duration,
    /// Summed run time of its tasks.
    pub task_time: Duration,
    /// Records read by its sources.
    pub records_read: u64,
    /// Bytes read from files and shuffle.
    pub bytes_read: u64,
    /// Shuffle bytes fetched.
    pub shuffle_bytes_read: u64,
    /// Shuffle records written.
    pub shuffle_records_written: u64,
    /// Shuffle bytes written.
    pub shuffle_bytes_written: u64,
    /// Bytes its tasks spilled to disk (Dataset operators and SQL).
    pub spilled_bytes: u64,
    /// Spill files its tasks wrote.
    pub spill_count: u64,
}

/// Summary of the last job a context ran (`ctx.last_job()`); its `Display`
/// is a table per stage, logged at `info` level when a job ends.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    /// Per-stage figures, in the order the stages ran.
    pub stage_summaries: Vec<StageSummary>,
    /// Stage attempts run (a stage resubmitted to recompute lost output
    /// counts once per attempt).
    pub stages: usize,
    /// Task attempts run (including retries).
    pub tasks: usize,
    /// Task attempts that failed (and were retried, or failed the job).
    pub failed_tasks: usize,
    /// Task attempts killed (losing speculative copies, attempts of a
    /// stage attempt that ended, a cancelled job's tasks).
    pub killed_tasks: usize,
    /// Task attempts launched by stage attempts after the first: map
    /// outputs recomputed from lineage after a fetch failure, and the
    /// reads rerun after them.
    pub recomputed_tasks: usize,
    /// Speculative copies launched.
    pub speculative_tasks: usize,
    /// Stage attempts after the first (resubmissions).
    pub resubmitted_stages: usize,
    /// Records read by sources.
    pub records_read: u64,
    /// Bytes read from files and shuffle.
    pub bytes_read: u64,
    /// Shuffle bytes written.
    pub shuffle_bytes_written: u64,
    /// Input lines that were not valid UTF-8 (replaced characters).
    pub invalid_utf8_lines: u64,
    /// Bytes spilled to disk by operators over their memory share.
    pub spilled_bytes: u64,
    /// Spill files written.
    pub spill_count: u64,
    /// Wall time of the job.
    pub elapsed: Duration,
    /// Task attempts run per executor.
    pub tasks_per_executor: std::collections::BTreeMap<ExecutorId, usize>,
    /// Total run time of the tasks (sum over attempts).
    pub task_time: Duration,
}

impl std::fmt::Display for JobSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "job: {} stages, {} tasks, {:.3} s wall, {:.3} s in tasks, {} executors",
            self.stages,
            self.tasks,
            self.elapsed.as_secs_f64(),
            self.task_time.as_secs_f64(),
            self.tasks_per_executor.len()
        )?;
        if self.failed_tasks + self.killed_tasks + self.speculative_tasks + self.recomputed_tasks
            > 0
        {
            writeln!(
                f,
                "faults: {} tasks failed, {} killed, {} speculative, {} recomputed in {} resubmitted stage attempts",
                self.failed_tasks,
                self.killed_tasks,
                self.speculative_tasks,
                self.recomputed_tasks,
                self.resubmitted_stages
            )?;
        }
        if self.spill_count > 0 {
            writeln!(
                f,
                "spilled: {} bytes in {} files",
                self.spilled_bytes, self.spill_count
            )?;
        }
        writeln!(
            f,
            "{:>9} {:>6} {:>9} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "stage",
            "tasks",
            "wall s",
            "task s",
            "records in",
            "bytes in",
            "shuffle in",
            "shuffle out",
            "spilled"
        )?;
        for s in &self.stage_summaries {
            let stage = match s.attempt {
                0 => s.stage.to_string(),
                a => format!("{}.{a}", s.stage),
            };
            writeln!(
                f,
                "{:>9} {:>6} {:>9.3} {:>10.3} {:>12} {:>12} {:>12} {:>12} {:>12}",
                stage,
                s.tasks,
                s.elapsed.as_secs_f64(),
                s.task_time.as_secs_f64(),
                s.records_read,
                s.bytes_read,
                s.shuffle_bytes_read,
                s.shuffle_bytes_written,
                s.spilled_bytes
            )?;
        }
        Ok(())
    }
}

/// The entry point of a Riffle program.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) config: Config,
    pub(crate) runtime: IoRuntime,
    pub(crate) backend: Arc<Backend>,
    /// The scheduler's event loop, started with the first job.
    scheduler: std::sync::OnceLock<Scheduler>,
    /// The driver service's URL (cluster masters).
    driver_url: Option<String>,
    /// Stops the driver service when dropped.
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
    /// Executor processes of a `local-cluster` master.
    children: Option<Children>,
    pub(crate) stores: ObjectStores,
    pub(crate) shuffle: ShuffleStore,
    /// A temporary shuffle directory this context created and removes.
    temp_dir: Option<std::path::PathBuf>,
    next_shuffle: AtomicU32,
    /// Summary of the last job that ended (kept by the scheduler).
    last_job: Arc<Mutex<JobSummary>>,
    /// The SQL session, created on first use.
    pub(crate) sql: std::sync::OnceLock<riffle_sql::datafusion::prelude::SessionContext>,
    /// The web UI and event log.
    ui: Mutex<Option<crate::ui::LiveUi>>,
    /// The web UI's URL, if it is served.
    ui_url: Option<String>,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if let Ok(mut ui) = self.ui.lock()
            && let Some(ui) = ui.as_mut()
        {
            ui.stop(self.runtime.handle());
        }
        if let Backend::Cluster(cluster) = &*self.backend {
            // Executors of this application stop with it.
            self.runtime.block_on(cluster.shutdown_all());
        }
        self.stop_server.take();
        self.children.take();
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Context {
    /// An embedded context with one slot per core.
    pub fn local() -> Result<Context, DriverError> {
        Context::builder().build()
    }

    /// A context for a master string (`local`, `local[N]`).
    pub fn new(master: &str) -> Result<Context, DriverError> {
        Context::builder().master(master).build()
    }

    /// A builder for all settings.
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            config: Config::from_env(),
            stores: Vec::new(),
        }
    }

    fn with_config(config: Config, stores: ObjectStores) -> Result<Context, DriverError> {
        let master = Master::parse(&config.master)?;
        let runtime = IoRuntime::new(2)
            .map_err(|e| DriverError::Config(format!("cannot start the I/O runtime: {e}")))?;
        let (shuffle_url, temp_dir) = match &config.shuffle_store {
            Some(url) => (url.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "riffle-shuffle-{}-{}",
                    std::process::id(),
                    CONTEXTS.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).map_err(|e| {
                    DriverError::storage(
                        dir.display().to_string(),
                        "creating the shuffle directory",
                        e,
                    )
                })?;
                (dir.display().to_string(), Some(dir))
            }
        };
        let url =
            ObjectStores::to_url(&shuffle_url).map_err(|e| DriverError::Config(e.to_string()))?;
        let (store, prefix) = stores
            .resolve(&url)
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let compression = ShuffleCompression::resolve(config.shuffle_compression.as_deref(), &url)
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let shuffle = ShuffleStore::new(store, prefix).with_compression(compression);
        let mut inner = ContextInner {
            backend: Arc::new(Backend::Embedded(Arc::new(
                Executor::new(
                    ExecutorId(0),
                    1,
                    runtime.handle().clone(),
                    stores.clone(),
                    shuffle.clone(),
                    &config.memory,
                )
                .map_err(|e| DriverError::Config(e.to_string()))?,
            ))),
            scheduler: std::sync::OnceLock::new(),
            driver_url: None,
            stop_server: None,
            children: None,
            config,
            runtime,
            stores,
            shuffle,
            temp_dir,
            next_shuffle: AtomicU32::new(0),
            last_job: Arc::new(Mutex::new(JobSummary::default())),
            sql: std::sync::OnceLock::new(),
            ui: Mutex::new(None),
            ui_url: None,
        };
        // The UI comes up before the executors, as Spark's does: a browser
        // can watch them join, and is connected before the first job.
        let live = crate::ui::LiveUi::start(
            inner.runtime.handle(),
            &inner.stores,
            &inner.config.ui,
            inner.config.event_log.as_deref(),
            inner.config.secret.as_ref().map(Secret::expose),
            &inner.config.master,
        )?;
        match master {
            Master::Embedded { slots } => {
                let executor = Executor::new(
                    ExecutorId(0),
                    slots,
                    inner.runtime.handle().clone(),
                    inner.stores.clone(),
                    inner.shuffle.clone(),
                    &inner.config.memory,
                )
                .map_err(|e| DriverError::Config(e.to_string()))?;
                inner.backend = Arc::new(Backend::Embedded(Arc::new(executor)));
            }
            Master::LocalCluster { executors, cores } => {
                let secret = match inner.config.secret.clone() {
                    Some(secret) => secret,
                    None => Secret::random().map_err(|e| DriverError::Config(e.to_string()))?,
                };
                let bind = SocketAddr::from(([127, 0, 0, 1], 0));
                let cluster = inner.start_cluster(bind, url.to_string(), secret.clone())?;
                let driver_url = inner.driver_url.clone().unwrap_or_default();
                let memory = local_cluster_memory(&inner.config.memory, executors);
                let mut vars = memory.to_vars();
                vars.extend(inner.config.tls.iter().flat_map(TlsConfig::to_vars));
                let mut children = Children::spawn(executors, cores, &driver_url, &secret, &vars)?;
                let waited = wait_for_executors(
                    &inner.runtime,
                    &cluster,
                    executors,
                    inner.config.executor_wait,
                    Some(&mut children),
                    "the local-cluster executors did not start",
                );
                inner.children = Some(children);
                waited?;
            }
            Master::Cluster { bind } => {
                let secret = match inner.config.secret.clone() {
                    Some(secret) => secret,
                    None => secret_file_for_executors()?,
                };
                let cluster = inner.start_cluster(bind, url.to_string(), secret)?;
                let driver_url = inner.driver_url.clone().unwrap_or_default();
                let hint = format!(
                    "start executors with `<this program> --executor --driver {driver_url}` \
                     (or `riffle executor --driver {driver_url}` for SQL-only work)"
                );
                tracing::info!("driver listening on {driver_url}; {hint}");
                wait_for_executors(
                    &inner.runtime,
                    &cluster,
                    inner.config.min_executors,
                    inner.config.executor_wait,
                    None,
                    &hint,
                )?;
            }
        }
        live.set_heartbeats(inner.heartbeats());
        inner.ui_url = live.url.clone();
        let wants_events = live.wants_events();
        inner.ui = Mutex::new(Some(live));
        if wants_events {
            // Start the event loop now, so that executors show from the
            // start and not only once the first job runs.
            inner.scheduler();
        }
        Ok(Context {
            inner: Arc::new(inner),
        })
    }

    /// The web UI's address (`http://127.0.0.1:4040`), if it is served.
    pub fn ui_url(&self) -> Option<&str> {
        self.inner.ui_url.as_deref()
    }

    /// The driver service's URL, for cluster masters
    /// (`http://127.0.0.1:PORT`).
    pub fn driver_url(&self) -> Option<&str> {
        self.inner.driver_url.as_deref()
    }

    /// Ids and slots of the executors registered now.
    pub fn executors(&self) -> Vec<(ExecutorId, usize)> {
        self.inner
            .backend
            .executors()
            .iter()
            .map(|e| (e.id(), e.slots()))
            .collect()
    }

    /// The context's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Total task slots over all executors.
    pub fn slots(&self) -> usize {
        self.inner
            .backend
            .executors()
            .iter()
            .map(|e| e.slots())
            .sum()
    }

    /// The summary of the last job that ended (with several jobs running
    /// at once, the one that ended last).
    pub fn last_job(&self) -> JobSummary {
        self.inner
            .last_job
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The object stores this context reads and writes through (register
    /// custom stores here).
    pub fn stores(&self) -> &ObjectStores {
        &self.inner.stores
    }

    /// Whether anything exists under the directory `url`.
    /// The URL of output directory `dir`, which must be empty or absent
    /// (writes never mix with what is already there).
    pub(crate) fn empty_output_dir(&self, dir: &str) -> Result<url::Url, DriverError> {
        let url = ObjectStores::to_url(dir).map_err(DriverError::input)?;
        if self.output_exists(&url)? {
            return Err(DriverError::OutputExists {
                dir: dir.to_string(),
            });
        }
        Ok(url)
    }

    pub(crate) fn output_exists(&self, url: &url::Url) -> Result<bool, DriverError> {
        if let Ok(path) = url.to_file_path() {
            return Ok(path
                .read_dir()
                .is_ok_and(|mut entries| entries.next().is_some()));
        }
        let (store, prefix) = self.inner.stores.resolve(url).map_err(DriverError::store)?;
        let first = self.inner.runtime.block_on(async {
            let mut listing = store.list(Some(&prefix));
            futures::StreamExt::next(&mut listing).await
        });
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(DriverError::storage(
                url.as_str(),
                "listing the output directory",
                e,
            )),
        }
    }

    pub(crate) fn next_shuffle_id(&self) -> ShuffleId {
        ShuffleId(self.inner.next_shuffle.fetch_add(1, Ordering::Relaxed))
    }

    /// A dataset of `values`, split into `partitions` slices of nearly equal
    /// size (at least one).
    pub fn parallelize<T: Data>(&self, values: Vec<T>, partitions: usize) -> Dataset<T> {
        let n = partitions.max(1);
        let len = values.len();
        let mut iter = values.into_iter();
        let mut slices = Vec::with_capacity(n);
        let mut error = None;
        for i in 0..n {
            let take = (i + 1) * len / n - i * len / n;
            let slice: Vec<T> = iter.by_ref().take(take).collect();
            match encode_state(&slice) {
                Ok(bytes) => slices.push(bytes),
                Err(e) => error = Some(e.to_string()),
            }
        }
        let kind = match error {
            Some(error) => NodeKind::Invalid {
                error: format!("parallelize: {error}"),
            },
            None => NodeKind::Parallelize {
                op: FnRef::new(vec_source_factory::<T>, Vec::new(), "parallelize"),
                slices,
            },
        };
        Dataset::from_node(
            self.clone(),
            Node {
                label: format!("parallelize({len} elements)"),
                partitions: n,
                kind,
            },
        )
    }

    /// The lines of the text files at `path`: a file, a directory (its
    /// files, except hidden ones starting with `.` or `_`), or a glob
    /// (`logs/*.gz`), as a local path or URL (`file:///...`). Files ending in
    /// `.gz` are decompressed (one task per file); plain files larger than
    /// the split size are read as several byte ranges aligned to line ends.
    pub fn text_file(&self, path: &str) -> Result<Dataset<String>, DriverError> {
        self.text_files(&[path])
    }

    /// Like [`Context::text_file`], over several paths or globs.
    pub fn text_files(&self, paths: &[&str]) -> Result<Dataset<String>, DriverError> {
        let mut files = Vec::new();
        for path in paths {
            files.extend(self.inner.runtime.block_on(self.list_input(path))?);
        }
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        // Aim for at least two splits per slot so both cores stay busy even
        // with a single input file, without going below 1 MiB per split.
        let per_slot = total / (2 * self.slots().max(1) as u64);
        let split = self.inner.config.split_size.min(per_slot.max(1 << 20));
        let mut splits = Vec::new();
        for (url, size) in files {
            if size == 0 {
                if url.ends_with(".gz") {
                    // What the SQL text tables do too: not a valid gzip
                    // stream, but nothing was lost either.
                    tracing::warn!("{url}: empty gzip file (0 bytes), read as no lines");
                }
                continue;
            }
            if url.ends_with(".gz") {
                splits.push(FileSplit {
                    url,
                    start: 0,
                    end: size,
                    size,
                    compression: Compression::Gzip,
                });
                continue;
            }
            let mut start = 0;
            while start < size {
                let end = (start + split).min(size);
                splits.push(FileSplit {
                    url: url.clone(),
                    start,
                    end,
                    size,
                    compression: Compression::None,
                });
                start = end;
            }
        }
        let label = format!("text_file({})", paths.join(", "));
        Ok(Dataset::from_node(
            self.clone(),
            Node {
                label,
                partitions: splits.len(),
                kind: NodeKind::TextFile { splits },
            },
        ))
    }

    /// The files (URL, size) a path, directory or glob names, sorted.
    async fn list_input(&self, path: &str) -> Result<Vec<(String, u64)>, DriverError> {
        self.inner
            .stores
            .list_files(path)
            .await
            .map_err(DriverError::input)
    }
}

static CONTEXTS: AtomicU32 = AtomicU32::new(0);

impl ContextInner {
    /// The last heartbeat of each executor process, for the web UI.
    fn heartbeats(&self) -> Option<crate::ui::server::Heartbeats> {
        let Backend::Cluster(cluster) = &*self.backend else {
            return None;
        };
        let cluster = Arc::downgrade(cluster);
        Some(Arc::new(move || {
            let now = crate::ui::server::now_ms();
            cluster
                .upgrade()
                .map(|c| c.last_heartbeats())
                .unwrap_or_default()
                .into_iter()
                .map(|(id, silent)| (id, now.saturating_sub(silent.as_millis() as u64)))
                .collect()
        }))
    }

    /// The scheduler, started on first use (once the backend is final).
    pub(crate) fn scheduler(&self) -> &Scheduler {
        self.scheduler.get_or_init(|| {
            let deps = crate::scheduler::event_loop::SchedulerDeps {
                backend: self.backend.clone(),
                shuffle: self.shuffle.clone(),
                stores: self.stores.clone(),
                policy: crate::scheduler::Policy {
                    max_task_failures: self.config.max_attempts,
                    max_stage_attempts: self.config.max_stage_attempts,
                    speculation: self.config.speculation,
                },
                executor_wait: self.config.executor_wait,
                mode: self.config.scheduling_mode,
                driver_url: self.driver_url.clone(),
            };
            let mut listeners: Vec<Box<dyn crate::scheduler::events::EventListener>> = Vec::new();
            if let Some(ui) = self
                .ui
                .lock()
                .ok()
                .and_then(|mut ui| ui.as_mut()?.take_listener())
            {
                listeners.push(Box::new(ui));
            }
            if self.config.progress && crate::progress::drawn() {
                listeners.push(Box::new(crate::progress::ProgressListener::new()));
            }
            Scheduler::start(
                self.runtime.handle(),
                deps,
                self.last_job.clone(),
                listeners,
            )
        })
    }

    /// Listens on `bind`, serves the driver service and switches the
    /// backend to the cluster.
    fn start_cluster(
        &mut self,
        bind: SocketAddr,
        shuffle_url: String,
        secret: Secret,
    ) -> Result<Arc<Cluster>, DriverError> {
        let auth = Auth::new(secret);
        let build_id = riffle_executor::build_id::build_id()
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| DriverError::Config(format!("cannot listen on {bind}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let cluster = Cluster::new(ClusterSettings {
            build_id: build_id.to_string(),
            shuffle_store: shuffle_url,
            heartbeat_interval: self.config.heartbeat_interval,
            heartbeat_timeout: self.config.heartbeat_timeout,
            max_message_bytes: self.config.max_message_bytes,
            auth,
            tls: self.config.tls.clone(),
        });
        self.stop_server = Some(serve(&self.runtime, cluster.clone(), listener)?);
        let scheme = riffle_executor::tls::scheme(self.config.tls.as_ref());
        self.driver_url = Some(format!("{scheme}://{local}"));
        self.backend = Arc::new(Backend::Cluster(cluster.clone()));
        Ok(cluster)
    }
}

/// The secret of a driver that waits for executors started by hand and was
/// given none: the user's secret file, created (mode 0600) if missing, so
/// that executors of the same user on this machine find it without setup.
fn secret_file_for_executors() -> Result<Secret, DriverError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let path = Secret::default_file(env).ok_or_else(|| {
        DriverError::Config(riffle_executor::secret::SecretError::Missing.to_string())
    })?;
    let (secret, created) =
        Secret::read_or_create_file(&path).map_err(|e| DriverError::Config(e.to_string()))?;
    if created {
        tracing::info!(
            file = %path.display(),
            "created the shared secret file; executors on other machines need a copy (mode 0600) or RIFFLE_SECRET"
        );
    }
    Ok(secret)
}

//! riffle-executor: runs tasks.
//!
//! An [`Executor`] owns a rayon pool with one thread per slot (CPU work), a
//! handle to a tokio runtime (object-store I/O) and the shuffle store. The
//! driver registers each stage once ([`Executor::register_stage`]), then
//! launches tasks as encoded bytes ([`Executor::launch`]) and gets encoded
//! [`riffle_planner::task::TaskStatus`]es back. Embedded mode calls these
//! methods in process; the cluster transport carries the same bytes over
//! gRPC.
//!
//! ```text
//!  task bytes -> decode -> PipelineStage::build (iterators over sources)
//!             -> rayon: drive sink (shuffle write / result)  [runner.rs, cpu.rs]
//!             -> tokio: put shuffle object / text file      -> status bytes
//! ```
//!
//! While a task runs it is in the executor's registry, so the driver can
//! kill it ([`Executor::cancel_tasks`], [`Executor::cancel_job`]); a killed
//! task reports `FailureKind::Killed` and commits nothing.
//!
//! Architecture invariant: `cpu.rs` is the only place rayon meets tokio.

pub mod build_id;
pub mod cpu;
mod faults;
pub mod memory;
pub mod rpc;
pub mod runner;
pub mod secret;
pub mod shuffle_input;
pub mod sql;
pub mod text;
pub mod tls;
pub mod worker;

#[cfg(test)]
mod tests;

use riffle_planner::PipelineError;
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::task::{StageSpec, TaskSpec, TaskStatus, decode, encode};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use runner::{RunningTask, StageRuntime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Errors of the executor itself (not of a task, which reports a status).
#[derive(Debug, Error)]
pub enum ExecutorError {
    /// A stage or task message could not be decoded.
    #[error("bad message from driver: {0}")]
    BadMessage(PipelineError),
    /// A task names a stage that was never registered here.
    #[error("unknown stage {job}/{stage}: register the stage before launching its tasks")]
    UnknownStage {
        /// The job.
        job: JobId,
        /// The stage.
        stage: StageId,
    },
    /// A stage's operators could not be instantiated.
    #[error("stage {stage} cannot be instantiated: {source}")]
    Stage {
        /// The stage.
        stage: StageId,
        /// Why.
        source: PipelineError,
    },
    /// The rayon pool could not be built.
    #[error("cannot start the task thread pool: {0}")]
    Pool(String),
    /// The memory pool or spill directory could not be set up.
    #[error("cannot set up executor memory: {0}")]
    Memory(String),
}

/// What every task on this executor shares.
pub struct ExecutorEnv {
    /// This executor's id.
    pub id: ExecutorId,
    /// The CPU pool, one thread per slot.
    pub pool: Arc<rayon::ThreadPool>,
    /// The runtime that does this executor's I/O.
    pub runtime: tokio::runtime::Handle,
    /// Input and output stores by URL.
    pub stores: ObjectStores,
    /// Where shuffle output goes.
    pub shuffle: ShuffleStore,
    /// The memory pool and spill directory of every task here, Dataset
    /// and SQL alike.
    pub memory: Arc<memory::ExecutorMemory>,
}

/// An executor: stage cache plus task runner.
pub struct Executor {
    env: Arc<ExecutorEnv>,
    slots: usize,
    /// Registered stages, with the attempt their spec belongs to.
    stages: Mutex<HashMap<(JobId, StageId), (u32, StageRuntime)>>,
    /// The SQL engine, started with the first SQL stage.
    sql: std::sync::OnceLock<Arc<sql::SqlEngine>>,
    /// Tasks running now, so that they can be killed.
    running: Registry,
}

/// The running tasks of an executor, by attempt.
type Registry = Arc<Mutex<HashMap<TaskId, Arc<RunningTask>>>>;

/// A task registered as running on its executor but not started yet
/// ([`Executor::prepare`]); dropping it unregisters the task.
pub struct PreparedTask {
    env: Arc<ExecutorEnv>,
    stage: StageRuntime,
    task: TaskSpec,
    running: Arc<RunningTask>,
    _registered: Registered,
}

impl PreparedTask {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.task.id
    }

    /// Runs the task to completion, or until it is killed, and returns its
    /// status; it leaves the executor's registry when this returns (or the
    /// future is dropped).
    pub async fn run(self) -> TaskStatus {
        let PreparedTask {
            env,
            stage,
            task,
            running,
            _registered,
        } = self;
        runner::run_task(&env, stage, task, &running).await
    }
}

impl Executor {
    /// An executor with `slots` task threads and the memory pool and spill
    /// directory `memory` describes.
    pub fn new(
        id: ExecutorId,
        slots: usize,
        runtime: tokio::runtime::Handle,
        stores: ObjectStores,
        shuffle: ShuffleStore,
        memory: &memory::MemoryConfig,
    ) -> Result<Self, ExecutorError> {
        let memory = Arc::new(memory::ExecutorMemory::new(memory).map_err(ExecutorError::Memory)?);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(slots.max(1))
            .thread_name(move |i| format!("riffle-{id}-slot-{i}"))
            .build()
            .map_err(|e| ExecutorError::Pool(e.to_string()))?;
        Ok(Executor {
            env: Arc::new(ExecutorEnv {
                id,
                pool: Arc::new(pool),
                runtime,
                stores,
                shuffle,
                memory,
            }),
            slots: slots.max(1),
            stages: Mutex::new(HashMap::new()),
            sql: std::sync::OnceLock::new(),
            running: Registry::default(),
        })
    }

    /// This executor's id.
    pub fn id(&self) -> ExecutorId {
        self.env.id
    }

    /// Number of task slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Decodes a stage and instantiates its operators, once per stage
    /// attempt; a later attempt's spec replaces an earlier one's (tasks
    /// already prepared keep theirs), an earlier one arriving late is
    /// ignored.
    ///
    /// # Safety
    ///
    /// A Dataset stage names code by offset (see
    /// [`riffle_planner::function`]): `bytes` must have been encoded in this
    /// process, or sent by a driver that authenticated with the shared
    /// secret and whose build id equals ours. Any other bytes can make this
    /// jump to an arbitrary address.
    pub unsafe fn register_stage(&self, bytes: &[u8]) -> Result<(), ExecutorError> {
        let spec: StageSpec = decode(bytes).map_err(ExecutorError::BadMessage)?;
        let key = (spec.job, spec.stage);
        let (stage, attempt) = (spec.stage, spec.attempt);
        // SAFETY: forwarded to our caller.
        let runtime = unsafe { StageRuntime::new(spec, || self.sql_engine()) }
            .map_err(|source| ExecutorError::Stage { stage, source })?;
        if let Ok(mut stages) = self.stages.lock() {
            match stages.get(&key) {
                Some((newer, _)) if *newer > attempt => {}
                _ => {
                    stages.insert(key, (attempt, runtime));
                }
            }
        }
        Ok(())
    }

    /// Forgets a finished job's stages.
    pub fn remove_job(&self, job: JobId) {
        if let Ok(mut stages) = self.stages.lock() {
            stages.retain(|(j, _), _| *j != job);
        }
    }

    /// Runs one encoded task and returns its encoded status.
    pub async fn launch(&self, task: &[u8]) -> Result<Vec<u8>, ExecutorError> {
        let status = self.run(task).await?;
        encode(&status).map_err(ExecutorError::BadMessage)
    }

    /// Whether a stage is registered here, in `attempt` (or a later one)
    /// if given, in any attempt if not.
    pub fn has_stage(&self, job: JobId, stage: StageId, attempt: Option<u32>) -> bool {
        self.stages.lock().is_ok_and(|stages| {
            stages
                .get(&(job, stage))
                .is_some_and(|(registered, _)| attempt.is_none_or(|a| *registered >= a))
        })
    }

    /// Runs one encoded task and returns its status.
    pub async fn run(&self, task: &[u8]) -> Result<TaskStatus, ExecutorError> {
        Ok(self.prepare(task)?.run().await)
    }

    /// Decodes a task and registers it as running without starting it, so
    /// that a cancel arriving from now on is seen even before the task is
    /// first polled (the worker spawns tasks and must not lose a cancel
    /// that follows the launch at once). Fails as [`Executor::run`] does.
    pub fn prepare(&self, task: &[u8]) -> Result<PreparedTask, ExecutorError> {
        let task: TaskSpec = decode(task).map_err(ExecutorError::BadMessage)?;
        let key = (task.id.job, task.id.stage);
        let stage = self
            .stages
            .lock()
            .ok()
            .and_then(|stages| stages.get(&key).map(|(_, runtime)| runtime.clone()))
            .ok_or(ExecutorError::UnknownStage {
                job: key.0,
                stage: key.1,
            })?;
        let running = Arc::new(RunningTask::new(self.env.memory.clone()));
        let registered = Registered::new(self.running.clone(), task.id, running.clone());
        Ok(PreparedTask {
            env: self.env.clone(),
            stage,
            task,
            running,
            _registered: registered,
        })
    }

    /// Kills those of `tasks` (exact attempts) that are running here. Each
    /// killed task stops at its sources' next item (a SQL task's DataFusion
    /// task is aborted) and reports a status with `FailureKind::Killed`
    /// without committing output. Returns how many were running; a task
    /// that is not (finished, never launched here) is ignored, so a cancel
    /// racing a task's end is harmless.
    pub fn cancel_tasks(&self, tasks: &[TaskId]) -> usize {
        let found: Vec<Arc<RunningTask>> = match self.running.lock() {
            Ok(running) => tasks
                .iter()
                .filter_map(|id| running.get(id).cloned())
                .collect(),
            Err(_) => Vec::new(),
        };
        // Killed outside the registry's lock: killing wakes other tasks.
        found.iter().for_each(|task| task.kill());
        found.len()
    }

    /// Kills every task of `job` running here, as [`Executor::cancel_tasks`]
    /// does; returns how many there were.
    pub fn cancel_job(&self, job: JobId) -> usize {
        let found: Vec<Arc<RunningTask>> = match self.running.lock() {
            Ok(running) => running
                .iter()
                .filter(|(id, _)| id.job == job)
                .map(|(_, task)| task.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        found.iter().for_each(|task| task.kill());
        found.len()
    }

    /// The SQL engine, started on first use.
    fn sql_engine(&self) -> Result<Arc<sql::SqlEngine>, PipelineError> {
        if let Some(engine) = self.sql.get() {
            return Ok(engine.clone());
        }
        let engine = Arc::new(sql::SqlEngine::new(&self.env, self.slots)?);
        Ok(self.sql.get_or_init(|| engine).clone())
    }
}

/// A task's entry in the registry of running tasks, removed when the task
/// ends, or when its future is dropped.
struct Registered {
    registry: Registry,
    id: TaskId,
    task: Arc<RunningTask>,
}

impl Registered {
    fn new(registry: Registry, id: TaskId, task: Arc<RunningTask>) -> Self {
        if let Ok(mut running) = registry.lock() {
            running.insert(id, task.clone());
        }
        Registered { registry, id, task }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut running) = self.registry.lock()
            // A relaunch of the same attempt may have replaced this entry.
            && running.get(&self.id).is_some_and(|t| Arc::ptr_eq(t, &self.task))
        {
            running.remove(&self.id);
        }
    }
}

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
//!  task bytes -> decode -> StageRuntime::build (iterators over sources)
//!             -> rayon: drive sink (shuffle write / result)  [runner.rs, cpu.rs]
//!             -> tokio: put shuffle object / text file      -> status bytes
//! ```
//!
//! Architecture invariant: `cpu.rs` is the only place rayon meets tokio.

pub mod build_id;
pub mod cpu;
pub mod rpc;
pub mod runner;
pub mod shuffle_input;
pub mod sql;
pub mod text;
pub mod worker;

use riffle_planner::PipelineError;
use riffle_planner::ids::{ExecutorId, JobId, StageId};
use riffle_planner::task::{StageSpec, TaskSpec, TaskStatus, decode, encode};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use runner::StageRuntime;
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
}

/// An executor: stage cache plus task runner.
pub struct Executor {
    env: Arc<ExecutorEnv>,
    slots: usize,
    stages: Mutex<HashMap<(JobId, StageId), Arc<StageRuntime>>>,
    /// The SQL engine, started with the first SQL stage.
    sql: std::sync::OnceLock<sql::SqlEngine>,
}

impl Executor {
    /// An executor with `slots` task threads.
    pub fn new(
        id: ExecutorId,
        slots: usize,
        runtime: tokio::runtime::Handle,
        stores: ObjectStores,
        shuffle: ShuffleStore,
    ) -> Result<Self, ExecutorError> {
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
            }),
            slots: slots.max(1),
            stages: Mutex::new(HashMap::new()),
            sql: std::sync::OnceLock::new(),
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

    /// Decodes a stage and instantiates its operators, once per stage.
    pub fn register_stage(&self, bytes: &[u8]) -> Result<(), ExecutorError> {
        let spec: StageSpec = decode(bytes).map_err(ExecutorError::BadMessage)?;
        let key = (spec.job, spec.stage);
        let stage = spec.stage;
        let engine = match &spec.sink {
            riffle_planner::task::StageSink::Sql { .. } => Some(
                self.sql_engine()
                    .map_err(|source| ExecutorError::Stage { stage, source })?,
            ),
            _ => None,
        };
        let runtime = StageRuntime::new(spec, engine)
            .map_err(|source| ExecutorError::Stage { stage, source })?;
        if let Ok(mut stages) = self.stages.lock() {
            stages.insert(key, Arc::new(runtime));
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

    /// Whether a stage is registered here.
    pub fn has_stage(&self, job: JobId, stage: StageId) -> bool {
        self.stages
            .lock()
            .is_ok_and(|stages| stages.contains_key(&(job, stage)))
    }

    /// Runs one encoded task and returns its status.
    pub async fn run(&self, task: &[u8]) -> Result<TaskStatus, ExecutorError> {
        let task: TaskSpec = decode(task).map_err(ExecutorError::BadMessage)?;
        let key = (task.id.job, task.id.stage);
        let stage = self
            .stages
            .lock()
            .ok()
            .and_then(|stages| stages.get(&key).cloned())
            .ok_or(ExecutorError::UnknownStage {
                job: key.0,
                stage: key.1,
            })?;
        Ok(runner::run_task(&self.env, self.sql.get(), stage, task).await)
    }

    /// The SQL engine, started on first use.
    fn sql_engine(&self) -> Result<&sql::SqlEngine, PipelineError> {
        if let Some(engine) = self.sql.get() {
            return Ok(engine);
        }
        let engine = sql::SqlEngine::new(&self.env, self.slots)?;
        Ok(self.sql.get_or_init(|| engine))
    }
}

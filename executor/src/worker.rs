//! The executor process role: register with a driver, serve
//! `ExecutorService`, heartbeat, and report task statuses.
//!
//! ```text
//!   driver ──LaunchTasks──► ExecutorServer ──spawn──► Executor::run (rayon)
//!      ▲                                                    │ status
//!      └──────ReportTaskStatus (batched) ◄── reporter ◄─────┘
//!      └──────Heartbeat (own tokio task, every interval)
//! ```
//!
//! Shutdown: the process stops when the driver says `Shutdown`, when a
//! heartbeat answer says the driver does not know it, when the driver has
//! been unreachable for the heartbeat timeout, or (for children of a
//! `local-cluster` driver) when its stdin closes because the driver exited.

use crate::rpc::v1::driver_service_client::DriverServiceClient;
use crate::rpc::v1::executor_service_server::{ExecutorService, ExecutorServiceServer};
use crate::rpc::{Auth, ClientAuth, Refusals};
use crate::secret::Secret;
use crate::tls::TlsConfig;
use crate::{Executor, build_id};
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::proto::{PROTOCOL_VERSION, v1};
use riffle_planner::task::{FailureKind, TaskFailure, TaskMetrics, TaskOutput, TaskStatus};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{Notify, mpsc};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// How an executor process is started (CLI flags or `RIFFLE_*` variables).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The driver's URL, `http://HOST:PORT`.
    pub driver: String,
    /// Task slots (default: one per core).
    pub cores: usize,
    /// Address to listen on (default `127.0.0.1:0`).
    pub bind: SocketAddr,
    /// Address the driver should call back on, if not the bound one (a
    /// wildcard bind needs this).
    pub advertise: Option<String>,
    /// Shuffle store URL overriding the one the driver announces.
    pub shuffle_store: Option<String>,
    /// Shuffle compression (`RIFFLE_SHUFFLE_COMPRESSION`: `lz4` or `none`;
    /// by default none for a local directory, LZ4 for remote stores).
    pub shuffle_compression: Option<String>,
    /// Shared secret (`RIFFLE_SECRET`, `RIFFLE_SECRET_FILE` or
    /// `~/.riffle/secret`; see [`crate::secret`]).
    pub secret: Secret,
    /// TLS for both directions (`RIFFLE_TLS_*`; see [`crate::tls`]).
    pub tls: Option<TlsConfig>,
    /// Exit when stdin reaches end of file (set for `local-cluster` children).
    pub exit_on_stdin_eof: bool,
    /// Memory pool and spill directory (`--memory`, `RIFFLE_EXECUTOR_MEMORY`,
    /// `RIFFLE_SPILL_DIR`, `RIFFLE_SPILL_MAX`).
    pub memory: crate::memory::MemoryConfig,
}

/// Why an executor process could not run.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The driver could not be reached.
    #[error("cannot reach the driver at {driver}: {message}")]
    Connect {
        /// The driver URL.
        driver: String,
        /// The cause.
        message: String,
    },
    /// The driver refused the registration.
    #[error("the driver refused this executor: {0}")]
    Refused(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        message: String,
    },
    /// Any other start-up failure.
    #[error("{0}")]
    Start(String),
}

/// A client of the driver's service, with the secret attached.
pub type DriverClient =
    DriverServiceClient<tonic::service::interceptor::InterceptedService<Channel, ClientAuth>>;

/// Connects a client to `url`, with the secret, TLS and message limit
/// applied.
pub fn driver_client(
    url: &str,
    auth: &Auth,
    tls: Option<&TlsConfig>,
    max_message_bytes: usize,
) -> Result<DriverClient, WorkerError> {
    let channel = crate::rpc::channel(url, tls, "the driver URL").map_err(|message| {
        WorkerError::Connect {
            driver: url.to_string(),
            message,
        }
    })?;
    Ok(
        DriverServiceClient::with_interceptor(channel, auth.client())
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes),
    )
}

/// Runs an executor process until it is told to stop or loses its driver.
pub async fn run_worker(config: WorkerConfig) -> Result<(), WorkerError> {
    let auth = Auth::new(config.secret.clone());
    let build_id = build_id::build_id().map_err(|e| WorkerError::Start(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| WorkerError::Bind {
            addr: config.bind.to_string(),
            message: e.to_string(),
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| WorkerError::Start(e.to_string()))?;
    let tls = config.tls.as_ref();
    let address = config
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{}://{local}", crate::tls::scheme(tls)));
    crate::tls::check_url(&address, tls, "the advertised address")
        .map_err(|e| WorkerError::Start(e.to_string()))?;

    let mut client = driver_client(
        &config.driver,
        &auth,
        tls,
        crate::rpc::DEFAULT_MAX_MESSAGE_BYTES,
    )?;
    let registration = register(&mut client, &config, &address, build_id).await?;
    let id = ExecutorId(registration.executor_id);
    let max_message = registration.max_message_bytes as usize;
    let client = client
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let stores = ObjectStores::default();
    let shuffle_url = config
        .shuffle_store
        .clone()
        .unwrap_or(registration.shuffle_store);
    let url = ObjectStores::to_url(&shuffle_url).map_err(|e| WorkerError::Start(e.to_string()))?;
    let (store, prefix) = stores
        .resolve(&url)
        .map_err(|e| WorkerError::Start(e.to_string()))?;
    let compression =
        riffle_shuffle::ShuffleCompression::resolve(config.shuffle_compression.as_deref(), &url)
            .map_err(|e| WorkerError::Start(e.to_string()))?;
    let executor = Executor::new(
        id,
        config.cores,
        tokio::runtime::Handle::current(),
        stores,
        ShuffleStore::new(store, prefix).with_compression(compression),
        &config.memory,
    )
    .map_err(|e| WorkerError::Start(e.to_string()))?;
    tracing::info!(%id, %address, driver = %config.driver, cores = config.cores, "executor registered");

    let shutdown = Arc::new(Notify::new());
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let service = Worker {
        executor: Arc::new(executor),
        statuses: status_tx,
        running: Arc::new(Mutex::new(HashMap::new())),
        shutdown: shutdown.clone(),
        max_message,
        build_id,
        refusals: auth.refusals().clone(),
    };
    let running = service.running.clone();
    let interval = Duration::from_millis(u64::from(registration.heartbeat_interval_ms.max(50)));

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(report_statuses(client.clone(), id, status_rx));
    tasks.spawn(watch(client.clone(), id));
    tasks.spawn(heartbeat(client, id, running, interval, shutdown.clone()));
    if config.exit_on_stdin_eof {
        let shutdown = shutdown.clone();
        // A blocking read on its own thread: EOF means the parent driver is gone.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            shutdown.notify_one();
        });
    }
    // The configured limit, not tonic's 4 MiB default: a stage's plan may
    // be any size up to it, and nothing larger is ever decoded.
    let server = tonic::service::interceptor::InterceptedService::new(
        ExecutorServiceServer::new(service)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
        auth.server(),
    );
    let incoming = tokio_stream_from(listener);
    crate::rpc::server(tls)
        .map_err(WorkerError::Start)?
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async move { shutdown.notified().await })
        .await
        .map_err(|e| WorkerError::Start(e.to_string()))?;
    tasks.abort_all();
    tracing::info!(%id, "executor stopped");
    Ok(())
}

/// Accepted connections of `listener`, as the stream tonic serves.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((conn, listener))
    })
}

async fn register(
    client: &mut DriverClient,
    config: &WorkerConfig,
    address: &str,
    build_id: &str,
) -> Result<v1::RegisterExecutorResponse, WorkerError> {
    let request = v1::RegisterExecutorRequest {
        protocol_version: PROTOCOL_VERSION,
        build_id: build_id.to_string(),
        address: address.to_string(),
        cores: config.cores as u32,
        memory_bytes: 0,
        host: std::env::var("HOSTNAME").unwrap_or_default(),
    };
    // The driver may still be starting: retry a connection failure for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.register_executor(request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(WorkerError::Connect {
                    driver: config.driver.clone(),
                    message: status.message().to_string(),
                });
            }
            Err(status) => return Err(WorkerError::Refused(status.message().to_string())),
        }
    }
}

/// Sends finished statuses to the driver, batching whatever is ready.
async fn report_statuses(
    mut client: DriverClient,
    id: ExecutorId,
    mut rx: mpsc::UnboundedReceiver<TaskStatus>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![v1::TaskStatus::from(&first)];
        while let Ok(next) = rx.try_recv() {
            batch.push(v1::TaskStatus::from(&next));
        }
        let request = v1::ReportTaskStatusRequest {
            executor_id: id.0,
            statuses: batch,
        };
        for attempt in 0..5u64 {
            match client.report_task_status(request.clone()).await {
                Ok(_) => break,
                Err(status) => {
                    tracing::warn!(%id, attempt, error = %status, "reporting task statuses failed");
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
            }
        }
    }
}

/// Keeps the `WatchExecutor` stream open, so that the driver notices at
/// once when this process or its connection dies. Its end is only logged:
/// the heartbeats decide whether the driver is gone.
async fn watch(mut client: DriverClient, id: ExecutorId) {
    match client
        .watch_executor(v1::WatchExecutorRequest { executor_id: id.0 })
        .await
    {
        Ok(response) => {
            let mut stream = response.into_inner();
            while let Ok(Some(_)) = stream.message().await {}
            tracing::debug!(%id, "watch stream to the driver ended");
        }
        Err(status) => tracing::warn!(%id, error = %status, "could not open the watch stream"),
    }
}

/// Heartbeats on a tokio task of its own, so CPU-heavy tasks (on rayon)
/// cannot delay it. Stops the process when the driver is gone.
async fn heartbeat(
    mut client: DriverClient,
    id: ExecutorId,
    running: Arc<Mutex<HashMap<v1::TaskKey, Instant>>>,
    interval: Duration,
    shutdown: Arc<Notify>,
) {
    // The driver declares an executor lost after missing heartbeats for a
    // few seconds; an executor gives up on its driver after the same time.
    let give_up = interval * 10;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        if crate::faults::drop_heartbeat(id) {
            continue;
        }
        let tasks: Vec<v1::RunningTask> = running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(task, started)| v1::RunningTask {
                        task: Some(*task),
                        elapsed_micros: started.elapsed().as_micros() as u64,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = v1::HeartbeatRequest {
            executor_id: id.0,
            running: tasks,
        };
        match client.heartbeat(request).await {
            Ok(response) if response.get_ref().known => last_ok = Instant::now(),
            Ok(_) => {
                tracing::warn!(%id, "the driver no longer knows this executor; stopping");
                shutdown.notify_one();
                return;
            }
            Err(status) if last_ok.elapsed() > give_up => {
                tracing::warn!(%id, error = %status, "driver unreachable; stopping");
                shutdown.notify_one();
                return;
            }
            Err(_) => {}
        }
    }
}

/// The `ExecutorService` implementation.
struct Worker {
    executor: Arc<Executor>,
    statuses: mpsc::UnboundedSender<TaskStatus>,
    /// Tasks running now, for heartbeats.
    running: Arc<Mutex<HashMap<v1::TaskKey, Instant>>>,
    shutdown: Arc<Notify>,
    max_message: usize,
    /// This process's build id: launches from a driver with another are
    /// refused before any of their code is looked at.
    build_id: &'static str,
    refusals: Refusals,
}

impl Worker {
    /// Refuses a call addressed to another executor id (or to none): the
    /// driver names the id it assigned this process at registration.
    fn addressed_to_us(
        &self,
        peer: Option<SocketAddr>,
        call: &str,
        executor_id: Option<u32>,
    ) -> Result<(), Status> {
        let ours = self.executor.id();
        match executor_id {
            Some(id) if id == ours.0 => Ok(()),
            other => {
                let named =
                    other.map_or("no executor id".to_string(), |id| format!("executor-{id}"));
                Err(self.refusals.refuse(
                    peer,
                    "wrong executor id",
                    Status::permission_denied(format!(
                        "{call} names {named}, but this is {ours}: only its own driver may call an executor"
                    )),
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl ExecutorService for Worker {
    async fn launch_tasks(
        &self,
        request: Request<v1::LaunchTasksRequest>,
    ) -> Result<Response<v1::LaunchTasksResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        self.addressed_to_us(peer, "LaunchTasks", request.executor_id)?;
        if request.build_id != self.build_id {
            return Err(self.refusals.refuse(
                peer,
                "build id mismatch",
                Status::failed_precondition(format!(
                    "LaunchTasks from a driver running build {:?}, but this executor runs build {}: \
                     start executors from the same binary as the driver",
                    request.build_id, self.build_id
                )),
            ));
        }
        for stage in &request.stages {
            // SAFETY: the `ServerAuth` interceptor let this call through
            // only with the shared secret, so it comes from our driver (or a
            // process its user trusts with the secret), and its build id was
            // checked just above to equal ours: the code offsets in the
            // stage are offsets into this very binary.
            unsafe { self.executor.register_stage(&stage.spec) }
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        // Validate every task before starting any, so a bad message changes nothing.
        for task in &request.tasks {
            let key = task
                .task
                .ok_or_else(|| Status::invalid_argument("task definition without a task key"))?;
            if !self
                .executor
                .has_stage(JobId(key.job), StageId(key.stage), None)
            {
                return Err(Status::failed_precondition(format!(
                    "stage job-{}/stage-{} is not registered on this executor",
                    key.job, key.stage
                )));
            }
        }
        for task in request.tasks {
            let Some(key) = task.task else { continue };
            let executor = self.executor.clone();
            let statuses = self.statuses.clone();
            let running = self.running.clone();
            let limit = self.max_message;
            if let Ok(mut r) = running.lock() {
                r.insert(key, Instant::now());
            }
            // Registered before it is spawned, so a cancel that follows this
            // call at once finds it.
            let prepared = executor.prepare(&task.spec);
            tokio::spawn(async move {
                let status = match prepared {
                    Ok(prepared) => enforce_limit(prepared.run().await, limit),
                    Err(e) => TaskStatus {
                        id: key.into(),
                        executor: executor.id(),
                        result: Err(TaskFailure {
                            kind: FailureKind::Internal,
                            message: riffle_planner::report(&e),
                        }),
                        metrics: TaskMetrics::default(),
                    },
                };
                if let Ok(mut r) = running.lock() {
                    r.remove(&key);
                }
                let _ = statuses.send(status);
            });
        }
        Ok(Response::new(v1::LaunchTasksResponse {}))
    }

    async fn cancel_tasks(
        &self,
        request: Request<v1::CancelTasksRequest>,
    ) -> Result<Response<v1::CancelTasksResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        self.addressed_to_us(peer, "CancelTasks", request.executor_id)?;
        // Every field of a TaskKey is a plain integer, so any key names an
        // attempt; one that is not running here is simply not found.
        let tasks: Vec<TaskId> = request.tasks.into_iter().map(TaskId::from).collect();
        let killed = self.executor.cancel_tasks(&tasks);
        tracing::debug!(
            executor = %self.executor.id(),
            requested = tasks.len(),
            killed,
            "cancel tasks"
        );
        Ok(Response::new(v1::CancelTasksResponse {}))
    }

    async fn remove_job(
        &self,
        request: Request<v1::RemoveJobRequest>,
    ) -> Result<Response<v1::RemoveJobResponse>, Status> {
        self.executor.remove_job(JobId(request.into_inner().job));
        Ok(Response::new(v1::RemoveJobResponse {}))
    }

    async fn shutdown(
        &self,
        _request: Request<v1::ShutdownRequest>,
    ) -> Result<Response<v1::ShutdownResponse>, Status> {
        self.shutdown.notify_one();
        Ok(Response::new(v1::ShutdownResponse {}))
    }
}

/// Turns a result too large for one message into a failure that says so.
fn enforce_limit(status: TaskStatus, limit: usize) -> TaskStatus {
    // Leave room for the rest of the status message.
    let budget = limit.saturating_sub(64 << 10);
    match &status.result {
        Ok(TaskOutput::Result(bytes)) if bytes.len() > budget => TaskStatus {
            result: Err(TaskFailure {
                kind: FailureKind::User,
                message: format!(
                    "the result of {} is {} bytes, more than fits in one message: {}; write large results with save_as_text_file",
                    status.id,
                    bytes.len(),
                    crate::rpc::message_limit_hint(limit)
                ),
            }),
            ..status
        },
        _ => status,
    }
}

impl WorkerConfig {
    /// The executor settings of this process, if it was started as an
    /// executor: `--executor` among its arguments or `RIFFLE_ROLE=executor`
    /// in its environment. Flags (`--driver URL`, `--cores N`,
    /// `--bind ADDR`, `--advertise URL`, `--shuffle-store URL`,
    /// `--memory SIZE`) win over the variables `RIFFLE_DRIVER`,
    /// `RIFFLE_CORES`, `RIFFLE_BIND`, `RIFFLE_ADVERTISE`,
    /// `RIFFLE_SHUFFLE_STORE`, `RIFFLE_EXECUTOR_MEMORY` (see
    /// [`crate::memory::MemoryConfig::from_vars`]); the secret comes from
    /// `RIFFLE_SECRET` or a file (see [`crate::secret`]), never from a
    /// flag, so it never shows in a process list.
    pub fn from_process() -> Result<Option<WorkerConfig>, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let by_flag = args.iter().any(|a| a == "--executor");
        let by_env = std::env::var("RIFFLE_ROLE").is_ok_and(|r| r == "executor");
        if !by_flag && !by_env {
            return Ok(None);
        }
        Self::parse(&args, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
        .map(Some)
    }

    /// Parses executor flags, falling back to `env` for missing ones.
    pub fn parse(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<WorkerConfig, String> {
        let mut flags: HashMap<&str, String> = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let key = match name {
                "--driver" => "driver",
                "--cores" => "cores",
                "--bind" => "bind",
                "--advertise" => "advertise",
                "--shuffle-store" => "shuffle-store",
                "--memory" => "memory",
                "--executor" => continue,
                other => return Err(format!("unknown executor option {other:?}")),
            };
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            flags.insert(key, value);
        }
        let get = |key: &str, var: &str| flags.get(key).cloned().or_else(|| env(var));
        let secret = Secret::from_env(&env)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| crate::secret::SecretError::Missing.to_string())?;
        let driver = get("driver", "RIFFLE_DRIVER").ok_or(
            "the executor needs the driver's URL: --driver http://HOST:PORT (or RIFFLE_DRIVER)",
        )?;
        let cores = match get("cores", "RIFFLE_CORES") {
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--cores {c:?} is not a positive number"))?,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        let bind = get("bind", "RIFFLE_BIND").unwrap_or_else(|| "127.0.0.1:0".into());
        let bind = bind
            .parse()
            .map_err(|_| format!("--bind {bind:?} is not an address like 127.0.0.1:7078"))?;
        let memory = crate::memory::MemoryConfig::from_vars(|var| match var {
            "RIFFLE_EXECUTOR_MEMORY" => get("memory", var),
            _ => env(var),
        })
        .map_err(|e| match flags.contains_key("memory") {
            true => e.replace("RIFFLE_EXECUTOR_MEMORY", "--memory"),
            false => e,
        })?;
        Ok(WorkerConfig {
            memory,
            driver,
            cores,
            bind,
            advertise: get("advertise", "RIFFLE_ADVERTISE"),
            shuffle_store: get("shuffle-store", "RIFFLE_SHUFFLE_STORE"),
            shuffle_compression: env("RIFFLE_SHUFFLE_COMPRESSION"),
            secret,
            tls: TlsConfig::from_env(&env).map_err(|e| e.to_string())?,
            exit_on_stdin_eof: env("RIFFLE_EXIT_ON_STDIN_EOF").is_some_and(|v| v == "1"),
        })
    }
}

/// Runs an executor process on a runtime of its own (for `main`).
pub fn run_blocking(config: WorkerConfig) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("riffle-io")
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Start(format!("cannot start the I/O runtime: {e}")))?;
    runtime.block_on(run_worker(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_environment() {
        let env = |name: &str| match name {
            "RIFFLE_CORES" => Some("3".to_string()),
            "RIFFLE_SECRET" => Some("s".to_string()),
            _ => None,
        };
        let c = WorkerConfig::parse(
            &args(&["--executor", "--driver", "http://h:1", "--bind=0.0.0.0:9"]),
            env,
        )
        .unwrap();
        assert_eq!(c.driver, "http://h:1");
        assert_eq!(c.cores, 3);
        assert_eq!(c.bind.to_string(), "0.0.0.0:9");
        let err = WorkerConfig::parse(&args(&["--cores", "0", "--driver", "x"]), env).unwrap_err();
        assert!(err.contains("--cores"), "{err}");
        let err = WorkerConfig::parse(&args(&[]), env).unwrap_err();
        assert!(err.contains("--driver"), "{err}");
        let err = WorkerConfig::parse(&args(&["--driver", "x", "--bogus", "1"]), env).unwrap_err();
        assert!(err.contains("--bogus"), "{err}");
        let err = WorkerConfig::parse(&args(&["--driver", "x"]), |_| None).unwrap_err();
        assert!(err.contains("no shared secret"), "{err}");
    }

    #[test]
    fn memory_flag_wins_over_the_variable_and_bad_sizes_name_the_flag() {
        use crate::memory::PoolSize;
        let env = |name: &str| match name {
            "RIFFLE_EXECUTOR_MEMORY" => Some("2g".to_string()),
            "RIFFLE_FORCE_SPILL_EVERY" => Some("5".to_string()),
            "RIFFLE_SECRET" => Some("s".to_string()),
            _ => None,
        };
        let c = WorkerConfig::parse(&args(&["--driver", "x"]), env).unwrap();
        assert_eq!(c.memory.pool, PoolSize::Bytes(2 << 30));
        assert_eq!(c.memory.force_spill_every, Some(5));
        let c = WorkerConfig::parse(&args(&["--driver", "x", "--memory", "512m"]), env).unwrap();
        assert_eq!(c.memory.pool, PoolSize::Bytes(512 << 20));
        let err =
            WorkerConfig::parse(&args(&["--driver", "x", "--memory", "lots"]), env).unwrap_err();
        assert!(err.contains("--memory") && err.contains("lots"), "{err}");
        let err = WorkerConfig::parse(&args(&["--driver", "x"]), |n| match n {
            "RIFFLE_EXECUTOR_MEMORY" => Some("12q".to_string()),
            "RIFFLE_SECRET" => Some("s".to_string()),
            _ => None,
        })
        .unwrap_err();
        assert!(err.contains("RIFFLE_EXECUTOR_MEMORY"), "{err}");
    }
}

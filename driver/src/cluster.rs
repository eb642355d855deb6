//! Cluster membership and the driver's gRPC service.
//!
//! Executors register ([`DriverServer::register_executor`]), heartbeat, and
//! report task statuses. The scheduler launches a task on a
//! [`RemoteExecutor`] by parking a oneshot sender in [`Cluster`]'s pending
//! table and queueing the task; a per-executor sender loop batches queued
//! tasks (and the stages the executor has not seen) into one `LaunchTasks`
//! call. A reported status completes the parked sender.
//!
//! Every way an executor can leave (missed heartbeats, a failed launch
//! call, shutdown) goes through [`Cluster::remove_executor`], which drops
//! its parked senders: their tasks come back to the scheduler as
//! retryable "executor lost" failures.

use riffle_executor::rpc::v1::driver_service_server::DriverService;
use riffle_executor::rpc::v1::executor_service_client::ExecutorServiceClient;
use riffle_executor::rpc::{Auth, ClientAuth};
use riffle_planner::ids::{ExecutorId, JobId, StageId, TaskId};
use riffle_planner::proto::convert::status_from_proto;
use riffle_planner::proto::{PROTOCOL_VERSION, v1};
use riffle_planner::task::TaskStatus;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Settings shared by the driver's side of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    /// The driver binary's build id; executors must match it.
    pub(crate) build_id: String,
    /// Shuffle store URL announced to executors.
    pub(crate) shuffle_store: String,
    pub(crate) heartbeat_interval: Duration,
    /// Silence after which an executor is declared lost.
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) auth: Auth,
    /// TLS of every channel, both directions.
    pub(crate) tls: Option<riffle_executor::tls::TlsConfig>,
}

type ExecutorClient =
    ExecutorServiceClient<tonic::service::interceptor::InterceptedService<Channel, ClientAuth>>;

/// A registered executor process.
pub(crate) struct RemoteExecutor {
    pub(crate) id: ExecutorId,
    pub(crate) address: String,
    pub(crate) cores: usize,
    client: ExecutorClient,
    /// Stages already sent to this executor.
    sent_stages: Mutex<HashSet<(JobId, StageId, u32)>>,
    /// Tasks waiting for the sender loop.
    queue: mpsc::UnboundedSender<Launch>,
    last_heartbeat: Mutex<Instant>,
}

struct Launch {
    stage: Option<v1::StageDefinition>,
    task: v1::TaskDefinition,
}

struct Pending {
    executor: ExecutorId,
    reply: oneshot::Sender<TaskStatus>,
}

#[derive(Default)]
struct Members {
    next_id: u32,
    executors: BTreeMap<ExecutorId, Arc<RemoteExecutor>>,
}

/// Membership table plus pending task replies.
pub(crate) struct Cluster {
    pub(crate) settings: ClusterSettings,
    members: Mutex<Members>,
    /// Incremented on every membership change; the scheduler and the
    /// start-up wait watch it.
    changes: watch::Sender<u64>,
    pending: Mutex<HashMap<TaskId, Pending>>,
    /// Set once the driver is shutting its executors down: their watch
    /// streams closing then is no loss.
    closing: std::sync::atomic::AtomicBool,
}

/// How long the driver waits for each executor to acknowledge a shutdown:
/// a hung one must not hold the driver's exit back (children also stop
/// when their stdin closes, and others when their heartbeats go
/// unanswered).
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

impl Cluster {
    pub(crate) fn new(settings: ClusterSettings) -> Arc<Cluster> {
        Arc::new(Cluster {
            settings,
            members: Mutex::new(Members::default()),
            changes: watch::channel(0).0,
            pending: Mutex::new(HashMap::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The executors registered now.
    /// How long ago each executor last sent a heartbeat.
    pub(crate) fn last_heartbeats(&self) -> HashMap<ExecutorId, Duration> {
        self.executors()
            .iter()
            .filter_map(|e| Some((e.id, e.last_heartbeat.lock().ok()?.elapsed())))
            .collect()
    }

    pub(crate) fn executors(&self) -> Vec<Arc<RemoteExecutor>> {
        self.members
            .lock()
            .map(|m| m.executors.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The executor `id`, if it is registered now.
    pub(crate) fn executor(&self, id: ExecutorId) -> Option<Arc<RemoteExecutor>> {
        self.members
            .lock()
            .ok()
            .and_then(|m| m.executors.get(&id).cloned())
    }

    /// A receiver that sees every membership change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Removes an executor (any reason) and fails its pending tasks.
    pub(crate) fn remove_executor(&self, id: ExecutorId, reason: &str) {
        let removed = self
            .members
            .lock()
            .ok()
            .and_then(|mut m| m.executors.remove(&id));
        // Fail its pending tasks even if it was removed before: a task may
        // have been launched on it concurrently with the first removal.
        if let Ok(mut pending) = self.pending.lock() {
            // Dropping the senders wakes the scheduler with "executor lost".
            pending.retain(|_, p| p.executor != id);
        }
        if removed.is_some() {
            tracing::warn!(%id, reason, "executor lost");
            self.changed();
        }
    }

    /// Queues one task for `executor` at once (not when first polled: the
    /// scheduler's listeners run after this, and the task should be on its
    /// way meanwhile) and returns a future of its status. Never fails:
    /// losing the executor is reported as a retryable failure.
    pub(crate) fn launch(
        &self,
        executor: &RemoteExecutor,
        stage: &crate::executors::StageMessage,
        id: TaskId,
        spec: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, TaskStatus> {
        match self.queue_launch(executor, stage, id, spec) {
            Err(status) => Box::pin(async move { *status }),
            Ok(rx) => {
                let (executor, address) = (executor.id, executor.address.clone());
                Box::pin(async move {
                    rx.await.unwrap_or_else(|_| {
                        crate::scheduler::backend::lost(
                            id,
                            executor,
                            format!("{executor} ({address}) was lost while running {id}"),
                        )
                    })
                })
            }
        }
    }

    /// The synchronous part of [`Cluster::launch`]: the receiver of the
    /// task's status, or the status it already has (refused or lost).
    fn queue_launch(
        &self,
        executor: &RemoteExecutor,
        stage: &crate::executors::StageMessage,
        id: TaskId,
        spec: Vec<u8>,
    ) -> Result<oneshot::Receiver<TaskStatus>, Box<TaskStatus>> {
        let lost = |message: String| crate::scheduler::backend::lost(id, executor.id, message);
        // A stage description over the limit would be refused by the
        // executor's transport, which ends the connection: the executor
        // would be lost, and every executor after it. Fail the task instead
        // (a large constant folded into a plan is the usual cause).
        let size = stage.bytes.len() + spec.len();
        let budget = self.settings.max_message_bytes.saturating_sub(64 << 10);
        if size > budget {
            return Err(Box::new(crate::scheduler::backend::failed(
                id,
                executor.id,
                riffle_planner::task::FailureKind::User,
                format!(
                    "the description of {id} (its stage's plan and its own) is {size} bytes, more than fits in one message: {}; a large constant in the query (folded into its plan) is the usual cause",
                    riffle_executor::rpc::message_limit_hint(self.settings.max_message_bytes)
                ),
            )));
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(
                id,
                Pending {
                    executor: executor.id,
                    reply: tx,
                },
            );
        }
        let member = self
            .members
            .lock()
            .is_ok_and(|m| m.executors.contains_key(&executor.id));
        // Whether this launch carries the stage's spec is decided and the
        // launch queued under one lock: a concurrent launch of the same
        // stage (on another runtime thread) must not reach the executor
        // first, without the spec.
        let queued = member
            && executor.sent_stages.lock().is_ok_and(|mut sent| {
                let first_time = sent.insert((stage.job, stage.stage, stage.attempt));
                let launch = Launch {
                    stage: first_time.then(|| v1::StageDefinition {
                        job: stage.job.0,
                        stage: stage.stage.0,
                        spec: stage.bytes.to_vec(),
                    }),
                    task: v1::TaskDefinition {
                        task: Some(id.into()),
                        spec,
                    },
                };
                executor.queue.send(launch).is_ok()
            });
        if !queued {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&id);
            }
            return Err(Box::new(lost(format!("{} is gone", executor.id))));
        }
        Ok(rx)
    }

    /// Asks every executor to stop (best effort, bounded wait).
    pub(crate) async fn shutdown_all(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let executors = self.executors();
        let calls = executors.iter().map(|e| {
            let mut client = e.client.clone();
            async move {
                let _ =
                    tokio::time::timeout(SHUTDOWN_WAIT, client.shutdown(v1::ShutdownRequest {}))
                        .await;
            }
        });
        futures::future::join_all(calls).await;
    }

    /// Tells executors to forget a finished job's stages.
    pub(crate) async fn remove_job(&self, job: JobId) {
        let calls = self.executors().into_iter().map(|e| async move {
            if let Ok(mut sent) = e.sent_stages.lock() {
                sent.retain(|(j, _, _)| *j != job);
            }
            let mut client = e.client.clone();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                client.remove_job(v1::RemoveJobRequest { job: job.0 }),
            )
            .await;
        });
        futures::future::join_all(calls).await;
    }

    /// Asks `executor` to kill `tasks` (exact attempts), best effort with a
    /// bounded wait: the killed tasks report `FailureKind::Killed` through
    /// the usual status path, and an executor that is gone or slow to answer
    /// leaves its tasks to the executor-loss path.
    pub(crate) async fn cancel_tasks(&self, executor: ExecutorId, tasks: Vec<TaskId>) {
        if tasks.is_empty() {
            return;
        }
        let member = self
            .members
            .lock()
            .ok()
            .and_then(|m| m.executors.get(&executor).cloned());
        let Some(member) = member else { return };
        let mut client = member.client.clone();
        let request = v1::CancelTasksRequest {
            tasks: tasks.into_iter().map(v1::TaskKey::from).collect(),
            executor_id: Some(executor.0),
        };
        match tokio::time::timeout(Duration::from_secs(2), client.cancel_tasks(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::warn!(%executor, error = %status, "cancelling tasks failed")
            }
            Err(_) => tracing::warn!(%executor, "cancelling tasks timed out"),
        }
    }

    /// Declares lost every executor silent for longer than the timeout.
    pub(crate) async fn monitor_heartbeats(cluster: Weak<Cluster>) {
        loop {
            let Some(interval) = cluster.upgrade().map(|c| c.settings.heartbeat_interval) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let timeout = cluster.settings.heartbeat_timeout;
            for e in cluster.executors() {
                let silent = e
                    .last_heartbeat
                    .lock()
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                if silent > timeout {
                    cluster.remove_executor(
                        e.id,
                        &format!("no heartbeat for {:.1} s", silent.as_secs_f64()),
                    );
                }
            }
        }
    }
}

/// Sends queued launches to one executor, batching whatever is queued.
async fn send_launches(
    cluster: Weak<Cluster>,
    id: ExecutorId,
    mut client: ExecutorClient,
    mut rx: mpsc::UnboundedReceiver<Launch>,
) {
    let build_id = match cluster.upgrade() {
        Some(cluster) => cluster.settings.build_id.clone(),
        None => return,
    };
    while let Some(first) = rx.recv().await {
        let mut request = v1::LaunchTasksRequest {
            executor_id: Some(id.0),
            build_id: build_id.clone(),
            ..Default::default()
        };
        let mut next = Some(first);
        while let Some(launch) = next.take() {
            request.stages.extend(launch.stage);
            request.tasks.push(launch.task);
            if request.tasks.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(status) = client.launch_tasks(request).await {
            if let Some(cluster) = cluster.upgrade() {
                cluster
                    .remove_executor(id, &format!("launching tasks failed: {}", status.message()));
            }
            return;
        }
    }
}

/// The driver's gRPC service.
#[derive(Clone)]
pub(crate) struct DriverServer {
    pub(crate) cluster: Arc<Cluster>,
}

impl DriverServer {
    /// Refuses calls from an executor this driver does not know (never
    /// assigned, or already declared lost), logging the refusal.
    fn registered(
        &self,
        peer: Option<std::net::SocketAddr>,
        call: &str,
        id: ExecutorId,
    ) -> Result<(), Status> {
        let known = self
            .cluster
            .members
            .lock()
            .is_ok_and(|m| m.executors.contains_key(&id));
        if known {
            Ok(())
        } else {
            Err(self.cluster.settings.auth.refusals().refuse(
                peer,
                "unknown executor id",
                Status::failed_precondition(format!(
                    "{call} from {id}, which is not registered with this driver (never assigned, or declared lost)"
                )),
            ))
        }
    }
}

/// Held by an executor's watch stream: dropping it (the connection closed)
/// declares the executor lost.
struct ConnectionGuard {
    cluster: Weak<Cluster>,
    id: ExecutorId,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.upgrade()
            && !cluster.closing.load(std::sync::atomic::Ordering::Relaxed)
        {
            cluster.remove_executor(self.id, "its connection closed");
        }
    }
}

/// The never-sending stream of `WatchExecutor`.
type WatchStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<v1::WatchExecutorResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl DriverService for DriverServer {
    type WatchExecutorStream = WatchStream;

    async fn watch_executor(
        &self,
        request: Request<v1::WatchExecutorRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let peer = request.remote_addr();
        let id = ExecutorId(request.into_inner().executor_id);
        self.registered(peer, "WatchExecutor", id)?;
        let guard = ConnectionGuard {
            cluster: Arc::downgrade(&self.cluster),
            id,
        };
        // Pending for ever, holding the guard: hyper drops the stream (and
        // so the guard) when the connection closes.
        let stream = futures::stream::unfold(guard, |guard| async move {
            std::future::pending::<()>().await;
            drop(guard);
            None
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn register_executor(
        &self,
        request: Request<v1::RegisterExecutorRequest>,
    ) -> Result<Response<v1::RegisterExecutorResponse>, Status> {
        let peer = request.remote_addr();
        let r = request.into_inner();
        let cluster = &self.cluster;
        let refuse = |why: &str, status: Status| {
            Err(cluster.settings.auth.refusals().refuse(peer, why, status))
        };
        if r.protocol_version != PROTOCOL_VERSION {
            return refuse(
                "protocol version mismatch",
                Status::failed_precondition(format!(
                    "protocol version {} is not the driver's {PROTOCOL_VERSION}: run the same Riffle release everywhere",
                    r.protocol_version
                )),
            );
        }
        if r.build_id.is_empty() {
            return refuse(
                "no build id",
                Status::failed_precondition(
                    "registration without a build id: an executor must prove it runs the driver's binary",
                ),
            );
        }
        if r.build_id != cluster.settings.build_id {
            return refuse(
                "build id mismatch",
                Status::failed_precondition(format!(
                    "build id mismatch: executor runs build {}, driver runs build {}; start executors from the same binary as the driver",
                    r.build_id, cluster.settings.build_id
                )),
            );
        }
        if r.cores == 0 {
            return Err(Status::invalid_argument(
                "an executor needs at least one core",
            ));
        }
        let channel = match riffle_executor::rpc::channel(
            &r.address,
            cluster.settings.tls.as_ref(),
            "the executor's address",
        ) {
            Ok(channel) => channel,
            Err(message) => {
                return refuse("bad executor address", Status::invalid_argument(message));
            }
        };
        let max = cluster.settings.max_message_bytes;
        let client =
            ExecutorServiceClient::with_interceptor(channel, cluster.settings.auth.client())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
        let (queue, rx) = mpsc::unbounded_channel();
        let id = {
            let mut members = cluster
                .members
                .lock()
                .map_err(|_| Status::internal("membership table poisoned"))?;
            let id = ExecutorId(members.next_id);
            members.next_id += 1;
            members.executors.insert(
                id,
                Arc::new(RemoteExecutor {
                    id,
                    address: r.address.clone(),
                    cores: r.cores as usize,
                    client: client.clone(),
                    sent_stages: Mutex::new(HashSet::new()),
                    queue,
                    last_heartbeat: Mutex::new(Instant::now()),
                }),
            );
            id
        };
        tokio::spawn(send_launches(Arc::downgrade(cluster), id, client, rx));
        tracing::info!(%id, address = %r.address, cores = r.cores, "executor registered");
        cluster.changed();
        Ok(Response::new(v1::RegisterExecutorResponse {
            executor_id: id.0,
            shuffle_store: cluster.settings.shuffle_store.clone(),
            heartbeat_interval_ms: cluster.settings.heartbeat_interval.as_millis() as u32,
            max_message_bytes: max as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let peer = request.remote_addr();
        let id = ExecutorId(request.into_inner().executor_id);
        let known = self
            .cluster
            .members
            .lock()
            .ok()
            .and_then(|m| m.executors.get(&id).cloned());
        match &known {
            Some(e) => {
                if let Ok(mut t) = e.last_heartbeat.lock() {
                    *t = Instant::now();
                }
            }
            // Refused, but with an answer rather than an error: `known:
            // false` is what tells a dropped executor to stop.
            None => {
                let _ = self.registered(peer, "Heartbeat", id);
            }
        }
        Ok(Response::new(v1::HeartbeatResponse {
            known: known.is_some(),
        }))
    }

    async fn report_task_status(
        &self,
        request: Request<v1::ReportTaskStatusRequest>,
    ) -> Result<Response<v1::ReportTaskStatusResponse>, Status> {
        let peer = request.remote_addr();
        let r = request.into_inner();
        let executor = ExecutorId(r.executor_id);
        self.registered(peer, "ReportTaskStatus", executor)?;
        // Validate the whole batch first: a bad status changes nothing.
        let statuses = r
            .statuses
            .into_iter()
            .map(|s| {
                status_from_proto(s, executor).map_err(|e| Status::invalid_argument(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pending = self
            .cluster
            .pending
            .lock()
            .map_err(|_| Status::internal("pending table poisoned"))?;
        for status in &statuses {
            match pending.get(&status.id) {
                Some(p) if p.executor == executor => {}
                _ => {
                    return Err(Status::not_found(format!(
                        "unknown task {} for {executor}: not running there (finished, cancelled or never launched)",
                        status.id
                    )));
                }
            }
        }
        for status in statuses {
            if let Some(p) = pending.remove(&status.id) {
                let _ = p.reply.send(status);
            }
        }
        Ok(Response::new(v1::ReportTaskStatusResponse {}))
    }
}

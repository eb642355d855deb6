//! Running a job: cut the lineage into stages at shuffle boundaries, run
//! parent stages first, retry failed tasks, commit output, clean up.
//!
//! A stage is the set of nodes reachable from its root without crossing a
//! shuffle; its tasks are one [`PartitionPlan`] tree per partition, with
//! the stage's operators ([`StageSpec::ops`]) shared by index. Shuffle
//! inputs name the exact map-output objects and byte ranges recorded from
//! the parent stage's [`MapStatus`]es.

use crate::context::{Context, JobSummary};
use crate::dataset::{Node, NodeKind, WriterSpec};
use crate::error::DriverError;
use crate::executors::StageMessage;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::ObjectStoreExt;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use riffle_planner::task::{
    MapStatus, OpIndex, PartitionPlan, ShuffleInput, StageSink, StageSpec, TaskOutput, TaskSpec,
    TaskStatus, encode,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// What the last stage of a job does with its partitions.
pub(crate) enum FinalSink {
    /// Return bytes from a `ResultOp` to the driver.
    Result(FnRef),
    /// Write text files under `dir` (a URL) and commit them.
    SaveText { op: FnRef, dir: String },
}

impl Context {
    /// Runs a job computing `node` into `sink`; returns one output per
    /// partition, in partition order.
    pub(crate) fn run_job(
        &self,
        node: &Arc<Node>,
        sink: FinalSink,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        self.with_job(async |job| job.run(node, sink).await)
    }

    /// Runs `body` as a new job: its shuffle output is deleted whatever the
    /// outcome, and its summary is logged and kept for `last_job()`.
    fn with_job<R>(
        &self,
        body: impl AsyncFnOnce(&mut Job<'_>) -> Result<R, DriverError>,
    ) -> Result<R, DriverError> {
        let started = Instant::now();
        let mut job = Job {
            ctx: self,
            id: self.next_job_id(),
            map_outputs: HashMap::new(),
            next_stage: 0,
            summary: JobSummary::default(),
        };
        let result = self.inner.runtime.block_on(async {
            let outcome = body(&mut job).await;
            job.cleanup().await;
            outcome
        });
        job.summary.elapsed = started.elapsed();
        if job.summary.invalid_utf8_lines > 0 {
            tracing::warn!(
                lines = job.summary.invalid_utf8_lines,
                "input lines were not valid UTF-8; invalid bytes were replaced with U+FFFD"
            );
        }
        tracing::info!("{}", job.summary);
        if let Ok(mut last) = self.inner.last_job.lock() {
            *last = job.summary;
        }
        result
    }
}

struct Job<'a> {
    ctx: &'a Context,
    id: JobId,
    /// Map statuses of every finished shuffle, by map partition.
    map_outputs: HashMap<ShuffleId, Vec<MapStatus>>,
    next_stage: u32,
    summary: JobSummary,
}

impl Job<'_> {
    async fn run(
        &mut self,
        node: &Arc<Node>,
        sink: FinalSink,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        self.ensure_parents(node).await?;
        match sink {
            FinalSink::Result(op) => {
                self.run_stage(node, op, |op| StageSink::Result { op })
                    .await
            }
            FinalSink::SaveText { op, dir } => {
                let outputs = {
                    let dir = dir.clone();
                    self.run_stage(node, op, move |op| StageSink::SaveText { op, dir })
                        .await
                };
                match outputs {
                    Ok(outputs) => self.commit_files(&dir, outputs, "").await,
                    Err(e) => {
                        self.abort_files(&dir).await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Runs every shuffle map stage the stage of `node` depends on,
    /// recursively, parents first.
    fn ensure_parents<'b>(
        &'b mut self,
        node: &'b Arc<Node>,
    ) -> futures::future::LocalBoxFuture<'b, Result<(), DriverError>> {
        Box::pin(async move {
            let mut queries = Vec::new();
            sql_sources(node, &mut queries);
            for (stages, shuffle) in queries {
                if !self.map_outputs.contains_key(&shuffle) {
                    // The last stage writes `shuffle` (`SqlFrame::to_dataset`).
                    self.run_sql_stages(stages.clone(), riffle_planner::task::SqlOutput::Result)
                        .await?;
                }
            }
            let mut deps = Vec::new();
            stage_deps(node, &mut deps);
            for (dep, reduce_partitions) in deps {
                if self.map_outputs.contains_key(&dep.shuffle) {
                    continue;
                }
                self.ensure_parents(&dep.parent).await?;
                let writer = match &dep.writer {
                    WriterSpec::Ready(f) => f.clone(),
                    WriterSpec::Sampled {
                        sampler,
                        make,
                        ascending,
                    } => {
                        let samples = self
                            .run_stage(&dep.parent, sampler.clone(), |op| StageSink::Result { op })
                            .await?
                            .into_iter()
                            .map(result_bytes)
                            .collect::<Result<Vec<_>, _>>()?;
                        make(samples, reduce_partitions, *ascending)
                            .map_err(|e| DriverError::Internal(format!("range bounds: {e}")))?
                    }
                };
                let partitions = reduce_partitions as u32;
                let shuffle = dep.shuffle;
                let outputs = self
                    .run_stage(&dep.parent, writer, move |writer| StageSink::Shuffle {
                        shuffle,
                        writer,
                        partitions,
                    })
                    .await?;
                self.map_outputs.insert(dep.shuffle, map_statuses(outputs)?);
            }
            Ok(())
        })
    }

    /// Plans and runs one stage rooted at `node`, whose sink uses `sink_op`.
    async fn run_stage(
        &mut self,
        node: &Arc<Node>,
        sink_op: FnRef,
        sink: impl FnOnce(OpIndex) -> StageSink,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        let stage = StageId(self.next_stage);
        self.next_stage += 1;
        let mut builder = StageBuilder {
            ops: Vec::new(),
            index: HashMap::new(),
            map_outputs: &self.map_outputs,
        };
        let plans = (0..node.partitions)
            .map(|p| builder.plan(node, p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ops = builder.ops;
        ops.push(sink_op);
        let sink = sink((ops.len() - 1) as OpIndex);
        let spec = StageSpec {
            job: self.id,
            stage,
            ops,
            sink,
        };
        self.summary.stages += 1;
        self.summary
            .stage_summaries
            .push(crate::context::StageSummary {
                stage,
                ..Default::default()
            });
        let started = Instant::now();
        let outputs = self.run_tasks(spec, plans).await;
        if let Some(s) = self.summary.stage_summaries.last_mut() {
            s.elapsed = started.elapsed();
        }
        outputs
    }

    /// Runs one task per plan on the executors, retrying failures. New
    /// executors get tasks as soon as they register; with no executor left,
    /// the stage waits for one up to the configured grace period.
    async fn run_tasks(
        &mut self,
        spec: StageSpec,
        plans: Vec<PartitionPlan>,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        let stage = spec.stage;
        let message = StageMessage {
            job: spec.job,
            stage,
            bytes: Arc::new(encode(&spec).map_err(|e| DriverError::Plan(e.to_string()))?),
        };
        let message = &message;
        let backend = &self.ctx.inner.backend;
        let config = &self.ctx.inner.config;
        let mut changes = backend.subscribe();
        let mut queue: VecDeque<(u32, u32)> = (0..plans.len() as u32).map(|p| (p, 0)).collect();
        let mut outputs: Vec<Option<TaskOutput>> = vec![None; plans.len()];
        let mut running: HashMap<ExecutorId, usize> = HashMap::new();
        let mut in_flight = FuturesUnordered::new();
        let mut idle_since: Option<Instant> = None;
        while !queue.is_empty() || !in_flight.is_empty() {
            let executors = backend.executors();
            // Fill every free slot, preferring the least loaded executor.
            while let Some(&(partition, attempt)) = queue.front() {
                let Some(executor) = executors
                    .iter()
                    .filter(|e| running.get(&e.id()).copied().unwrap_or(0) < e.slots())
                    .min_by_key(|e| running.get(&e.id()).copied().unwrap_or(0))
                    .cloned()
                else {
                    break;
                };
                queue.pop_front();
                let id = TaskId {
                    job: self.id,
                    stage,
                    partition,
                    attempt,
                };
                let task = TaskSpec {
                    id,
                    plan: plans[partition as usize].clone(),
                };
                let bytes = encode(&task).map_err(|e| DriverError::Plan(e.to_string()))?;
                *running.entry(executor.id()).or_default() += 1;
                in_flight.push(async move {
                    let status = backend.launch(&executor, message, id, bytes).await;
                    (executor.id(), status)
                });
            }
            if in_flight.is_empty() {
                // Nothing can run: no executor is left. Wait for one to
                // register, for a grace period, then fail with a hint.
                let since = *idle_since.get_or_insert_with(Instant::now);
                let left = config.executor_wait.saturating_sub(since.elapsed());
                let registered = changes
                    .as_mut()
                    .map(|rx| tokio::time::timeout(left, rx.changed()));
                tracing::debug!(%stage, ?left, "no executor: waiting for one");
                match registered {
                    Some(wait) if !left.is_zero() => {
                        let _ = wait.await;
                        continue;
                    }
                    _ => {
                        return Err(DriverError::NoExecutors {
                            waited: config.executor_wait,
                            registered: 0,
                            wanted: 1,
                            hint: format!(
                                "{stage} of {} cannot run; start an executor with `<this program> --executor --driver {}`",
                                self.id,
                                self.ctx.driver_url().unwrap_or("URL")
                            ),
                        });
                    }
                }
            }
            idle_since = None;
            let next = tokio::select! {
                next = in_flight.next() => next,
                // A membership change may bring free slots: fill them.
                _ = membership_changed(&mut changes) => continue,
            };
            let Some((executor, status)) = next else {
                continue;
            };
            if let Some(n) = running.get_mut(&executor) {
                *n = n.saturating_sub(1);
            }
            self.record(&status);
            let TaskId {
                partition, attempt, ..
            } = status.id;
            match status.result {
                Ok(output) => outputs[partition as usize] = Some(output),
                Err(failure) if failure.kind.retryable() && attempt + 1 < config.max_attempts => {
                    tracing::warn!(%stage, partition, attempt, cause = %failure.message, "task failed; retrying");
                    queue.push_back((partition, attempt + 1));
                }
                Err(failure) => {
                    return Err(DriverError::TaskFailed {
                        job: self.id,
                        stage,
                        partition,
                        attempt,
                        executor: status.executor,
                        kind: failure.kind,
                        message: failure.message,
                    });
                }
            }
        }
        outputs
            .into_iter()
            .enumerate()
            .map(|(p, o)| {
                o.ok_or_else(|| {
                    DriverError::Internal(format!("{stage}: partition {p} produced no output"))
                })
            })
            .collect()
    }

    fn record(&mut self, status: &TaskStatus) {
        let m = &status.metrics;
        let s = &mut self.summary;
        s.tasks += 1;
        *s.tasks_per_executor.entry(status.executor).or_default() += 1;
        s.task_time += std::time::Duration::from_micros(m.run_micros);
        s.records_read += m.records_read;
        s.bytes_read += m.bytes_read;
        s.shuffle_bytes_written += m.shuffle_bytes_written;
        s.invalid_utf8_lines += m.invalid_utf8_lines;
        if let Some(stage) = s
            .stage_summaries
            .iter_mut()
            .rev()
            .find(|st| st.stage == status.id.stage)
        {
            stage.tasks += 1;
            stage.task_time += std::time::Duration::from_micros(m.run_micros);
            stage.records_read += m.records_read;
            stage.bytes_read += m.bytes_read;
            stage.shuffle_bytes_read += m.shuffle_bytes_read;
            stage.shuffle_records_written += m.shuffle_records_written;
            stage.shuffle_bytes_written += m.shuffle_bytes_written;
        }
    }

    /// Deletes the job's shuffle output, whatever the outcome.
    async fn cleanup(&mut self) {
        let paths: Vec<String> = self
            .map_outputs
            .values()
            .flatten()
            .map(|status| status.data_path.clone())
            .collect();
        if let Err(e) = self.ctx.inner.shuffle.delete_outputs(&paths).await {
            tracing::warn!(job = %self.id, error = %e, "could not delete shuffle output");
        }
        self.ctx.inner.backend.remove_job(self.id).await;
    }

    /// Moves each partition's file from `_temporary` to `part-NNNNN` plus
    /// `suffix`, then marks the directory complete with `_SUCCESS`.
    async fn commit_files(
        &mut self,
        dir: &str,
        outputs: Vec<TaskOutput>,
        suffix: &str,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        let (store, base) = self.output_store(dir)?;
        let storage = |path: &str, e: object_store::Error| DriverError::Storage {
            path: path.to_string(),
            message: e.to_string(),
        };
        for (p, output) in outputs.iter().enumerate() {
            let TaskOutput::Written { path } = output else {
                return Err(DriverError::Internal(
                    "a writing task returned no file".into(),
                ));
            };
            let url = url::Url::parse(path).map_err(|e| DriverError::Internal(e.to_string()))?;
            let from = object_store::path::Path::from_url_path(url.path())
                .map_err(|e| DriverError::Internal(e.to_string()))?;
            let to = base.clone().join(format!("part-{p:05}{suffix}"));
            store
                .rename(&from, &to)
                .await
                .map_err(|e| storage(path, e))?;
        }
        let success = base.clone().join("_SUCCESS");
        store
            .put(&success, object_store::PutPayload::default())
            .await
            .map_err(|e| storage(dir, e))?;
        self.abort_files(dir).await;
        Ok(outputs)
    }

    /// Removes the job's uncommitted files under `dir/_temporary`.
    async fn abort_files(&mut self, dir: &str) {
        let Ok((store, base)) = self.output_store(dir) else {
            return;
        };
        let temp = base.join("_temporary");
        let listed: Vec<_> = store.list(Some(&temp)).collect().await;
        for meta in listed.into_iter().flatten() {
            let _ = store.delete(&meta.location).await;
        }
        // The local store leaves empty directories behind; remove them so no
        // trace of the attempt stays visible.
        if let Ok(url) = url::Url::parse(dir)
            && url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            let _ = std::fs::remove_dir_all(path.join("_temporary"));
        }
    }

    fn output_store(
        &self,
        dir: &str,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path), DriverError> {
        let url = url::Url::parse(dir).map_err(|e| DriverError::Internal(e.to_string()))?;
        self.ctx
            .inner
            .stores
            .resolve(&url)
            .map_err(|e| DriverError::Storage {
                path: dir.to_string(),
                message: e.to_string(),
            })
    }
}

/// Resolves when the membership changes; never, without membership.
async fn membership_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = changes
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// The bytes of a result task.
pub(crate) fn result_bytes(output: TaskOutput) -> Result<Vec<u8>, DriverError> {
    match output {
        TaskOutput::Result(bytes) => Ok(bytes),
        _ => Err(DriverError::Internal(
            "result task returned no bytes".into(),
        )),
    }
}

/// The shuffle dependencies that bound the stage of `node`, with the number
/// of reduce partitions of each.
fn stage_deps<'a>(node: &'a Arc<Node>, out: &mut Vec<(&'a crate::dataset::ShuffleDep, usize)>) {
    match &node.kind {
        NodeKind::Parallelize { .. }
        | NodeKind::TextFile { .. }
        | NodeKind::SqlResult { .. }
        | NodeKind::Invalid { .. } => {}
        NodeKind::Narrow { parent, .. } | NodeKind::Coalesce { parent, .. } => {
            stage_deps(parent, out)
        }
        NodeKind::Union { parents } => parents.iter().for_each(|p| stage_deps(p, out)),
        NodeKind::Shuffled { deps, .. } => out.extend(deps.iter().map(|d| (d, node.partitions))),
    }
}

/// The SQL queries whose rows the stage of `node` reads, with the shuffle
/// each query's last stage writes.
type SqlSource<'a> = (&'a Vec<riffle_sql::stages::SqlStage>, ShuffleId);

fn sql_sources<'a>(node: &'a Arc<Node>, out: &mut Vec<SqlSource<'a>>) {
    match &node.kind {
        NodeKind::SqlResult {
            stages, shuffle, ..
        } => out.push((stages, *shuffle)),
        NodeKind::Narrow { parent, .. } | NodeKind::Coalesce { parent, .. } => {
            sql_sources(parent, out)
        }
        NodeKind::Union { parents } => parents.iter().for_each(|p| sql_sources(p, out)),
        NodeKind::Parallelize { .. }
        | NodeKind::TextFile { .. }
        | NodeKind::Shuffled { .. }
        | NodeKind::Invalid { .. } => {}
    }
}

/// Builds the partition plans of one stage, collecting its operators.
struct StageBuilder<'a> {
    ops: Vec<FnRef>,
    /// Operator index of each node already seen (by node address).
    index: HashMap<*const Node, OpIndex>,
    map_outputs: &'a HashMap<ShuffleId, Vec<MapStatus>>,
}

impl StageBuilder<'_> {
    fn op(&mut self, node: &Arc<Node>, f: &FnRef) -> OpIndex {
        *self.index.entry(Arc::as_ptr(node)).or_insert_with(|| {
            self.ops.push(f.clone());
            (self.ops.len() - 1) as OpIndex
        })
    }

    fn plan(&mut self, node: &Arc<Node>, p: usize) -> Result<PartitionPlan, DriverError> {
        Ok(match &node.kind {
            NodeKind::Invalid { error } => return Err(DriverError::Plan(error.clone())),
            NodeKind::Parallelize { op, slices } => PartitionPlan::Parallelize {
                op: self.op(node, op),
                data: slices[p].clone(),
            },
            NodeKind::TextFile { splits } => PartitionPlan::TextFile(splits[p].clone()),
            NodeKind::SqlResult {
                shuffle, decode, ..
            } => {
                let status = self
                    .map_outputs
                    .get(shuffle)
                    .and_then(|statuses| statuses.get(p))
                    .ok_or_else(|| {
                        DriverError::Internal(format!(
                            "{shuffle} partition {p} was not computed before its reader"
                        ))
                    })?;
                let blocks = status.block_location(p as u32, 0).into_iter().collect();
                PartitionPlan::ArrowBlocks {
                    op: self.op(node, decode),
                    shuffle: *shuffle,
                    blocks,
                }
            }
            NodeKind::Narrow { op, parent } => {
                let input = Box::new(self.plan(parent, p)?);
                PartitionPlan::Narrow {
                    op: self.op(node, op),
                    input,
                }
            }
            NodeKind::Union { parents } => {
                let mut offset = p;
                for parent in parents {
                    if offset < parent.partitions {
                        return self.plan(parent, offset);
                    }
                    offset -= parent.partitions;
                }
                return Err(DriverError::Internal(format!("union has no partition {p}")));
            }
            NodeKind::Coalesce { op, parent, groups } => {
                let inputs = groups[p]
                    .clone()
                    .map(|q| self.plan(parent, q))
                    .collect::<Result<Vec<_>, _>>()?;
                PartitionPlan::Concat {
                    op: self.op(node, op),
                    inputs,
                }
            }
            NodeKind::Shuffled { reducer, deps } => {
                let mut inputs = Vec::with_capacity(deps.len());
                for dep in deps {
                    let statuses = self.map_outputs.get(&dep.shuffle).ok_or_else(|| {
                        DriverError::Internal(format!(
                            "{} was not computed before its reader",
                            dep.shuffle
                        ))
                    })?;
                    let blocks = statuses
                        .iter()
                        .enumerate()
                        .filter_map(|(m, status)| status.block_location(m as u32, p))
                        .collect();
                    inputs.push(ShuffleInput {
                        shuffle: dep.shuffle,
                        partition: p as u32,
                        blocks,
                    });
                }
                PartitionPlan::Shuffled {
                    op: self.op(node, reducer),
                    inputs,
                }
            }
        })
    }
}

impl Context {
    /// Runs the stages of a distributed SQL plan (producers first) and
    /// returns the result stage's batches, in partition order.
    pub(crate) fn run_sql(
        &self,
        stages: Vec<riffle_sql::stages::SqlStage>,
    ) -> Result<Vec<arrow_array::RecordBatch>, DriverError> {
        let outputs = self.with_job(async |job| {
            job.run_sql_stages(stages, riffle_planner::task::SqlOutput::Result)
                .await
        })?;
        let mut batches = Vec::new();
        for output in outputs {
            let bytes = result_bytes(output)?;
            if bytes.is_empty() {
                continue;
            }
            let decoded =
                riffle_shuffle::reader::decode_batches("result", bytes::Bytes::from(bytes))
                    .map_err(|e| DriverError::Internal(e.to_string()))?;
            batches.extend(decoded);
        }
        Ok(batches)
    }

    /// Runs the stages of a distributed SQL plan with each result task
    /// writing one file in `format` under `dir` (a URL); the files appear
    /// as `part-NNNNN.<ext>` only once every task has succeeded.
    pub(crate) fn write_sql(
        &self,
        stages: Vec<riffle_sql::stages::SqlStage>,
        dir: &str,
        format: riffle_planner::task::FileFormat,
    ) -> Result<(), DriverError> {
        self.with_job(async |job| {
            let output = riffle_planner::task::SqlOutput::Files {
                dir: dir.to_string(),
                format,
            };
            match job.run_sql_stages(stages, output).await {
                Ok(outputs) => job
                    .commit_files(dir, outputs, format.extension())
                    .await
                    .map(|_| ()),
                Err(e) => {
                    job.abort_files(dir).await;
                    Err(e)
                }
            }
        })
    }
}

impl Job<'_> {
    /// Runs SQL stages, producers first, the result stage (the one that
    /// writes no shuffle) producing `result`; returns its task outputs.
    async fn run_sql_stages(
        &mut self,
        stages: Vec<riffle_sql::stages::SqlStage>,
        result: riffle_planner::task::SqlOutput,
    ) -> Result<Vec<TaskOutput>, DriverError> {
        use riffle_planner::task::SqlOutput;
        let plan_error =
            |e: riffle_sql::datafusion::error::DataFusionError| DriverError::Plan(e.to_string());
        let mut results = Vec::new();
        for stage in stages {
            let tasks = stage.tasks();
            let plan = self.write_dataset_scans(stage.plan).await?;
            let plan = riffle_sql::stages::resolve(plan, &self.map_outputs).map_err(plan_error)?;
            let bytes = riffle_sql::codec::encode_plan(plan).map_err(plan_error)?;
            let output = match stage.shuffle {
                Some(shuffle) => SqlOutput::Shuffle { shuffle },
                None => result.clone(),
            };
            let id = StageId(self.next_stage);
            self.next_stage += 1;
            self.summary.stages += 1;
            self.summary
                .stage_summaries
                .push(crate::context::StageSummary {
                    stage: id,
                    ..Default::default()
                });
            let spec = StageSpec {
                job: self.id,
                stage: id,
                ops: Vec::new(),
                sink: StageSink::Sql {
                    plan: bytes,
                    output,
                },
            };
            let plans = (0..tasks as u32)
                .map(|partition| PartitionPlan::Sql { partition })
                .collect();
            let started = Instant::now();
            let outputs = self.run_tasks(spec, plans).await?;
            if let Some(s) = self.summary.stage_summaries.last_mut() {
                s.elapsed = started.elapsed();
            }
            match stage.shuffle {
                Some(shuffle) => {
                    self.map_outputs.insert(shuffle, map_statuses(outputs)?);
                }
                None => results = outputs,
            }
        }
        Ok(results)
    }

    /// Writes the rows of every Dataset-table scan in `plan` (running the
    /// dataset's stages with an Arrow sink, unless this job already did)
    /// and puts shuffle reads of them in the scans' places.
    async fn write_dataset_scans(
        &mut self,
        plan: Arc<dyn riffle_sql::datafusion::physical_plan::ExecutionPlan>,
    ) -> Result<Arc<dyn riffle_sql::datafusion::physical_plan::ExecutionPlan>, DriverError> {
        use crate::sql_dataset::DatasetScanExec;
        use riffle_sql::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
        let mut scans = Vec::new();
        plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<DatasetScanExec>() {
                scans.push((scan.shuffle, scan.node.clone(), scan.writer.clone()));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| DriverError::Plan(e.to_string()))?;
        for (shuffle, node, writer) in scans {
            if self.map_outputs.contains_key(&shuffle) {
                continue;
            }
            self.ensure_parents(&node).await?;
            let outputs = self
                .run_stage(&node, writer, move |op| StageSink::Arrow { shuffle, op })
                .await?;
            self.map_outputs.insert(shuffle, map_statuses(outputs)?);
        }
        plan.transform_up(|node| {
            Ok(match node.downcast_ref::<DatasetScanExec>() {
                Some(scan) => Transformed::yes(Arc::new(scan.reader()) as _),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
        .map_err(|e| DriverError::Plan(e.to_string()))
    }
}

/// The map statuses of a finished map stage, in partition order.
fn map_statuses(outputs: Vec<TaskOutput>) -> Result<Vec<MapStatus>, DriverError> {
    outputs
        .into_iter()
        .map(|o| match o {
            TaskOutput::Shuffle(status) => Ok(status),
            _ => Err(DriverError::Internal(
                "map task returned no map status".into(),
            )),
        })
        .collect()
}

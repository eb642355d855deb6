//! Running SQL fragments: the DataFusion session of a process (driver or
//! executor) and one partition of a fragment as a task.

use crate::exec::ShuffleWriterExec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use riffle_planner::task::FileFormat;
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use riffle_shuffle::writer::{EncodedMapOutput, MapOutputBuilder};
use std::sync::Arc;
use url::Url;

/// The shuffle store, as a session-config extension that
/// `ShuffleReaderExec` finds at run time.
#[derive(Debug)]
pub struct ShuffleContext {
    /// Where shuffle objects are.
    pub store: ShuffleStore,
}

/// DataFusion's object-store lookups, answered by Riffle's store table
/// (so `s3://` URLs work the same for Dataset jobs and SQL), with hidden
/// files left out of listings ([`crate::input_store`]).
#[derive(Debug)]
struct Stores(ObjectStores);

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.0.register(url, store);
        None
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.0
            .resolve(url)
            .map(|(store, _)| Arc::new(crate::input_store::InputStore(store)) as _)
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// A DataFusion session reading through `stores` and shuffling through
/// `shuffle`, planning `target_partitions` partitions per exchange.
pub fn new_session(
    target_partitions: usize,
    stores: ObjectStores,
    shuffle: ShuffleStore,
) -> Result<SessionContext> {
    new_session_with(target_partitions, stores, shuffle, RuntimeEnvBuilder::new())
}

/// [`new_session`] on an executor: its operators draw from `runtime`'s
/// memory pool and spill into its disk manager (the executor's, shared with
/// its Dataset operators). The object stores are set here.
pub fn new_session_with(
    target_partitions: usize,
    stores: ObjectStores,
    shuffle: ShuffleStore,
    runtime: RuntimeEnvBuilder,
) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(target_partitions.max(1))
        .with_information_schema(true)
        // Dynamic filters are shared state between the partitions of a
        // join (the probe side waits for every build partition): with
        // partitions running as separate tasks, possibly in separate
        // processes, that wait never ends. Turn them all off.
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
        .set_bool(
            "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
            false,
        )
        .set_bool(
            "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
            false,
        )
        .set_bool(
            "datafusion.optimizer.enable_aggregate_dynamic_filter_pushdown",
            false,
        )
        // An exchange here is a shuffle through the store, not a channel:
        // a round-robin split of a small input only for parallelism costs
        // a stage of its own, and a partitioned join shuffles both sides
        // where broadcasting the smaller one shuffles neither. So no
        // round-robin exchanges, and hash joins broadcast build sides up
        // to 10 MB (Spark's default broadcast threshold) or a million rows.
        .set_bool("datafusion.optimizer.enable_round_robin_repartition", false)
        .set_u64(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            10 << 20,
        )
        .set_u64(
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            1 << 20,
        )
        // Each partition must read only its own files: sibling
        // partitions run as other tasks and never share a work queue.
        .set_bool(
            "datafusion.execution.enable_file_stream_work_stealing",
            false,
        )
        .with_extension(Arc::new(ShuffleContext { store: shuffle }));
    let runtime = runtime
        .with_object_store_registry(Arc::new(Stores(stores)))
        .build_arc()?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        // Small join sides are broadcast (CollectLeft, one build per task);
        // joins that cannot be split that way are rewritten.
        .with_physical_optimizer_rules(crate::joins::optimizer_rules())
        // Where DataFusion itself answers wrongly (`crate::rewrite`).
        .with_analyzer_rule(Arc::new(crate::rewrite::SetOperationsAll))
        .with_analyzer_rule(Arc::new(crate::rewrite::NotInSubquery))
        // A form of window FILTER that datafusion-proto can carry.
        .with_analyzer_rule(Arc::new(crate::window_filter::WindowFilterAsCase))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// Where a map task's encoded output spills when the executor's pool will
/// not hold it, and where it counts what it spilled.
pub struct SpillTo {
    /// The executor's pool and spill directory.
    pub memory: riffle_planner::memory::SharedMemory,
    /// The task's counters.
    pub counters: Arc<riffle_planner::pipeline::Counters>,
}

/// What one partition of a fragment produced, encoded as Arrow IPC.
pub enum FragmentOutput {
    /// A map task: one stream per reduce partition.
    Shuffle(EncodedMapOutput),
    /// A result task: one stream of its batches.
    Result(EncodedMapOutput),
}

/// Runs partition `partition` of `plan` and returns its rows as one file
/// in `format` (written as the batches come, so only the encoded file is
/// held).
pub async fn write_fragment(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    ctx: &SessionContext,
    format: FileFormat,
) -> Result<Vec<u8>> {
    let mut stream = plan.execute(partition, ctx.task_ctx())?;
    match format {
        FileFormat::Parquet => {
            let mut writer =
                datafusion::parquet::arrow::ArrowWriter::try_new(Vec::new(), plan.schema(), None)?;
            while let Some(batch) = stream.next().await {
                writer.write(&batch?)?;
            }
            Ok(writer.into_inner()?)
        }
        FileFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            let mut rows = 0;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            if rows == 0 {
                // The header alone, so that every part file has one.
                writer.write(&datafusion::arrow::array::RecordBatch::new_empty(
                    plan.schema(),
                ))?;
            }
            Ok(writer.into_inner())
        }
    }
}

/// Runs partition `partition` of `plan` to completion, encoding its output
/// as it is produced.
pub async fn run_fragment(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    ctx: &SessionContext,
    spill: Option<SpillTo>,
) -> Result<FragmentOutput> {
    let task_ctx = ctx.task_ctx();
    let encode_error = |e: riffle_shuffle::ShuffleError| DataFusionError::External(Box::new(e));
    if let Some(writer) = plan.downcast_ref::<ShuffleWriterExec>() {
        let input = writer.input().clone();
        let compression = task_ctx
            .session_config()
            .get_extension::<ShuffleContext>()
            .map_or(riffle_shuffle::ShuffleCompression::Lz4, |s| {
                s.store.compression
            });
        let mut output =
            MapOutputBuilder::new(input.schema(), writer.output_partitions(), compression)
                .map_err(encode_error)?;
        if let Some(SpillTo { memory, counters }) = spill {
            output = output.with_spilling(memory, counters);
        }
        let mut stream = input.execute(partition, task_ctx)?;
        match writer.partitioning() {
            Partitioning::UnknownPartitioning(_) => {
                while let Some(batch) = stream.next().await {
                    output.push(0, batch?).map_err(encode_error)?;
                }
            }
            partitioning => {
                let inputs = input.output_partitioning().partition_count();
                let mut partitioner = BatchPartitioner::try_new(
                    partitioning.clone(),
                    Time::new(),
                    partition,
                    inputs,
                )?;
                while let Some(batch) = stream.next().await {
                    for piece in partitioner.partition_iter(batch?)? {
                        let (p, piece) = piece?;
                        output.push(p, piece).map_err(encode_error)?;
                    }
                }
            }
        }
        return Ok(FragmentOutput::Shuffle(
            output.finish().map_err(encode_error)?,
        ));
    }
    // Results travel to the driver, over the network in a cluster.
    let mut output =
        MapOutputBuilder::new(plan.schema(), 1, riffle_shuffle::ShuffleCompression::Lz4)
            .map_err(encode_error)?;
    let mut stream = plan.execute(partition, task_ctx)?;
    while let Some(batch) = stream.next().await {
        output.push(0, batch?).map_err(encode_error)?;
    }
    Ok(FragmentOutput::Result(
        output.finish().map_err(encode_error)?,
    ))
}

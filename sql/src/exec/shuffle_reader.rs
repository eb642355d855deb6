//! The leaf of a consuming stage.

use crate::engine::ShuffleContext;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use riffle_planner::ids::ShuffleId;
use riffle_planner::task::{BlockLocation, MapStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a reader's partitions map onto the blocks of its shuffle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderLayout {
    /// Partition `r` reads reduce partition `r` of every map task.
    ByReducePartition,
    /// Partition `m` reads all that map task `m` wrote (to reduce partition
    /// 0): the separate sorted runs a merge needs.
    PerMapTask,
}

/// Reads one shuffle. Created unresolved by the stage splitter; the driver
/// fills in the exact block locations ([`ShuffleReaderExec::resolve`])
/// before the consuming stage runs.
#[derive(Debug)]
pub struct ShuffleReaderExec {
    shuffle: ShuffleId,
    schema: SchemaRef,
    layout: ReaderLayout,
    /// Blocks of each output partition (empty lists until resolved).
    partitions: Vec<Vec<BlockLocation>>,
    /// The hash partitioning its shuffle was written with, declared so
    /// that the plan above keeps what it relied on when the exchange was
    /// cut out (a union of two aggregates interleaves hash-partitioned
    /// inputs); `None` for gathers and round-robin exchanges.
    hash: Option<Partitioning>,
    cache: Arc<PlanProperties>,
}

impl ShuffleReaderExec {
    /// A reader of `shuffle` with `partitions` partitions, not resolved yet.
    pub fn unresolved(
        shuffle: ShuffleId,
        schema: SchemaRef,
        layout: ReaderLayout,
        partitions: usize,
    ) -> Self {
        Self::with_blocks(shuffle, schema, layout, vec![Vec::new(); partitions])
    }

    /// A reader with known block locations.
    pub fn with_blocks(
        shuffle: ShuffleId,
        schema: SchemaRef,
        layout: ReaderLayout,
        partitions: Vec<Vec<BlockLocation>>,
    ) -> Self {
        let cache = super::properties(schema.clone(), partitions.len());
        ShuffleReaderExec {
            shuffle,
            schema,
            layout,
            partitions,
            hash: None,
            cache,
        }
    }

    /// This reader declaring `hash` (a `Partitioning::Hash` over as many
    /// partitions as it reads) as its output partitioning; anything else
    /// leaves it as it was.
    pub fn hash_partitioned(mut self, hash: Option<Partitioning>) -> Self {
        if let Some(Partitioning::Hash(_, n)) = &hash
            && *n == self.partitions.len()
            && self.layout == ReaderLayout::ByReducePartition
        {
            let mut properties = (*self.cache).clone();
            properties.partitioning = hash.clone().unwrap_or(properties.partitioning);
            self.cache = Arc::new(properties);
            self.hash = hash;
        }
        self
    }

    /// This reader declaring `equivalences` (over its own schema): what
    /// holds of the rows it delivers, such as columns a filter below made
    /// constant (`WHERE a = 1`), which the plan above may have been
    /// optimized to rely on (a window partitioned by `a` needs no sort).
    /// The caller makes them true of the reader's partitions: orderings
    /// and per-partition constants do not survive a hash shuffle.
    pub fn with_equivalences(mut self, equivalences: EquivalenceProperties) -> Self {
        let mut properties = (*self.cache).clone();
        properties.eq_properties = equivalences;
        self.cache = Arc::new(properties);
        self
    }

    /// What it declares of its rows ([`ShuffleReaderExec::with_equivalences`]).
    pub fn equivalences(&self) -> &EquivalenceProperties {
        &self.cache.eq_properties
    }

    /// The hash partitioning it declares, if any.
    pub fn hash(&self) -> Option<&Partitioning> {
        self.hash.as_ref()
    }

    /// The shuffle read.
    pub fn shuffle(&self) -> ShuffleId {
        self.shuffle
    }

    /// The partition layout.
    pub fn layout(&self) -> ReaderLayout {
        self.layout
    }

    /// Block locations per partition.
    pub fn blocks(&self) -> &[Vec<BlockLocation>] {
        &self.partitions
    }

    /// This reader with the block locations of the finished map tasks.
    pub fn resolve(&self, statuses: &[MapStatus]) -> ShuffleReaderExec {
        let partitions = match self.layout {
            ReaderLayout::ByReducePartition => (0..self.partitions.len())
                .map(|r| {
                    statuses
                        .iter()
                        .enumerate()
                        .filter_map(|(m, s)| s.block_location(m as u32, r))
                        .collect()
                })
                .collect(),
            ReaderLayout::PerMapTask => statuses
                .iter()
                .enumerate()
                .map(|(m, s)| s.block_location(m as u32, 0).into_iter().collect())
                .collect(),
        };
        Self::with_blocks(self.shuffle, self.schema.clone(), self.layout, partitions)
            .hash_partitioned(self.hash.clone())
            .with_equivalences(self.equivalences().clone())
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layout = match self.layout {
            ReaderLayout::ByReducePartition => "by reduce partition",
            ReaderLayout::PerMapTask => "per map task",
        };
        write!(
            f,
            "ShuffleReaderExec: {}, {} partitions ({layout})",
            self.shuffle,
            self.partitions.len()
        )
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &str {
        "ShuffleReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let blocks = self.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("{} has no partition {partition}", self.shuffle))
        })?;
        let store = context
            .session_config()
            .get_extension::<ShuffleContext>()
            .ok_or_else(|| DataFusionError::Internal("no shuffle store in this session".into()))?
            .store
            .clone();
        let shuffle = self.shuffle;
        // Blocks are fetched with bounded concurrency and bytes in flight,
        // and decoded a batch at a time as they are read (large ones
        // fetched a piece at a time); a missing or damaged block is a fetch
        // failure naming its map output, carried through DataFusion to the
        // task's status.
        let stream = riffle_shuffle::reader::fetch_batches(
            &store,
            blocks,
            8,
            riffle_shuffle::reader::MAX_BYTES_IN_FLIGHT,
        )
        .map(move |batch| {
            batch
                .map_err(|e| DataFusionError::External(Box::new((*e).into_pipeline_error(shuffle))))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

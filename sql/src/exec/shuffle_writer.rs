//! The root of a producing stage.

use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use std::sync::Arc;

/// Splits each input partition into `partitioning`'s output partitions and
/// writes them as one shuffle object per task. The splitting and writing
/// are done by the executor (`crate::engine`); `execute` passes the input
/// through, so the node also runs unchanged in one process.
///
/// `Partitioning::UnknownPartitioning(1)` sends everything to partition 0
/// (the input of a merge or coalesce).
#[derive(Debug)]
pub struct ShuffleWriterExec {
    input: Arc<dyn ExecutionPlan>,
    partitioning: Partitioning,
    cache: Arc<PlanProperties>,
}

impl ShuffleWriterExec {
    /// A writer of `input` with `partitioning`.
    pub fn new(input: Arc<dyn ExecutionPlan>, partitioning: Partitioning) -> Self {
        let cache = super::properties(
            input.schema(),
            input.output_partitioning().partition_count(),
        );
        ShuffleWriterExec {
            input,
            partitioning,
            cache,
        }
    }

    /// The plan whose partitions are split.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// How rows are assigned to output partitions.
    pub fn partitioning(&self) -> &Partitioning {
        &self.partitioning
    }

    /// Number of output (reduce) partitions.
    pub fn output_partitions(&self) -> usize {
        self.partitioning.partition_count()
    }
}

impl DisplayAs for ShuffleWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShuffleWriterExec: partitioning={}", self.partitioning)
    }
}

impl ExecutionPlan for ShuffleWriterExec {
    fn name(&self) -> &str {
        "ShuffleWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        if let Partitioning::Hash(exprs, _) = &self.partitioning {
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            datafusion::common::DataFusionError::Internal(
                "ShuffleWriterExec needs one child".into(),
            )
        })?;
        Ok(Arc::new(ShuffleWriterExec::new(
            input,
            self.partitioning.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

//! Datasets as SQL tables, and SQL results as datasets.
//!
//! - `ctx.register_dataset(name, &ds)` makes a `Dataset<T>` of structs a
//!   table. The table is as lazy as the dataset: a query that scans it
//!   plans a [`DatasetScanExec`] (the dataset's lineage and a fresh
//!   shuffle id). Before a stage with such a scan runs, the job runs the
//!   dataset's stages with an Arrow sink (`StageSink::Arrow`) that writes
//!   each partition's records as Arrow rows into that shuffle, and the scan
//!   becomes a shuffle read, one table partition per dataset partition.
//! - `frame.to_dataset::<T>()` turns a query into a `Dataset<T>` whose
//!   source runs the query's stages (the result stage writing its rows to
//!   a shuffle instead of returning them) and reads each result partition's
//!   rows as records of `T`.
//!
//! Both ways the rows cross as Arrow columns, converted by serde_arrow in
//! the tasks (`dataset::arrow_rows`).

use crate::context::{Context, ContextInner};
use crate::dataset::arrow_rows::{
    arrow_source_factory, arrow_writer_factory, missing_column, record_fields,
};
use crate::dataset::{Data, Dataset, Node, NodeKind};
use crate::error::DriverError;
use crate::sql::SqlFrame;
use arrow_schema::{Schema, SchemaRef};
use riffle_planner::function::FnRef;
use riffle_planner::ids::ShuffleId;
use riffle_sql::datafusion::catalog::{Session, TableProvider};
use riffle_sql::datafusion::common::tree_node::TreeNodeRecursion;
use riffle_sql::datafusion::common::{DataFusionError, Result};
use riffle_sql::datafusion::datasource::TableType;
use riffle_sql::datafusion::execution::TaskContext;
use riffle_sql::datafusion::logical_expr::Expr;
use riffle_sql::datafusion::physical_expr::PhysicalExpr;
use riffle_sql::datafusion::physical_expr::expressions::Column;
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use riffle_sql::datafusion::physical_plan::Partitioning;
use riffle_sql::datafusion::physical_plan::projection::ProjectionExec;
use riffle_sql::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, PlanProperties, SendableRecordBatchStream,
};
use riffle_sql::exec::{ReaderLayout, ShuffleReaderExec, ShuffleWriterExec};
use riffle_sql::stages::SqlStage;
use std::sync::{Arc, Weak};

/// The scan of a Dataset table in a planned query. It never runs as it
/// is: the driver writes the dataset's rows to `shuffle` and puts a
/// shuffle read in its place ([`DatasetScanExec::reader`]).
#[derive(Debug)]
pub(crate) struct DatasetScanExec {
    /// The shuffle the rows are written to.
    pub(crate) shuffle: ShuffleId,
    /// The dataset's lineage.
    pub(crate) node: Arc<Node>,
    /// Its `ArrowWriteOp`.
    pub(crate) writer: FnRef,
    schema: SchemaRef,
    cache: Arc<PlanProperties>,
}

impl DatasetScanExec {
    /// The shuffle read that takes the scan's place once the rows are written.
    pub(crate) fn reader(&self) -> ShuffleReaderExec {
        ShuffleReaderExec::unresolved(
            self.shuffle,
            self.schema.clone(),
            ReaderLayout::PerMapTask,
            self.node.partitions,
        )
    }
}

/// `plan` as it is shipped: each Dataset table read as the shuffle its
/// parent stage writes ([`DatasetScanExec::reader`]).
pub(crate) fn as_shipped(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use riffle_sql::datafusion::common::tree_node::{Transformed, TreeNode};
    plan.transform_up(|n| {
        Ok(match n.downcast_ref::<DatasetScanExec>() {
            Some(scan) => Transformed::yes(Arc::new(scan.reader()) as _),
            None => Transformed::no(n),
        })
    })
    .map(|t| t.data)
}

impl DisplayAs for DatasetScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DatasetScanExec: {} ({} partitions), rows via {}",
            self.node.label, self.node.partitions, self.shuffle
        )
    }
}

impl ExecutionPlan for DatasetScanExec {
    fn name(&self) -> &str {
        "DatasetScanExec"
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
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Internal(
            "a Dataset table scan is replaced by a shuffle read before its stage runs".into(),
        ))
    }
}

/// A `Dataset<T>` registered as a SQL table.
#[derive(Debug)]
struct DatasetTable {
    /// The context, not kept alive by its own session's tables.
    ctx: Weak<ContextInner>,
    node: Arc<Node>,
    writer: FnRef,
    schema: SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = self.ctx.upgrade().ok_or_else(|| {
            DataFusionError::Plan("the context of this dataset table is gone".into())
        })?;
        let shuffle = Context { inner }.next_shuffle_id();
        let reader: Arc<dyn ExecutionPlan> = Arc::new(DatasetScanExec {
            shuffle,
            node: self.node.clone(),
            writer: self.writer.clone(),
            schema: self.schema.clone(),
            cache: riffle_sql::exec::properties(self.schema.clone(), self.node.partitions),
        });
        let Some(projection) = projection else {
            return Ok(reader);
        };
        let exprs = projection
            .iter()
            .map(|&i| {
                let name = self.schema.field(i).name().clone();
                (Arc::new(Column::new(&name, i)) as _, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(exprs, reader)?))
    }
}

impl Context {
    /// Registers a dataset of structs (or tuples) as the SQL table `name`,
    /// one column per field. The table is lazy: every query over it runs
    /// the dataset's lineage again, as part of the query's job.
    pub fn register_dataset<T: Data>(
        &self,
        name: &str,
        dataset: &Dataset<T>,
    ) -> Result<(), DriverError> {
        let fields = record_fields::<T>().map_err(|message| DriverError::Sql {
            statement: format!("register_dataset({name})"),
            message,
        })?;
        let table = DatasetTable {
            ctx: Arc::downgrade(&self.inner),
            node: dataset.node.clone(),
            writer: FnRef::new(
                arrow_writer_factory::<T>,
                Vec::new(),
                format!("to Arrow rows ({name})"),
            ),
            schema: Arc::new(Schema::new(fields)),
        };
        let session = self.sql_session()?;
        session
            .register_table(name, Arc::new(table))
            .map(|_| ())
            .map_err(|e| DriverError::Sql {
                statement: format!("register_dataset({name})"),
                message: e.to_string(),
            })
    }
}

impl SqlFrame {
    /// The query's rows as a lazy `Dataset<T>`: each field of `T` is read
    /// from the result column of the same name (cast where SQL's type
    /// differs, `Int64` to `u32` say). Fails at once when `T` has a field
    /// the result lacks. The query runs with each action on the dataset.
    pub fn to_dataset<T: Data>(&self) -> Result<Dataset<T>, DriverError> {
        let fields = record_fields::<T>().map_err(|message| self.error(message))?;
        let schema = self.schema();
        for field in &fields {
            if schema.column_with_name(field.name()).is_none() {
                return Err(self.error(missing_column(field.name(), &schema).to_string()));
            }
        }
        let mut stages = self.stages()?;
        let shuffle = self.context().next_shuffle_id();
        let Some(last) = stages.pop() else {
            return Err(DriverError::Internal("a SQL plan without stages".into()));
        };
        let partitions = last.tasks();
        // The result stage writes its rows to a shuffle, one block per task,
        // instead of sending them to the driver.
        stages.push(SqlStage {
            shuffle: Some(shuffle),
            plan: Arc::new(ShuffleWriterExec::new(
                last.plan,
                Partitioning::UnknownPartitioning(1),
            )),
        });
        let node = Node {
            label: format!("sql({})", self.short_statement()),
            partitions,
            kind: NodeKind::SqlResult {
                stages,
                shuffle,
                decode: FnRef::new(arrow_source_factory::<T>, Vec::new(), "from Arrow rows"),
            },
        };
        Ok(Dataset::from_node(self.context().clone(), node))
    }
}

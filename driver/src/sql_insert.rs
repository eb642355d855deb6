//! `INSERT INTO` a table the driver holds: a memory table
//! (`CREATE TABLE t (..)`, `CREATE TABLE t AS ..`), or any table whose
//! sink is not a file sink, keeps its rows in the driver's SQL session,
//! which no executor can reach. The query part of
//! the insert runs on the executors like any query; the driver then appends
//! its result to the table through the table's own sink, so the table's
//! constraints and insert mode (append, overwrite) apply as in DataFusion.
//! Inserts into file tables (CSV, Parquet, JSON) need none of this: their
//! sinks are shipped and the executors write the files.

use arrow_array::RecordBatch;
use riffle_sql::datafusion::datasource::file_format::csv::CsvSink;
use riffle_sql::datafusion::datasource::file_format::json::JsonSink;
use riffle_sql::datafusion::datasource::file_format::parquet::ParquetSink;
use riffle_sql::datafusion::datasource::memory::MemorySourceConfig;
use riffle_sql::datafusion::datasource::sink::DataSinkExec;
use riffle_sql::datafusion::error::Result;
use riffle_sql::datafusion::execution::TaskContext;
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// A plan whose root writes into a table held by the driver: the query to
/// run on the executors, and the write that appends its rows.
pub(crate) struct DriverInsert {
    /// What to insert (the sink's input), run as a distributed query.
    pub(crate) query: Arc<dyn ExecutionPlan>,
    write: Arc<dyn ExecutionPlan>,
}

impl DriverInsert {
    /// `Some` if `plan` inserts into a table whose sink only the driver
    /// can run (anything but the file sinks the codec ships).
    pub(crate) fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<DriverInsert> {
        let node: &dyn std::any::Any = plan.as_ref();
        let sink = node.downcast_ref::<DataSinkExec>()?;
        let target: &dyn std::any::Any = sink.sink();
        if target.is::<CsvSink>() || target.is::<ParquetSink>() || target.is::<JsonSink>() {
            return None;
        }
        Some(DriverInsert {
            query: sink.input().clone(),
            write: plan.clone(),
        })
    }

    /// Appends `rows` (the query's result) to the table; returns the
    /// sink's answer, one batch with the `count` of rows inserted.
    /// Runs on `runtime` from any context (a `JobHandle` is polled
    /// wherever it is awaited).
    pub(crate) fn append(
        &self,
        rows: Vec<RecordBatch>,
        task_ctx: Arc<TaskContext>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Vec<RecordBatch>> {
        let source = MemorySourceConfig::try_new_exec(&[rows], self.query.schema(), None)?;
        let write = riffle_sql::datafusion::physical_plan::replace_children_if_necessary(
            self.write.clone(),
            vec![source],
        )?;
        crate::runtime::block_on(
            runtime,
            riffle_sql::datafusion::physical_plan::collect(write, task_ctx),
        )
    }
}

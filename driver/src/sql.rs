//! SQL on the driver: `ctx.sql(..)` returns a lazy [`SqlFrame`]; its
//! actions plan with DataFusion, cut the plan into stages and run them on
//! the executors like any other job.

use crate::context::Context;
use crate::error::DriverError;
use arrow_array::RecordBatch;
use riffle_sql::datafusion::dataframe::DataFrame;
use riffle_sql::datafusion::error::DataFusionError;
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use riffle_sql::datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext,
};
use std::sync::Arc;

/// The result of `ctx.sql(..)`: a query that has been planned but not run.
#[derive(Clone)]
pub struct SqlFrame {
    ctx: Context,
    statement: String,
    frame: DataFrame,
}

fn sql_error(statement: &str, e: DataFusionError) -> DriverError {
    DriverError::Sql {
        statement: statement.trim().chars().take(200).collect(),
        message: e.to_string(),
    }
}

impl Context {
    /// The DataFusion session of this driver (tables, configuration).
    pub fn sql_session(&self) -> Result<&SessionContext, DriverError> {
        if let Some(s) = self.inner.sql.get() {
            return Ok(s);
        }
        // One partition per slot in every exchange, at least two so that
        // plans always have real exchanges to distribute.
        let partitions = self.slots().max(2);
        let session = riffle_sql::engine::new_session(
            partitions,
            self.inner.stores.clone(),
            self.inner.shuffle.clone(),
        )
        .map_err(|e| DriverError::Config(format!("cannot start the SQL session: {e}")))?;
        Ok(self.inner.sql.get_or_init(|| session))
    }

    /// Plans a SQL statement. DDL (`CREATE EXTERNAL TABLE`, `DROP TABLE`)
    /// takes effect at once; queries run when an action is called.
    pub fn sql(&self, statement: &str) -> Result<SqlFrame, DriverError> {
        let session = self.sql_session()?;
        let frame = self
            .inner
            .runtime
            .block_on(session.sql(statement))
            .map_err(|e| sql_error(statement, e))?;
        Ok(SqlFrame {
            ctx: self.clone(),
            statement: statement.to_string(),
            frame,
        })
    }

    /// Registers Parquet files (a file, directory, glob or URL) as a table.
    pub fn register_parquet(&self, name: &str, path: &str) -> Result<(), DriverError> {
        let session = self.sql_session()?;
        let url = table_url(path)?;
        self.inner
            .runtime
            .block_on(session.register_parquet(name, &url, ParquetReadOptions::default()))
            .map_err(|e| sql_error(&format!("register_parquet({name}, {path})"), e))
    }

    /// Registers CSV files with a header line as a table.
    pub fn register_csv(&self, name: &str, path: &str) -> Result<(), DriverError> {
        let session = self.sql_session()?;
        let url = table_url(path)?;
        self.inner
            .runtime
            .block_on(session.register_csv(name, &url, CsvReadOptions::new()))
            .map_err(|e| sql_error(&format!("register_csv({name}, {path})"), e))
    }

    /// Registers newline-delimited JSON files as a table.
    pub fn register_json(&self, name: &str, path: &str) -> Result<(), DriverError> {
        let session = self.sql_session()?;
        let url = table_url(path)?;
        self.inner
            .runtime
            .block_on(session.register_json(name, &url, JsonReadOptions::default()))
            .map_err(|e| sql_error(&format!("register_json({name}, {path})"), e))
    }
}

/// A path as the URL DataFusion expects (local paths become absolute).
fn table_url(path: &str) -> Result<String, DriverError> {
    if path.contains("://") {
        return Ok(path.to_string());
    }
    let absolute = std::path::absolute(path).map_err(|e| DriverError::Input {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let mut text = absolute.display().to_string();
    if path.ends_with('/') && !text.ends_with('/') {
        text.push('/');
    }
    Ok(text)
}

impl SqlFrame {
    fn physical_plan(&self) -> Result<Arc<dyn ExecutionPlan>, DriverError> {
        self.ctx
            .inner
            .runtime
            .block_on(self.frame.clone().create_physical_plan())
            .map_err(|e| sql_error(&self.statement, e))
    }

    fn stages(&self) -> Result<Vec<riffle_sql::stages::SqlStage>, DriverError> {
        let plan = self.physical_plan()?;
        let ctx = self.ctx.clone();
        riffle_sql::stages::split(plan, &mut || ctx.next_shuffle_id())
            .map_err(|e| sql_error(&self.statement, e))
    }

    /// Runs the query on the executors and returns its batches.
    pub fn collect(&self) -> Result<Vec<RecordBatch>, DriverError> {
        self.ctx.run_sql(self.stages()?)
    }

    /// Number of result rows.
    pub fn count(&self) -> Result<usize, DriverError> {
        Ok(self.collect()?.iter().map(RecordBatch::num_rows).sum())
    }

    /// The result as a text table.
    pub fn to_table_string(&self) -> Result<String, DriverError> {
        let batches = self.collect()?;
        riffle_sql::datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .map(|t| t.to_string())
            .map_err(|e| DriverError::Internal(e.to_string()))
    }

    /// Prints the result as a table.
    pub fn show(&self) -> Result<(), DriverError> {
        println!("{}", self.to_table_string()?);
        Ok(())
    }

    /// The distributed plan: its stages, their task counts and fragments.
    pub fn explain(&self) -> Result<String, DriverError> {
        Ok(riffle_sql::stages::display(&self.stages()?))
    }

    /// The output schema.
    pub fn schema(&self) -> arrow_schema::SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }
}

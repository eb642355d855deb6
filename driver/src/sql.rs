//! SQL on the driver: `ctx.sql(..)` returns a lazy [`SqlFrame`]; its
//! actions plan with DataFusion, cut the plan into stages and run them on
//! the executors like any other job.

use crate::context::Context;
use crate::error::DriverError;
use arrow_array::RecordBatch;
use riffle_planner::task::FileFormat;
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

    /// Registers text files (plain or `.gz`) as a table with one `line`
    /// column per line of text.
    pub fn register_text(&self, name: &str, path: &str) -> Result<(), DriverError> {
        let statement = format!(
            "CREATE EXTERNAL TABLE {name} (line STRING) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' WITH SERDEPROPERTIES ('input.regex' = '(.*)') LOCATION '{}'",
            path.replace('\'', "''")
        );
        self.run_statement(&statement).map(|_| ())
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

/// `EXPLAIN <query>` without VERBOSE/ANALYZE/FORMAT: shown as Riffle's
/// distributed plan (stages and fragments); other forms go to DataFusion.
fn is_plain_explain(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(|w| w.to_ascii_uppercase());
    words.next().as_deref() == Some("EXPLAIN")
        && !matches!(
            words.next().as_deref(),
            Some("VERBOSE" | "ANALYZE" | "FORMAT" | "PLAN")
        )
}

/// A path as the URL DataFusion expects (local paths become absolute).
fn table_url(path: &str) -> Result<String, DriverError> {
    if path.contains("://") {
        return Ok(path.to_string());
    }
    let absolute = std::path::absolute(path).map_err(|e| DriverError::Input {
        path: path.to_string(),
        message: "cannot make the path absolute".into(),
        source: Some(Box::new(e)),
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

    /// The context the query runs in.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The statement, shortened for labels and messages.
    pub(crate) fn short_statement(&self) -> String {
        let text: String = self
            .statement
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match text.char_indices().nth(60) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text,
        }
    }

    /// An error about this statement.
    pub(crate) fn error(&self, message: String) -> DriverError {
        DriverError::Sql {
            statement: self.statement.trim().chars().take(200).collect(),
            message,
        }
    }

    /// The query's stages, each checked to reach the executors intact
    /// ([`riffle_sql::codec::check_round_trip`]).
    pub(crate) fn stages(&self) -> Result<Vec<riffle_sql::stages::SqlStage>, DriverError> {
        self.stages_of(self.physical_plan()?)
            .map_err(|e| sql_error(&self.statement, e))
    }

    fn stages_of(
        &self,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<Vec<riffle_sql::stages::SqlStage>, DataFusionError> {
        let ctx = self.ctx.clone();
        let stages = riffle_sql::stages::split(plan, &mut || ctx.next_shuffle_id())?;
        let task_ctx = self
            .ctx
            .sql_session()
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .task_ctx();
        for stage in &stages {
            // Dataset tables become shuffle reads when the stage runs.
            let shipped = crate::sql_dataset::as_shipped(stage.plan.clone())?;
            riffle_sql::codec::check_round_trip(&shipped, &task_ctx)?;
        }
        Ok(stages)
    }

    /// Runs the query on the executors and returns its batches.
    pub fn collect(&self) -> Result<Vec<RecordBatch>, DriverError> {
        self.collect_async()?.wait()
    }

    /// Submits the query and returns at once: the handle is a `Future`
    /// of its batches, and can cancel it or be waited on. Planning errors
    /// come back here, before anything runs.
    pub fn collect_async(&self) -> Result<crate::JobHandle<Vec<RecordBatch>>, DriverError> {
        let plan = self.physical_plan()?;
        let insert = crate::sql_insert::DriverInsert::of(&plan);
        let query = match &insert {
            Some(insert) => insert.query.clone(),
            None => plan,
        };
        let job = match self.placement(&query)? {
            Placement::Executors(stages) => {
                crate::jobs::with_job_description(self.statement.trim(), || {
                    self.ctx.submit_sql(stages)
                })
            }
            Placement::Driver => {
                let result = self.run_on_driver(query);
                self.ctx.inner.scheduler().finished(result)
            }
        };
        let Some(insert) = insert else {
            return Ok(job);
        };
        let task_ctx = self.ctx.sql_session()?.task_ctx();
        let runtime = self.ctx.inner.runtime.handle().clone();
        let statement = self.statement.clone();
        Ok(job.and_then(move |rows| {
            insert
                .append(rows, task_ctx, &runtime)
                .map_err(|e| sql_error(&statement, e))
        }))
    }

    /// Where `plan` runs: cut into stages on the executors, or whole in the
    /// driver's DataFusion session when it cannot be cut (a recursive
    /// query) or a fragment cannot be shipped intact (what neither
    /// datafusion-proto 55 nor Riffle's codec can carry, such as a `FILTER`
    /// on a window aggregate that keeps NULLs). The driver gives
    /// the answer DataFusion gives, in one process; a warning says why.
    fn placement(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<Placement, DriverError> {
        use riffle_sql::datafusion::physical_plan::ExecutionPlanProperties;
        if plan.boundedness().is_unbounded() {
            return Err(self.error(
                "this query reads an unbounded (streaming) source, which never ends: Riffle runs jobs over bounded inputs only (read the files as an ordinary external table)".into(),
            ));
        }
        if let Some(node) = riffle_sql::stages::driver_only(plan) {
            tracing::info!("query runs on the driver: its {node} cannot be cut into tasks");
            return Ok(Placement::Driver);
        }
        match self.stages_of(plan.clone()) {
            Ok(stages) => Ok(Placement::Executors(stages)),
            Err(e) if riffle_sql::codec::is_unshippable(&e) => {
                tracing::warn!(
                    "query runs on the driver, in one process: {}",
                    e.to_string().lines().next().unwrap_or_default()
                );
                Ok(Placement::Driver)
            }
            Err(e) => Err(sql_error(&self.statement, e)),
        }
    }

    /// Runs the whole plan in the driver's own DataFusion session.
    fn run_on_driver(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>, DriverError> {
        let task_ctx = self.ctx.sql_session()?.task_ctx();
        self.ctx
            .inner
            .runtime
            .block_on(riffle_sql::datafusion::physical_plan::collect(
                plan, task_ctx,
            ))
            .map_err(|e| sql_error(&self.statement, e))
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

    /// Runs the query and writes its rows as Parquet files under `dir`,
    /// one `part-NNNNN.parquet` per result partition, written by the
    /// executors, plus `_SUCCESS`.
    pub fn write_parquet(&self, dir: &str) -> Result<(), DriverError> {
        self.write(dir, FileFormat::Parquet)
    }

    /// Runs the query and writes its rows as CSV files with a header line
    /// under `dir`, one `part-NNNNN.csv` per result partition.
    pub fn write_csv(&self, dir: &str) -> Result<(), DriverError> {
        self.write(dir, FileFormat::Csv)
    }

    /// Runs the query with each result task writing its rows as one file
    /// under `dir` (a path or URL that must be empty or absent); the files
    /// appear only once the whole query succeeded.
    fn write(&self, dir: &str, format: FileFormat) -> Result<(), DriverError> {
        let url = self.ctx.empty_output_dir(dir)?;
        let stages = self.stages()?;
        crate::jobs::with_job_description(self.statement.trim(), || {
            self.ctx.write_sql(stages, url.as_str(), format)
        })
    }

    /// The output schema.
    pub fn schema(&self) -> arrow_schema::SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }
}

/// Where a query runs (see `SqlFrame::placement`).
enum Placement {
    Executors(Vec<riffle_sql::stages::SqlStage>),
    Driver,
}

/// What one statement of a script produced.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    /// The statement as run (after variable substitution).
    pub statement: String,
    /// Its result rows (none for DDL and `INSERT OVERWRITE DIRECTORY`).
    pub batches: Vec<RecordBatch>,
    /// Whether the statement is a query whose rows should be shown.
    pub returns_rows: bool,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

impl Context {
    /// Runs a script of `;`-separated statements after dropping `--`
    /// comment lines and replacing `${NAME}` with `vars` (in that order, as
    /// Hive's CLI does), stopping at the first error. Besides what
    /// DataFusion accepts, it runs Hive's `CREATE EXTERNAL TABLE ... ROW
    /// FORMAT SERDE '...RegexSerDe'` and `INSERT OVERWRITE DIRECTORY`.
    pub fn run_script(
        &self,
        script: &str,
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<StatementOutput>, DriverError> {
        let statements =
            riffle_sql::hive::prepare_script(script, vars).map_err(|e| DriverError::Sql {
                statement: "script".into(),
                message: e.to_string(),
            })?;
        statements.iter().map(|s| self.run_statement(s)).collect()
    }

    /// Runs one statement (see [`Context::run_script`]).
    pub fn run_statement(&self, statement: &str) -> Result<StatementOutput, DriverError> {
        use riffle_sql::hive::Statement;
        let started = std::time::Instant::now();
        let hive_error = |e: riffle_sql::hive::HiveError| DriverError::Sql {
            statement: statement.trim().chars().take(200).collect(),
            message: e.to_string(),
        };
        let (batches, returns_rows) = match riffle_sql::hive::rewrite(statement)
            .map_err(hive_error)?
        {
            Statement::Sql(sql) if is_plain_explain(&sql) => {
                let query = sql.trim_start()[7..].to_string();
                let plan = self.sql(&query)?.explain()?;
                let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                    "distributed_plan",
                    arrow_schema::DataType::Utf8,
                    false,
                )]));
                let lines =
                    arrow_array::StringArray::from_iter_values(plan.lines().collect::<Vec<_>>());
                let batch = RecordBatch::try_new(schema, vec![Arc::new(lines)])
                    .map_err(|e| DriverError::Internal(e.to_string()))?;
                (vec![batch], true)
            }
            Statement::Sql(sql) => {
                let frame = self.sql(&sql)?;
                let ddl = matches!(
                    frame.frame.logical_plan(),
                    riffle_sql::datafusion::logical_expr::LogicalPlan::EmptyRelation(e) if !e.produce_one_row
                );
                if ddl {
                    (Vec::new(), false)
                } else {
                    (frame.collect()?, true)
                }
            }
            Statement::CreateRegexTable {
                name,
                if_not_exists,
                columns,
                regex,
                case_insensitive,
                ignored_properties,
                skip_header_lines,
                location,
            } => {
                for key in &ignored_properties {
                    tracing::warn!(
                        "table {name}: property {key:?} is ignored (Riffle reads \"input.regex\", \"input.regex.case.insensitive\" and TBLPROPERTIES \"skip.header.line.count\")"
                    );
                }
                let session = self.sql_session()?;
                let exists = session.table_exist(name.as_str()).unwrap_or(false);
                if exists && !if_not_exists {
                    return Err(DriverError::Sql {
                        statement: statement.chars().take(200).collect(),
                        message: format!("table {name} already exists"),
                    });
                }
                if !exists {
                    let table = self
                        .inner
                        .runtime
                        .block_on(riffle_sql::regex_table::RegexTable::try_new(
                            &columns,
                            &regex,
                            riffle_sql::regex_table::ScanOptions {
                                case_insensitive,
                                skip_header_lines,
                            },
                            &location,
                            &self.inner.stores,
                        ))
                        .map_err(|e| sql_error(statement, e))?;
                    session
                        .register_table(name.as_str(), Arc::new(table))
                        .map_err(|e| sql_error(statement, e))?;
                }
                (Vec::new(), false)
            }
            Statement::InsertOverwriteDirectory { dir, format, query } => {
                let batches = self.sql(&query)?.collect()?;
                self.write_hive_text(&dir, &format, &batches)?;
                (Vec::new(), false)
            }
        };
        Ok(StatementOutput {
            statement: statement.to_string(),
            batches,
            returns_rows,
            elapsed: started.elapsed(),
        })
    }

    /// Replaces the contents of `dir` with `000000_0` holding the rows as
    /// Hive's text output writes them ([`riffle_sql::hive_text`]).
    fn write_hive_text(
        &self,
        dir: &str,
        format: &riffle_sql::hive::TextFormat,
        batches: &[RecordBatch],
    ) -> Result<(), DriverError> {
        let text = riffle_sql::hive_text::rows(batches, format)
            .map_err(|e| DriverError::Internal(e.to_string()))?;
        self.inner
            .runtime
            .block_on(crate::scheduler::commit::overwrite_directory(
                &self.inner.stores,
                dir,
                text,
            ))
    }
}

//! The Hive `RegexSerDe` text table: each line of the files under a
//! location is matched against a Java regex; group `i` fills column `i`.
//! A line that does not match is a row of NULLs; a field that does not
//! convert to its column's type is NULL while the row stays.
//!
//! The CloudFront tutorial's regex is recognized and parsed by
//! [`crate::cloudfront::CloudFrontParser`]'s exact fast path.

use crate::cloudfront::{CloudFrontParser, Date, is_tutorial_regex};
use crate::hive::HiveColumn;
use crate::java_regex::{JavaFlags, JavaRegex};
use arrow_array::builder::{Date32Builder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use object_store::ObjectStoreExt;
use riffle_shuffle::stores::ObjectStores;
use std::io::Read;
use std::sync::Arc;

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// The Arrow type of a Hive column type.
pub fn arrow_type(hive_type: &str) -> Result<DataType> {
    let t = hive_type.trim().to_ascii_uppercase();
    Ok(match t.as_str() {
        "STRING" | "VARCHAR" | "CHAR" => DataType::Utf8,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "SMALLINT" => DataType::Int16,
        "TINYINT" => DataType::Int8,
        "DOUBLE" => DataType::Float64,
        "FLOAT" => DataType::Float32,
        "BOOLEAN" => DataType::Boolean,
        "DATE" => DataType::Date32,
        _ if t.starts_with("VARCHAR(") || t.starts_with("CHAR(") => DataType::Utf8,
        _ => {
            return Err(DataFusionError::Plan(format!(
                "Hive type {hive_type} is not supported in a RegexSerDe table"
            )));
        }
    })
}

/// A `RegexSerDe` table.
#[derive(Debug)]
pub struct RegexTable {
    schema: SchemaRef,
    regex: String,
    files: Vec<String>,
}

impl RegexTable {
    /// A table over the files at `location` (file, directory or glob).
    pub async fn try_new(
        columns: &[HiveColumn],
        regex: &str,
        location: &str,
        stores: &ObjectStores,
    ) -> Result<RegexTable> {
        let fields = columns
            .iter()
            .map(|c| Ok(Field::new(&c.name, arrow_type(&c.hive_type)?, true)))
            .collect::<Result<Vec<_>>>()?;
        let compiled = JavaRegex::with_flags(regex, JavaFlags::HIVE)
            .map_err(|e| DataFusionError::Plan(format!("input.regex: {e}")))?;
        if compiled.group_count() != columns.len() {
            return Err(DataFusionError::Plan(format!(
                "input.regex has {} groups but the table has {} columns",
                compiled.group_count(),
                columns.len()
            )));
        }
        let files = stores
            .list_files(location)
            .await
            .map_err(|e| DataFusionError::Plan(format!("LOCATION {location}: {}", e.message)))?
            .into_iter()
            .map(|(url, _)| url)
            .collect();
        Ok(RegexTable {
            schema: Arc::new(Schema::new(fields)),
            regex: regex.to_string(),
            files,
        })
    }
}

#[async_trait::async_trait]
impl TableProvider for RegexTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        Ok(Arc::new(RegexScanExec::try_new(
            self.files.clone(),
            self.regex.clone(),
            self.schema.clone(),
            projection,
        )?))
    }
}

/// Scans a `RegexSerDe` table: one partition per file.
#[derive(Debug)]
pub struct RegexScanExec {
    files: Vec<String>,
    regex: String,
    table_schema: SchemaRef,
    projection: Vec<usize>,
    cache: Arc<PlanProperties>,
}

impl RegexScanExec {
    /// A scan of `files` producing the `projection` columns of `table_schema`.
    pub fn try_new(
        files: Vec<String>,
        regex: String,
        table_schema: SchemaRef,
        projection: Vec<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(table_schema.project(&projection)?);
        let cache = crate::exec::properties(schema, files.len().max(1));
        Ok(RegexScanExec {
            files,
            regex,
            table_schema,
            projection,
            cache,
        })
    }

    /// The files scanned.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The Java regex.
    pub fn regex(&self) -> &str {
        &self.regex
    }

    /// The table's full schema.
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table_schema
    }

    /// The projected column indices.
    pub fn projection(&self) -> &[usize] {
        &self.projection
    }
}

impl DisplayAs for RegexScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RegexScanExec: {} files, projection={:?}",
            self.files.len(),
            self.projection
        )
    }
}

impl ExecutionPlan for RegexScanExec {
    fn name(&self) -> &str {
        "RegexScanExec"
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
        let schema = self.schema();
        let Some(file) = self.files.get(partition).cloned() else {
            // A table with no files has one empty partition.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let url = url::Url::parse(&file)
            .map_err(|e| DataFusionError::Execution(format!("{file}: {e}")))?;
        let root = datafusion::execution::object_store::ObjectStoreUrl::parse(format!(
            "{}://{}",
            url.scheme(),
            url.authority()
        ))?;
        let store = context.runtime_env().object_store(&root)?;
        let regex = self.regex.clone();
        let table_schema = self.table_schema.clone();
        let projection = self.projection.clone();
        let out_schema = schema.clone();
        use futures::StreamExt;
        // Batches reach the consumer as they are parsed (at most two
        // waiting), so a task holds its file and little more.
        let stream = futures::stream::once(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
            tokio::spawn(async move {
                let bytes = match fetch(&store, &url).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                // Parsing is CPU work: keep it off the async workers.
                let parsed = tokio::task::spawn_blocking(move || {
                    let text = decode(&file, &bytes)?;
                    let mut emit = |batch| {
                        // A closed channel means the consumer stopped
                        // reading (a LIMIT, a failed task): stop parsing.
                        tx.blocking_send(Ok(batch)).map_err(|_| Stop)
                    };
                    match parse(
                        &text,
                        &regex,
                        &table_schema,
                        &projection,
                        &out_schema,
                        &mut emit,
                    ) {
                        Err(ParseError::Failed(e)) => {
                            let _ = tx.blocking_send(Err(e));
                        }
                        Ok(()) | Err(ParseError::Stopped) => {}
                    }
                    Ok::<(), DataFusionError>(())
                })
                .await;
                if let Err(e) = parsed {
                    tracing::warn!(error = %e, "regex scan task did not finish");
                }
            });
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Reads a whole file.
async fn fetch(store: &Arc<dyn object_store::ObjectStore>, url: &url::Url) -> Result<bytes::Bytes> {
    let path = object_store::path::Path::from_url_path(url.path())?;
    Ok(store.get(&path).await?.bytes().await?)
}

/// The consumer of a scan went away.
struct Stop;

/// Why parsing ended early.
enum ParseError {
    /// The consumer went away.
    Stopped,
    /// A batch could not be built.
    Failed(DataFusionError),
}

impl From<DataFusionError> for ParseError {
    fn from(e: DataFusionError) -> Self {
        ParseError::Failed(e)
    }
}

impl From<arrow_schema::ArrowError> for ParseError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ParseError::Failed(e.into())
    }
}

impl From<Stop> for ParseError {
    fn from(_: Stop) -> Self {
        ParseError::Stopped
    }
}

/// The text of a file, gunzipped if it ends in `.gz`; invalid UTF-8 is
/// replaced. Plain UTF-8 text is borrowed, not copied.
fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    if file.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| DataFusionError::Execution(format!("{file}: corrupt gzip data: {e}")))?;
        return Ok(Cow::Owned(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }));
    }
    Ok(String::from_utf8_lossy(bytes))
}

/// One column being built.
enum Column {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Date32(Date32Builder),
    /// Any other type: strings, cast at the end (NULL where the cast fails).
    Cast(StringBuilder, DataType),
}

impl Column {
    fn new(data_type: &DataType) -> Column {
        match data_type {
            DataType::Utf8 => Column::Utf8(StringBuilder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Date32 => Column::Date32(Date32Builder::new()),
            other => Column::Cast(StringBuilder::new(), other.clone()),
        }
    }

    fn push(&mut self, field: Option<&str>) {
        match self {
            Column::Utf8(b) => b.append_option(field),
            Column::Int32(b) => b.append_option(field.and_then(|f| f.parse::<i32>().ok())),
            Column::Date32(b) => {
                b.append_option(field.and_then(Date::parse).map(|d| d.days_since_epoch()))
            }
            Column::Cast(b, _) => b.append_option(field),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Date32(b) => Arc::new(b.finish()),
            Column::Cast(b, t) => {
                let strings: ArrayRef = Arc::new(b.finish());
                let options = datafusion::arrow::compute::CastOptions {
                    safe: true,
                    ..Default::default()
                };
                datafusion::arrow::compute::cast_with_options(&strings, t, &options)?
            }
        })
    }
}

/// Parses every line into batches of the projected columns, handing each
/// to `emit` as soon as it is full.
fn parse(
    text: &str,
    regex: &str,
    table_schema: &Schema,
    projection: &[usize],
    out_schema: &SchemaRef,
    emit: &mut dyn FnMut(RecordBatch) -> std::result::Result<(), Stop>,
) -> std::result::Result<(), ParseError> {
    enum Parser {
        CloudFront(CloudFrontParser),
        Generic(JavaRegex),
    }
    let parser = if is_tutorial_regex(regex) {
        Parser::CloudFront(CloudFrontParser::new())
    } else {
        Parser::Generic(
            JavaRegex::with_flags(regex, JavaFlags::HIVE)
                .map_err(|e| ParseError::Failed(DataFusionError::Plan(e.to_string())))?,
        )
    };
    let new_columns = || -> Vec<Column> {
        projection
            .iter()
            .map(|&i| Column::new(table_schema.field(i).data_type()))
            .collect()
    };
    let mut columns = new_columns();
    let mut rows = 0;
    let mut flush =
        |columns: &mut Vec<Column>, rows: &mut usize| -> std::result::Result<(), ParseError> {
            let arrays = columns
                .iter_mut()
                .map(Column::finish)
                .collect::<Result<Vec<_>>>()?;
            let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
                .with_row_count(Some(*rows));
            emit(RecordBatch::try_new_with_options(
                out_schema.clone(),
                arrays,
                &options,
            )?)?;
            *rows = 0;
            Ok(())
        };
    let mut fields: Vec<Option<&str>> = Vec::new();
    let mut locations = match &parser {
        Parser::Generic(r) => Some(r.as_regex().capture_locations()),
        Parser::CloudFront(_) => None,
    };
    for line in text.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        fields.clear();
        match (&parser, locations.as_mut()) {
            (Parser::CloudFront(p), _) => {
                if let Some(groups) = p.groups(line) {
                    fields.extend(groups.iter().map(|g| Some(*g)));
                }
            }
            (Parser::Generic(r), Some(locs)) => {
                if r.captures_read(locs, line) {
                    fields.extend(
                        (1..=r.group_count()).map(|g| locs.get(g).map(|(a, b)| &line[a..b])),
                    );
                }
            }
            (Parser::Generic(_), None) => {}
        }
        for (column, &i) in columns.iter_mut().zip(projection) {
            column.push(fields.get(i).copied().flatten());
        }
        rows += 1;
        if rows == BATCH_ROWS {
            flush(&mut columns, &mut rows)?;
        }
    }
    if rows > 0 {
        flush(&mut columns, &mut rows)?;
    }
    Ok(())
}

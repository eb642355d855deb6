//! The Hive `RegexSerDe` text table: each line of the files under a
//! location is matched against a Java regex; group `i` fills column `i`.
//! A line that does not match is a row of NULLs; a field that does not
//! convert to its column's type is NULL while the row stays.
//!
//! The CloudFront tutorial's regex is recognized and parsed by
//! [`crate::cloudfront::CloudFrontParser`]'s exact fast path.

use crate::cloudfront::{CloudFrontParser, is_tutorial_regex};
use crate::hive::HiveColumn;
use crate::hive_types::HiveType;
use crate::java_regex::{JavaFlags, JavaRegex};
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
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
use riffle_shuffle::lines;
use riffle_shuffle::stores::ObjectStores;
use std::io::Read;
use std::sync::Arc;

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// The field-metadata key holding a column's Hive type, so that a scan
/// shipped to an executor converts each column as Hive would.
const HIVE_TYPE_KEY: &str = "riffle.hive_type";

/// A table column as an Arrow field carrying its Hive type.
fn field(column: &HiveColumn) -> Result<Field> {
    let hive = HiveType::parse(&column.hive_type)
        .map_err(|e| DataFusionError::Plan(format!("column {}: {e}", column.name)))?;
    Ok(
        Field::new(&column.name, hive.arrow_type(), true).with_metadata(
            std::collections::HashMap::from([(
                HIVE_TYPE_KEY.to_string(),
                column.hive_type.clone(),
            )]),
        ),
    )
}

/// The Hive type of a field made by [`field`] (STRING for any other).
fn hive_type(field: &Field) -> HiveType {
    field
        .metadata()
        .get(HIVE_TYPE_KEY)
        .and_then(|t| HiveType::parse(t).ok())
        .unwrap_or(HiveType::String)
}

/// The flags Hive compiles `input.regex` with.
fn flags(case_insensitive: bool) -> JavaFlags {
    JavaFlags {
        case_insensitive,
        ..JavaFlags::HIVE
    }
}

/// A `RegexSerDe` table.
#[derive(Debug)]
pub struct RegexTable {
    schema: SchemaRef,
    regex: String,
    options: ScanOptions,
    location: String,
    stores: ObjectStores,
}

/// How a `RegexSerDe` table reads its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanOptions {
    /// `input.regex.case.insensitive`: match case-insensitively.
    pub case_insensitive: bool,
    /// TBLPROPERTIES `skip.header.line.count`: lines skipped at the start
    /// of every file.
    pub skip_header_lines: usize,
}

impl RegexTable {
    /// A table over the files at `location` (file, directory or glob, by
    /// [`ObjectStores::list_files`]'s conventions), matching lines against
    /// `regex`. The location is listed now, so that a bad one is an error
    /// at once, and again for every query, as Hive does: files added or
    /// replaced since are read.
    pub async fn try_new(
        columns: &[HiveColumn],
        regex: &str,
        options: ScanOptions,
        location: &str,
        stores: &ObjectStores,
    ) -> Result<RegexTable> {
        let fields = columns.iter().map(field).collect::<Result<Vec<_>>>()?;
        let compiled = JavaRegex::with_flags(regex, flags(options.case_insensitive))
            .map_err(|e| DataFusionError::Plan(format!("input.regex: {e}")))?;
        if compiled.group_count() != columns.len() {
            return Err(DataFusionError::Plan(format!(
                "input.regex has {} groups but the table has {} columns",
                compiled.group_count(),
                columns.len()
            )));
        }
        let table = RegexTable {
            schema: Arc::new(Schema::new(fields)),
            regex: regex.to_string(),
            options,
            location: location.to_string(),
            stores: stores.clone(),
        };
        table.files().await?;
        Ok(table)
    }

    /// The files at the table's location now.
    async fn files(&self) -> Result<Vec<String>> {
        let location = &self.location;
        Ok(self
            .stores
            .list_files(location)
            .await
            .map_err(|e| DataFusionError::Plan(format!("LOCATION {location}: {}", e.message)))?
            .into_iter()
            .map(|(url, _)| url)
            .collect())
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
            self.files().await?,
            self.regex.clone(),
            self.options,
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
    options: ScanOptions,
    table_schema: SchemaRef,
    projection: Vec<usize>,
    cache: Arc<PlanProperties>,
}

impl RegexScanExec {
    /// A scan of `files` producing the `projection` columns of `table_schema`.
    pub fn try_new(
        files: Vec<String>,
        regex: String,
        options: ScanOptions,
        table_schema: SchemaRef,
        projection: Vec<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(table_schema.project(&projection)?);
        let cache = crate::exec::properties(schema, files.len().max(1));
        Ok(RegexScanExec {
            files,
            regex,
            options,
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

    /// How lines are read.
    pub fn options(&self) -> ScanOptions {
        self.options
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
        let options = self.options;
        let table_schema = self.table_schema.clone();
        let projection = self.projection.clone();
        let out_schema = schema.clone();
        use futures::StreamExt;
        // Batches reach the consumer as they are parsed (at most two
        // waiting), so a task holds its file and little more.
        let stream = futures::stream::once(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
            let runtime = tokio::runtime::Handle::current();
            // Reading and parsing are one blocking task: range reads run on
            // the runtime, parsing (CPU work) stays off the async workers.
            tokio::task::spawn_blocking(move || {
                let mut emit = |batch| {
                    // A closed channel means the consumer stopped reading
                    // (a LIMIT, a failed task): stop parsing.
                    tx.blocking_send(Ok(batch)).map_err(|_| Stop)
                };
                let scanned =
                    LineParser::new(&regex, options, &table_schema, projection, out_schema)
                        .and_then(|mut parser| {
                            read_lines(
                                READ_CHUNK_BYTES,
                                &runtime,
                                &store,
                                &url,
                                &file,
                                &mut |text| parser.feed(text, &mut emit),
                            )?;
                            parser.finish(&mut emit)
                        });
                if let Err(ParseError::Failed(e)) = scanned {
                    let _ = tx.blocking_send(Err(e));
                }
            });
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Bytes read per range request of a plain text file (small enough that
/// the allocator reuses the buffers instead of faulting in fresh pages).
const READ_CHUNK_BYTES: u64 = 2 << 20;

/// Hands the text of `file` to `feed` in pieces of whole lines, read
/// `chunk` bytes at a time (so a scan holds a few MiB, not the file):
/// plain files as ranges, gzip files as decompressed pieces of a stream of
/// ranges. Line ends, the byte-order mark and gzip members follow
/// [`riffle_shuffle::lines`], as the Dataset reader does. Invalid UTF-8 is
/// replaced.
fn read_lines(
    chunk: u64,
    runtime: &tokio::runtime::Handle,
    store: &Arc<dyn object_store::ObjectStore>,
    url: &url::Url,
    file: &str,
    feed: &mut dyn FnMut(&str) -> std::result::Result<(), ParseError>,
) -> std::result::Result<(), ParseError> {
    let path =
        object_store::path::Path::from_url_path(url.path()).map_err(DataFusionError::from)?;
    let failed =
        |e: object_store::Error| ParseError::Failed(DataFusionError::ObjectStore(Box::new(e)));
    let size = runtime.block_on(store.head(&path)).map_err(failed)?.size;
    let mut ranges = RangeReader {
        runtime,
        store,
        path: &path,
        offset: 0,
        size,
        chunk,
        current: bytes::Bytes::new(),
    };
    let mut next: Box<dyn FnMut() -> std::result::Result<Option<bytes::Bytes>, ParseError> + '_> =
        if file.ends_with(".gz") {
            if size == 0 {
                tracing::warn!("{file}: empty gzip file (0 bytes), read as no lines");
                return Ok(());
            }
            let mut gz =
                lines::GzipMembers::new(std::io::BufReader::with_capacity(1 << 16, ranges));
            Box::new(move || {
                let mut piece = Vec::with_capacity(chunk as usize);
                let read = (&mut gz).take(chunk).read_to_end(&mut piece).map_err(|e| {
                    match e.downcast::<object_store::Error>() {
                        Ok(e) => failed(e),
                        Err(e) => ParseError::Failed(DataFusionError::Execution(format!(
                            "{file}: corrupt gzip data: {e}"
                        ))),
                    }
                })?;
                Ok((read > 0).then(|| bytes::Bytes::from(piece)))
            })
        } else {
            Box::new(move || ranges.next_range().map_err(failed))
        };
    // The unfinished last line of the previous piece.
    let mut carry: Vec<u8> = Vec::new();
    let mut first = true;
    let mut feed = |piece: &[u8]| {
        let piece = if std::mem::take(&mut first) {
            lines::strip_bom(piece)
        } else {
            piece
        };
        feed(&text_of(piece))
    };
    while let Some(bytes) = next()? {
        let mut complete = &bytes[..];
        if !carry.is_empty() {
            // Finish the carried line with the head of this piece.
            let Some(head) = lines::first_line_end(complete) else {
                carry.extend_from_slice(complete);
                continue;
            };
            carry.extend_from_slice(&complete[..head]);
            feed(&carry)?;
            carry.clear();
            complete = &complete[head..];
        }
        let whole = lines::complete_lines(complete).unwrap_or(0);
        if whole > 0 {
            feed(&complete[..whole])?;
        }
        carry.extend_from_slice(&complete[whole..]);
    }
    if !carry.is_empty() {
        feed(&carry)?;
    }
    Ok(())
}

/// An object read as ranges of `chunk` bytes, from a blocking thread.
struct RangeReader<'a> {
    runtime: &'a tokio::runtime::Handle,
    store: &'a Arc<dyn object_store::ObjectStore>,
    path: &'a object_store::path::Path,
    offset: u64,
    size: u64,
    chunk: u64,
    /// What `Read` has not handed out yet.
    current: bytes::Bytes,
}

impl RangeReader<'_> {
    /// The next range, `None` at the end.
    fn next_range(&mut self) -> std::result::Result<Option<bytes::Bytes>, object_store::Error> {
        if self.offset >= self.size {
            return Ok(None);
        }
        let end = (self.offset + self.chunk).min(self.size);
        let bytes = self
            .runtime
            .block_on(self.store.get_range(self.path, self.offset..end))?;
        self.offset = end;
        Ok(Some(bytes))
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            match self.next_range().map_err(std::io::Error::other)? {
                Some(range) => self.current = range,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Bytes as text, borrowed when they are valid UTF-8 (checking that is
/// much faster than the lossy conversion's scan).
fn text_of(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The consumer of a scan went away.
struct Stop;

/// Where a parser hands its finished batches.
type Emit<'a> = dyn FnMut(RecordBatch) -> std::result::Result<(), Stop> + 'a;

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

/// One column being built, converting each captured string as Hive's
/// `RegexSerDe` does ([`crate::hive_types`]): a string that does not
/// convert is NULL.
enum Column {
    Utf8(StringBuilder, HiveType),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampNanosecondBuilder),
    Decimal(Decimal128Builder, u8, i8),
}

impl Column {
    fn new(hive: HiveType) -> Column {
        match hive {
            HiveType::String | HiveType::Varchar(_) | HiveType::Char(_) => {
                Column::Utf8(StringBuilder::new(), hive)
            }
            HiveType::TinyInt => Column::Int8(Int8Builder::new()),
            HiveType::SmallInt => Column::Int16(Int16Builder::new()),
            HiveType::Int => Column::Int32(Int32Builder::new()),
            HiveType::BigInt => Column::Int64(Int64Builder::new()),
            HiveType::Float => Column::Float32(Float32Builder::new()),
            HiveType::Double => Column::Float64(Float64Builder::new()),
            HiveType::Boolean => Column::Boolean(BooleanBuilder::new()),
            HiveType::Date => Column::Date32(Date32Builder::new()),
            HiveType::Timestamp => Column::Timestamp(TimestampNanosecondBuilder::new()),
            HiveType::Decimal(p, s) => Column::Decimal(Decimal128Builder::new(), p, s),
        }
    }

    /// Appends the column's value for a captured group (`None`: the group
    /// took no part). A line that did not match (`matched` false) is a
    /// NULL row in every column, BOOLEAN included.
    fn push(&mut self, field: Option<&str>, matched: bool) {
        use crate::hive_types as java;
        let int = |min: i64, max: i64| field.and_then(|f| java::java_integer(f, min, max));
        match self {
            Column::Utf8(b, HiveType::Varchar(n)) => {
                b.append_option(field.map(|f| java::hive_varchar(f, *n)))
            }
            Column::Utf8(b, HiveType::Char(n)) => {
                b.append_option(field.map(|f| java::hive_char(f, *n)))
            }
            Column::Utf8(b, _) => b.append_option(field),
            Column::Int8(b) => {
                b.append_option(int(i8::MIN.into(), i8::MAX.into()).map(|v| v as i8))
            }
            Column::Int16(b) => {
                b.append_option(int(i16::MIN.into(), i16::MAX.into()).map(|v| v as i16))
            }
            Column::Int32(b) => {
                b.append_option(int(i32::MIN.into(), i32::MAX.into()).map(|v| v as i32))
            }
            Column::Int64(b) => b.append_option(int(i64::MIN, i64::MAX)),
            Column::Float32(b) => b.append_option(field.and_then(java::java_float)),
            Column::Float64(b) => b.append_option(field.and_then(java::java_double)),
            Column::Boolean(b) => b.append_option(matched.then(|| java::java_boolean(field))),
            Column::Date32(b) => b.append_option(field.and_then(java::java_date)),
            Column::Timestamp(b) => b.append_option(field.and_then(java::java_timestamp)),
            Column::Decimal(b, p, s) => {
                b.append_option(field.and_then(|f| java::hive_decimal(f, *p, *s)))
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Column::Utf8(b, _) => Arc::new(b.finish()),
            Column::Int8(b) => Arc::new(b.finish()),
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Date32(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
        })
    }
}

/// How lines are matched.
enum Matcher {
    /// The tutorial's regex, by the exact hand-written scanner.
    CloudFront(CloudFrontParser),
    /// Any other regex, with Java semantics.
    Generic(JavaRegex),
}

/// Parses lines into batches of the projected columns, handing each batch
/// to `emit` as soon as it is full. Hive's RegexSerDe semantics: a line
/// that does not match gives NULL in every column.
struct LineParser {
    matcher: Matcher,
    projection: Vec<usize>,
    out_schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
    /// Header lines of the file still to skip.
    skip: usize,
}

impl LineParser {
    fn new(
        regex: &str,
        options: ScanOptions,
        table_schema: &Schema,
        projection: Vec<usize>,
        out_schema: SchemaRef,
    ) -> std::result::Result<Self, ParseError> {
        let matcher = if is_tutorial_regex(regex) && !options.case_insensitive {
            Matcher::CloudFront(CloudFrontParser::new())
        } else {
            Matcher::Generic(
                JavaRegex::with_flags(regex, flags(options.case_insensitive))
                    .map_err(|e| ParseError::Failed(DataFusionError::Plan(e.to_string())))?,
            )
        };
        let columns = projection
            .iter()
            .map(|&i| Column::new(hive_type(table_schema.field(i))))
            .collect();
        Ok(LineParser {
            matcher,
            projection,
            out_schema,
            columns,
            rows: 0,
            skip: options.skip_header_lines,
        })
    }

    /// Parses the lines of `text` (whole lines; the last may lack its
    /// line end).
    fn feed(&mut self, text: &str, emit: &mut Emit<'_>) -> std::result::Result<(), ParseError> {
        let mut fields: Vec<Option<&str>> = Vec::new();
        let mut locations = match &self.matcher {
            Matcher::Generic(r) => Some(r.as_regex().capture_locations()),
            Matcher::CloudFront(_) => None,
        };
        for line in lines::lines(text) {
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            fields.clear();
            match (&self.matcher, locations.as_mut()) {
                (Matcher::CloudFront(p), _) => {
                    if let Some(groups) = p.groups(line) {
                        fields.extend(groups.iter().map(|g| Some(*g)));
                    }
                }
                (Matcher::Generic(r), Some(locs)) => {
                    if r.captures_read(locs, line) {
                        fields.extend(
                            (1..=r.group_count()).map(|g| locs.get(g).map(|(a, b)| &line[a..b])),
                        );
                    }
                }
                (Matcher::Generic(_), None) => {}
            }
            let matched = !fields.is_empty();
            for (column, &i) in self.columns.iter_mut().zip(&self.projection) {
                column.push(fields.get(i).copied().flatten(), matched);
            }
            self.rows += 1;
            if self.rows == BATCH_ROWS {
                self.flush(emit)?;
            }
        }
        Ok(())
    }

    /// Emits the last, partial batch.
    fn finish(&mut self, emit: &mut Emit<'_>) -> std::result::Result<(), ParseError> {
        if self.rows > 0 {
            self.flush(emit)?;
        }
        Ok(())
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> std::result::Result<(), ParseError> {
        let arrays = self
            .columns
            .iter_mut()
            .map(Column::finish)
            .collect::<Result<Vec<_>>>()?;
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(self.rows));
        emit(RecordBatch::try_new_with_options(
            self.out_schema.clone(),
            arrays,
            &options,
        )?)?;
        self.rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `read_lines_in` delivers them with a tiny range size.
    fn lines_read(content: &[u8], name: &str, chunk: u64) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("riffle-read-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let url = url::Url::from_file_path(&path).unwrap();
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut lines = Vec::new();
        // Called from a thread outside the runtime, as from a blocking task.
        read_lines(chunk, runtime.handle(), &store, &url, name, &mut |text| {
            lines.extend(lines::lines(text).map(str::to_string));
            Ok(())
        })
        .map_err(|_| "read failed")
        .unwrap();
        lines
    }

    #[test]
    fn ranges_split_only_at_line_ends() {
        let text = "first line\r\nsecond, with ünïcödé\n\nthe longest line of them all, longer than a range\nlast without end";
        let expected: Vec<String> = text
            .split_terminator('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        for chunk in [1, 3, 7, 16, 1000] {
            assert_eq!(
                lines_read(text.as_bytes(), "t.log", chunk),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn gzip_files_stream_in_pieces_with_every_line_end() {
        use std::io::Write;
        let gzip = |text: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text).unwrap();
            gz.finish().unwrap()
        };
        let mut bytes = gzip(b"\xEF\xBB\xBFa\r\nb\rc\n");
        bytes.extend(gzip(b"d\r\n\re"));
        bytes.extend([0u8; 64]);
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                lines_read(&bytes, &format!("t{chunk}.gz"), chunk),
                ["a", "b", "c", "d", "", "e"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let lines = lines_read(b"ok\nbad \xff byte\nok again\n", "bad.log", 4);
        assert_eq!(lines, vec!["ok", "bad \u{fffd} byte", "ok again"]);
    }
}

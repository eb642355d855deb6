//! Typed records as Arrow rows and back: the operators behind
//! `Context::register_dataset` (a `Dataset<T>` read as a SQL table) and
//! `SqlFrame::to_dataset` (a SQL result read as a `Dataset<T>`).
//!
//! Columns are built from and read into `T` with serde_arrow, column by
//! column through serde, without a row-at-a-time `Value` detour. A record
//! type maps to one column per field: its schema comes from the type
//! ([`record_fields`]), the same on the driver and on every executor.

use super::Data;
use super::ops::{Built, Types};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{FieldRef, Schema, SchemaRef};
use riffle_planner::PipelineError;
use riffle_planner::pipeline::{
    ArrowSourceOp, ArrowWriteOp, BoxIter, Counters, Partition, TaskContext,
};
use serde_arrow::schema::{SchemaLike, TracingOptions};
use std::sync::Arc;

/// Rows per batch written from a partition of typed records.
const BATCH_ROWS: usize = 8192;

/// The Arrow fields of record type `T`: one per field of a struct (or
/// tuple), strings as `Utf8`, `Option`s nullable.
pub(crate) fn record_fields<T: Data>() -> Result<Vec<FieldRef>, String> {
    let options = TracingOptions::default()
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false)
        .bytes_as_large_binary(false)
        .enums_without_data_as_strings(true);
    Vec::<FieldRef>::from_type::<T>(options).map_err(|e| {
        format!(
            "{} cannot be a table row (it must be a struct or tuple of fields Arrow can hold): {e}",
            std::any::type_name::<T>()
        )
    })
}

/// Writes a partition of `T` as Arrow rows.
struct ArrowWriter<T> {
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    _types: Types<T>,
}

impl<T: Data> ArrowWriteOp for ArrowWriter<T> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn write(
        &self,
        input: Partition,
        _ctx: &TaskContext,
        out: &mut dyn FnMut(RecordBatch) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        let codec = |e: serde_arrow::Error| {
            PipelineError::codec(format!("{} as Arrow rows", std::any::type_name::<T>()), e)
        };
        let mut builder = serde_arrow::ArrayBuilder::from_arrow(&self.fields).map_err(codec)?;
        let mut rows = 0;
        for record in input.into_typed::<T>()? {
            builder.push(&record).map_err(codec)?;
            rows += 1;
            if rows == BATCH_ROWS {
                out(builder.to_record_batch().map_err(codec)?)?;
                rows = 0;
            }
        }
        if rows > 0 {
            out(builder.to_record_batch().map_err(codec)?)?;
        }
        Ok(())
    }
}

pub(crate) fn arrow_writer_factory<T: Data>(_: &[u8]) -> Built {
    let fields = record_fields::<T>().map_err(PipelineError::codec_message)?;
    let schema = Arc::new(Schema::new(fields.clone()));
    let op: Box<dyn ArrowWriteOp> = Box::new(ArrowWriter::<T> {
        fields,
        schema,
        _types: Types::default(),
    });
    Ok(Box::new(op))
}

/// Reads Arrow rows (a SQL result) as records of `T`.
struct ArrowSource<T> {
    fields: Vec<FieldRef>,
    _types: Types<T>,
}

impl<T: Data> ArrowSourceOp for ArrowSource<T> {
    fn open(
        &self,
        batches: BoxIter<RecordBatch>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        let ctx = ctx.clone();
        let fields = self.fields.clone();
        let records = batches.flat_map(move |batch| {
            Counters::add(&ctx.counters.records_read, batch.num_rows() as u64);
            match records_of::<T>(&fields, &batch) {
                Ok(records) => records,
                Err(e) => {
                    ctx.fail(e);
                    Vec::new()
                }
            }
        });
        Ok(Partition::new::<T>(Box::new(records)))
    }
}

/// Decodes one batch into records, after matching its columns to the
/// fields of `T` by name and casting them to the types `T` reads.
pub(crate) fn records_of<T: Data>(
    fields: &[FieldRef],
    batch: &RecordBatch,
) -> Result<Vec<T>, PipelineError> {
    let aligned = align(fields, batch)?;
    serde_arrow::from_record_batch::<Vec<T>>(&aligned).map_err(|e| {
        PipelineError::codec(
            format!("reading SQL rows as {}", std::any::type_name::<T>()),
            e,
        )
    })
}

/// `batch` with exactly the columns of `fields`, in their order and with
/// their types (SQL gives `Int64` counts, string views, decimals ... that
/// `T` may read as `u64`, `String`, `f64`).
fn align(fields: &[FieldRef], batch: &RecordBatch) -> Result<RecordBatch, PipelineError> {
    use riffle_sql::datafusion::arrow::compute::cast;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for field in fields {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| missing_column(field.name(), batch.schema_ref()))?;
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast(column, field.data_type()).map_err(|e| {
                PipelineError::codec(
                    format!(
                        "column {} of type {} cannot be read as {}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ),
                    e,
                )
            })?
        };
        columns.push(column);
    }
    let schema = Arc::new(Schema::new(fields.to_vec()));
    RecordBatch::try_new(schema, columns).map_err(|e| {
        PipelineError::codec(
            "SQL rows do not fit the record type (a NULL for a field that is not an Option?)",
            e,
        )
    })
}

/// The error for a field of the record type that the rows do not have.
pub(crate) fn missing_column(name: &str, schema: &Schema) -> PipelineError {
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    PipelineError::codec_message(format!(
        "the record type has a field `{name}` but the SQL result has no such column (columns: {})",
        have.join(", ")
    ))
}

pub(crate) fn arrow_source_factory<T: Data>(_: &[u8]) -> Built {
    let fields = record_fields::<T>().map_err(PipelineError::codec_message)?;
    let op: Box<dyn ArrowSourceOp> = Box::new(ArrowSource::<T> {
        fields,
        _types: Types::default(),
    });
    Ok(Box::new(op))
}

//! Riffle's SQL as a sqllogictest database: each statement runs through
//! `Context::sql` (DDL at once, queries as jobs on the context's master),
//! and results are printed as DataFusion's own runner prints them
//! (`datafusion-sqllogictest`'s `engines/datafusion_engine/normalize.rs`),
//! so the expected rows in its files apply unchanged.

use bigdecimal::BigDecimal;
use riffle::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use riffle::arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType,
    Float16Type, Float32Type, Float64Type, Schema,
};
use riffle::arrow::util::display::ArrayFormatter;
use riffle::prelude::*;
use sqllogictest::{ColumnType, DBOutput};
use std::str::FromStr;

/// The result column types of DataFusion's test files: `B`oolean,
/// `D`ate/time, `I`nteger, times`P`amp, `R`eal (floats and decimals),
/// `T`ext and `?` for any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    DateTime,
    Integer,
    Timestamp,
    Float,
    Text,
    Other,
}

impl ColumnType for Kind {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'B' => Kind::Boolean,
            'D' => Kind::DateTime,
            'I' => Kind::Integer,
            'P' => Kind::Timestamp,
            'R' => Kind::Float,
            'T' => Kind::Text,
            _ => Kind::Other,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Kind::Boolean => 'B',
            Kind::DateTime => 'D',
            Kind::Integer => 'I',
            Kind::Timestamp => 'P',
            Kind::Float => 'R',
            Kind::Text => 'T',
            Kind::Other => '?',
        }
    }
}

fn kind(data_type: &DataType) -> Kind {
    use DataType::*;
    match data_type {
        Boolean => Kind::Boolean,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Kind::Integer,
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) => Kind::Float,
        Utf8 | LargeUtf8 | Utf8View => Kind::Text,
        Date32 | Date64 | Time32(_) | Time64(_) => Kind::DateTime,
        Timestamp(..) => Kind::Timestamp,
        Dictionary(key, value)
            if key.is_integer() && matches!(**value, Utf8 | LargeUtf8 | Utf8View) =>
        {
            Kind::Text
        }
        _ => Kind::Other,
    }
}

/// A failed statement, displayed as DataFusion's runner displays its
/// errors (`DataFusion error: <DataFusion's message>`), so the files'
/// expected-error patterns can match; Riffle's own context follows.
#[derive(Debug)]
pub struct SqlError(pub String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

impl From<DriverError> for SqlError {
    fn from(e: DriverError) -> Self {
        let message = match &e {
            DriverError::Sql { message, .. } => message.clone(),
            // The executor's message starts with the task it came from,
            // which Riffle's own text below names too.
            DriverError::TaskFailed { message, .. } => {
                let task = regex::Regex::new(r"^job-\d+/stage-\d+/task-\d+ \(attempt \d+\): ")
                    .expect("a valid pattern");
                task.replace(message, "").into_owned()
            }
            other => other.to_string(),
        };
        SqlError(format!("DataFusion error: {message}\n(Riffle: {e})"))
    }
}

/// One test file's connection: a Riffle context of its own.
pub struct RiffleDb {
    pub ctx: Context,
}

impl sqllogictest::DB for RiffleDb {
    type Error = SqlError;
    type ColumnType = Kind;

    fn run(&mut self, sql: &str) -> Result<DBOutput<Kind>, SqlError> {
        // The runner polls this inside its own executor, and Riffle's
        // blocking calls may not nest in one: run on a thread of its own.
        std::thread::scope(|s| {
            s.spawn(|| self.run_here(sql))
                .join()
                .unwrap_or_else(|_| Err(SqlError("the statement panicked".into())))
        })
    }

    fn engine_name(&self) -> &str {
        "Riffle"
    }
}

impl RiffleDb {
    fn run_here(&self, sql: &str) -> Result<DBOutput<Kind>, SqlError> {
        let frame = self.ctx.sql(sql)?;
        let batches = frame.collect()?;
        // The types of what ran (DataFusion's runner takes the physical
        // plan's): the statement's unanalyzed schema lacks the coercions
        // (a UNION of INT and TEXT columns is TEXT).
        let schema = match batches.first() {
            Some(batch) => batch.schema(),
            None => frame.schema(),
        };
        let types: Vec<Kind> = schema
            .fields()
            .iter()
            .map(|f| kind(f.data_type()))
            .collect();
        let rows = rows(&schema, &batches)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }
}

fn rows(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SqlError> {
    let mut rows = Vec::new();
    for batch in batches {
        if batch.num_columns() != schema.fields().len() {
            return Err(SqlError(format!(
                "result batch has {} columns, the plan's schema {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|c| cell(c, row))
                .collect::<Result<Vec<_>, _>>()?;
            expand(cells, &mut rows);
        }
    }
    Ok(rows)
}

/// A row whose last cell holds several lines becomes one row per line,
/// numbered and with leading spaces shown as `-`, as DataFusion's runner
/// prints them (sqllogictest compares whitespace loosely).
fn expand(mut row: Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(last) = row.pop() else {
        out.push(row);
        return;
    };
    if !last.contains('\n') {
        row.push(last);
        out.push(row);
        return;
    }
    out.push(row);
    for (i, line) in last.split('\n').enumerate() {
        let content = line.trim_start();
        let indent = "-".repeat(line.len() - content.len());
        out.push(vec![format!("{:02}){indent}{content}", i + 1)]);
    }
}

/// A value as DataFusion's test files write it: `NULL`, `(empty)` for an
/// empty string, floats and decimals rounded to 12 places with trailing
/// zeros dropped, `NaN`/`Infinity`, everything else as DataFusion's
/// default display options print it.
fn cell(col: &ArrayRef, row: usize) -> Result<String, SqlError> {
    if col.is_null(row) {
        return Ok("NULL".into());
    }
    Ok(match col.data_type() {
        DataType::Null => "NULL".into(),
        DataType::Boolean => col.as_boolean().value(row).to_string(),
        // As DataFusion does: a narrow float's own shortest form, not
        // the digits of its widening to f64.
        DataType::Float16 => {
            let v = col.as_primitive::<Float16Type>().value(row);
            narrow(v.to_f64(), &v.to_string())
        }
        DataType::Float32 => {
            let v = col.as_primitive::<Float32Type>().value(row);
            narrow(f64::from(v), &v.to_string())
        }
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(row), 12),
        DataType::Decimal32(_, s) => dec::<Decimal32Type>(col, row, *s),
        DataType::Decimal64(_, s) => dec::<Decimal64Type>(col, row, *s),
        DataType::Decimal128(_, s) => dec::<Decimal128Type>(col, row, *s),
        DataType::Decimal256(_, s) => dec::<Decimal256Type>(col, row, *s),
        DataType::Utf8 => text(col.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => text(col.as_string::<i64>().value(row)),
        DataType::Utf8View => text(col.as_string_view().value(row)),
        DataType::Dictionary(..) => {
            let dict = col.as_any_dictionary();
            let key = dict.normalized_keys()[row];
            cell(dict.values(), key)?
        }
        _ => {
            let options = riffle::sql::datafusion::config::FormatOptions {
                null: "NULL".into(),
                ..Default::default()
            };
            let options: riffle::arrow::util::display::FormatOptions<'_> = (&options)
                .try_into()
                .map_err(|e| SqlError(format!("display options: {e}")))?;
            ArrayFormatter::try_new(col.as_ref(), &options)
                .map_err(|e| SqlError(format!("cannot display {}: {e}", col.data_type())))?
                .value(row)
                .to_string()
        }
    })
}

fn text(s: &str) -> String {
    if s.is_empty() {
        "(empty)".into()
    } else {
        s.trim_end_matches('\n').replace('\0', "\\0")
    }
}

fn float(v: f64, places: i64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        decimal(&v.to_string(), places)
    }
}

fn narrow(wide: f64, shortest: &str) -> String {
    if wide.is_finite() {
        decimal(shortest, 12)
    } else {
        float(wide, 12)
    }
}

fn decimal(text: &str, places: i64) -> String {
    match BigDecimal::from_str(text) {
        Ok(d) => d.round(places).normalized().to_plain_string(),
        Err(_) => text.to_string(),
    }
}

fn dec<T: DecimalType>(col: &ArrayRef, row: usize, scale: i8) -> String {
    let v = col.as_primitive::<T>().value(row);
    decimal(&T::format_decimal(v, u8::MAX, scale), i64::from(scale))
}

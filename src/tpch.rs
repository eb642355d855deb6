//! The TPC-H benchmark: data and queries.
//!
//! [`generate`] writes the 8 TPC-H tables at a scale factor as Parquet, one
//! file per table (`out/<table>/part-0.parquet`), with the `tpchgen`
//! generator (a port of the reference `dbgen`, same rows). The tables are
//! generated in parallel. Strings are written as Arrow `Utf8View`, prices as
//! `Decimal128(15, 2)` and dates as `Date32`; columns carry the lowercase
//! names of the specification (`l_orderkey`, `o_orderdate`, ...).
//!
//! [`query`] returns the text of the 22 queries, with the substitution
//! parameters of the specification's validation run, from
//! `benches/tpch/queries/qN.sql`. Each file holds one statement (Q15's view
//! is a CTE) in SQL that DataFusion accepts.

use std::fs::{self, File};
use std::path::Path;

use anyhow::{Context, bail};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::arrow::datatypes::SchemaRef;
use tpchgen_arrow::arrow::error::ArrowError;
use tpchgen_arrow::arrow::record_batch::RecordBatch;
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// The table names, in the order the queries are usually listed.
pub const TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

/// Rows per generated Arrow batch.
const BATCH_SIZE: usize = 8192;

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Tables written (8).
    pub tables: usize,
    /// Rows over all tables.
    pub rows: u64,
    /// Bytes of Parquet on disk over all tables.
    pub bytes: u64,
}

/// Writes the 8 TPC-H tables at `scale` as Parquet under
/// `out/<table>/part-0.parquet` (creating dirs).
///
/// The scale factor is the usual one: 1 is about 1 GB of raw data (6 million
/// `lineitem` rows); fractions such as 0.01 make small test sets. Existing
/// files are overwritten. Parquet is Snappy-compressed.
pub fn generate(scale: f64, out: &Path) -> anyhow::Result<GenerateSummary> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("TPC-H scale factor must be a positive number, got {scale}");
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = TABLES
        .par_iter()
        .map(|table| generate_table(table, scale, out))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut summary = GenerateSummary {
        tables: written.len(),
        ..GenerateSummary::default()
    };
    for (rows, bytes) in written {
        summary.rows += rows;
        summary.bytes += bytes;
    }
    Ok(summary)
}

/// Writes one table to `out/<table>/part-0.parquet`; returns (rows, bytes).
fn generate_table(table: &str, scale: f64, out: &Path) -> anyhow::Result<(u64, u64)> {
    let dir = out.join(table);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("part-0.parquet");
    let (sf, part, parts) = (scale, 1, 1);
    let written = match table {
        "customer" => write_parquet(
            CustomerArrow::new(CustomerGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            CustomerArrow::schema_ref(),
            &path,
        ),
        "lineitem" => write_parquet(
            LineItemArrow::new(LineItemGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            LineItemArrow::schema_ref(),
            &path,
        ),
        "nation" => write_parquet(
            NationArrow::new(NationGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            NationArrow::schema_ref(),
            &path,
        ),
        "orders" => write_parquet(
            OrderArrow::new(OrderGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            OrderArrow::schema_ref(),
            &path,
        ),
        "part" => write_parquet(
            PartArrow::new(PartGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            PartArrow::schema_ref(),
            &path,
        ),
        "partsupp" => write_parquet(
            PartSuppArrow::new(PartSuppGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            PartSuppArrow::schema_ref(),
            &path,
        ),
        "region" => write_parquet(
            RegionArrow::new(RegionGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            RegionArrow::schema_ref(),
            &path,
        ),
        "supplier" => write_parquet(
            SupplierArrow::new(SupplierGenerator::new(sf, part, parts)).with_batch_size(BATCH_SIZE),
            SupplierArrow::schema_ref(),
            &path,
        ),
        other => bail!("unknown TPC-H table {other:?}"),
    };
    written.with_context(|| format!("writing TPC-H table {table} to {}", path.display()))
}

/// Writes `batches` to a new Parquet file at `path`; returns (rows, bytes).
fn write_parquet<I>(batches: I, schema: SchemaRef, path: &Path) -> anyhow::Result<(u64, u64)>
where
    I: Iterator<Item = Result<RecordBatch, ArrowError>>,
{
    let file = File::create(path)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    let bytes = fs::metadata(path)?.len();
    Ok((rows, bytes))
}

/// The 22 queries, `QUERIES[n - 1]` being query `n`.
const QUERIES: [&str; 22] = [
    include_str!("../benches/tpch/queries/q1.sql"),
    include_str!("../benches/tpch/queries/q2.sql"),
    include_str!("../benches/tpch/queries/q3.sql"),
    include_str!("../benches/tpch/queries/q4.sql"),
    include_str!("../benches/tpch/queries/q5.sql"),
    include_str!("../benches/tpch/queries/q6.sql"),
    include_str!("../benches/tpch/queries/q7.sql"),
    include_str!("../benches/tpch/queries/q8.sql"),
    include_str!("../benches/tpch/queries/q9.sql"),
    include_str!("../benches/tpch/queries/q10.sql"),
    include_str!("../benches/tpch/queries/q11.sql"),
    include_str!("../benches/tpch/queries/q12.sql"),
    include_str!("../benches/tpch/queries/q13.sql"),
    include_str!("../benches/tpch/queries/q14.sql"),
    include_str!("../benches/tpch/queries/q15.sql"),
    include_str!("../benches/tpch/queries/q16.sql"),
    include_str!("../benches/tpch/queries/q17.sql"),
    include_str!("../benches/tpch/queries/q18.sql"),
    include_str!("../benches/tpch/queries/q19.sql"),
    include_str!("../benches/tpch/queries/q20.sql"),
    include_str!("../benches/tpch/queries/q21.sql"),
    include_str!("../benches/tpch/queries/q22.sql"),
];

/// The text of query `n` (1..=22), read at compile time with `include_str!`
/// from `benches/tpch/queries/qN.sql`; `None` for any other `n`.
pub fn query(n: usize) -> Option<&'static str> {
    n.checked_sub(1).and_then(|i| QUERIES.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use riffle_sql::datafusion::prelude::{ParquetReadOptions, SessionContext};

    /// Rows of a Parquet file, read back batch by batch.
    fn parquet_rows(path: &Path) -> u64 {
        let file = File::open(path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet footer")
            .build()
            .expect("parquet reader");
        reader
            .map(|batch| batch.expect("parquet batch").num_rows() as u64)
            .sum()
    }

    #[test]
    fn generates_the_eight_tables_at_scale_0_01() {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate(0.01, dir.path()).expect("generate");
        assert_eq!(summary.tables, 8);
        assert!(summary.bytes > 0);
        let mut rows = 0;
        for table in TABLES {
            let path = dir.path().join(table).join("part-0.parquet");
            assert!(path.is_file(), "{} missing", path.display());
            rows += parquet_rows(&path);
        }
        assert_eq!(rows, summary.rows);
        // dbgen: 6,001,215 lineitem rows at SF 1, 60,175 at SF 0.01.
        let lineitem = parquet_rows(&dir.path().join("lineitem/part-0.parquet"));
        assert!(
            (59_000..=61_500).contains(&lineitem),
            "lineitem rows {lineitem}"
        );
        assert_eq!(parquet_rows(&dir.path().join("nation/part-0.parquet")), 25);
        assert_eq!(parquet_rows(&dir.path().join("region/part-0.parquet")), 5);
        assert_eq!(
            parquet_rows(&dir.path().join("orders/part-0.parquet")),
            15_000
        );
    }

    #[test]
    fn rejects_a_bad_scale() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(generate(0.0, dir.path()).is_err());
        assert!(generate(f64::NAN, dir.path()).is_err());
    }

    #[test]
    fn has_the_22_queries() {
        for n in 1..=22 {
            let text = query(n).unwrap_or_else(|| panic!("query {n} missing"));
            assert!(text.to_lowercase().contains("select"), "query {n}");
            // One statement per file: at most a trailing semicolon.
            let body = text.trim_end().trim_end_matches(';');
            assert!(
                !body.contains(';'),
                "query {n} holds more than one statement"
            );
        }
        assert_eq!(query(0), None);
        assert_eq!(query(23), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_queries_plan_and_run_on_datafusion() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(0.01, dir.path()).expect("generate");
        let ctx = SessionContext::new();
        for table in TABLES {
            let path = format!("{}/", dir.path().join(table).display());
            ctx.register_parquet(table, &path, ParquetReadOptions::default())
                .await
                .unwrap_or_else(|e| panic!("register {table}: {e}"));
        }
        let mut rows = Vec::new();
        for n in 1..=22 {
            let text = query(n).expect("query");
            let df = ctx
                .sql(text)
                .await
                .unwrap_or_else(|e| panic!("planning Q{n}: {e}"));
            let batches = df
                .collect()
                .await
                .unwrap_or_else(|e| panic!("running Q{n}: {e}"));
            let count: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("Q{n}: {count} rows");
            rows.push(count);
        }
        assert_eq!(rows[0], 4, "Q1 groups by (returnflag, linestatus)");
        assert_eq!(rows[2], 10, "Q3 is limit 10");
        assert!(rows[12] > 10, "Q13 has many c_count groups");
        // Single-row aggregates.
        for n in [6, 14, 17, 19] {
            assert_eq!(rows[n - 1], 1, "Q{n}");
        }
    }
}

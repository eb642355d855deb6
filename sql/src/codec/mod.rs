//! Serializing Riffle's plan nodes inside DataFusion fragments.
//!
//! datafusion-proto serializes DataFusion's own nodes; it hands Riffle's
//! nodes to [`RiffleCodec`], which encodes their fields (children are
//! encoded by datafusion-proto and given back on decode). What
//! datafusion-proto 55 loses of its own nodes is carried by
//! [`RiffleConverter`], and [`check_round_trip`] proves, per
//! fragment, that nothing else was lost.

mod gaps;

pub use gaps::RiffleConverter;

use crate::exec::{ReaderLayout, ShuffleReaderExec, ShuffleWriterExec};
use crate::regex_table::RegexScanExec;
use arrow_schema::{Schema, SchemaRef};
use datafusion::common::{Constraint, Constraints, DataFusionError, Result};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::physical_plan::from_proto::{
    parse_physical_sort_exprs, parse_protobuf_partitioning,
};
use datafusion_proto::physical_plan::to_proto::{
    serialize_partitioning, serialize_physical_sort_exprs,
};
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use prost::Message;
use riffle_planner::ids::ShuffleId;
use riffle_planner::task::BlockLocation;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Encodes and decodes Riffle's physical plan nodes.
#[derive(Debug, Default, Clone)]
pub struct RiffleCodec;

/// A shuffle reader's declared equivalences
/// ([`ShuffleReaderExec::with_equivalences`]), expressions protobuf-encoded.
#[derive(Serialize, Deserialize, Default)]
struct Equivalences {
    /// Classes of expressions known equal (`a = b` below).
    classes: Vec<Vec<Vec<u8>>>,
    /// Expressions known constant.
    constants: Vec<Constant>,
    /// Orderings every partition satisfies (`PhysicalSortExprNode`s).
    orderings: Vec<Vec<Vec<u8>>>,
    /// Keys: column indices, and whether each is a primary key (else
    /// unique).
    keys: Vec<(bool, Vec<usize>)>,
}

/// A constant expression (protobuf-encoded) and its value across
/// partitions.
#[derive(Serialize, Deserialize)]
struct Constant {
    expr: Vec<u8>,
    across: Across,
}

/// `AcrossPartitions`, the value as a protobuf-encoded literal.
#[derive(Serialize, Deserialize)]
enum Across {
    Heterogeneous,
    Uniform(Option<Vec<u8>>),
}

#[derive(Serialize, Deserialize)]
enum Node {
    Writer {
        /// `datafusion_proto::protobuf::Partitioning`, prost-encoded.
        partitioning: Vec<u8>,
    },
    Reader {
        shuffle: ShuffleId,
        schema: Vec<u8>,
        layout: ReaderLayout,
        partitions: Vec<Vec<BlockLocation>>,
        /// The declared hash partitioning, protobuf-encoded.
        hash: Option<Vec<u8>>,
        /// What it declares of its rows.
        equivalences: Equivalences,
    },
    RegexScan {
        files: Vec<String>,
        regex: String,
        options: crate::regex_table::ScanOptions,
        table_schema: Vec<u8>,
        projection: Vec<usize>,
    },
    /// A DataFusion node (the only input, as datafusion-proto encoded it)
    /// and what that encoding lost.
    Repair(gaps::Repair),
}

fn error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(format!("riffle codec: {}", message.into()))
}

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// A schema as Arrow IPC bytes (a stream with no batches).
pub(crate) fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The schema of [`schema_to_bytes`]'s output, checked as a shuffle block
/// is (a plan's bytes come from the driver, over the network).
pub(crate) fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    riffle_shuffle::reader::read_schema("a schema in a plan", bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| error(riffle_planner::report(&e)))
}

impl PhysicalExtensionCodec for RiffleCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (node, _): (Node, usize) =
            riffle_planner::codec::decode_bounded(buf).map_err(|e| error(e.to_string()))?;
        match node {
            Node::Writer { partitioning } => {
                let input = inputs
                    .first()
                    .ok_or_else(|| error("a shuffle writer needs its input"))?;
                let partitioning = decode_partitioning(
                    &partitioning,
                    &input.schema(),
                    ctx,
                    self,
                    proto_converter,
                )?
                .ok_or_else(|| error("shuffle writer without partitioning"))?;
                Ok(Arc::new(ShuffleWriterExec::new(
                    input.clone(),
                    partitioning,
                )))
            }
            Node::Reader {
                shuffle,
                schema,
                layout,
                partitions,
                hash,
                equivalences,
            } => {
                let schema = schema_from_bytes(&schema)?;
                let equivalences =
                    decode_equivalences(&equivalences, &schema, ctx, self, proto_converter)?;
                let hash = match hash {
                    Some(bytes) => {
                        decode_partitioning(&bytes, &schema, ctx, self, proto_converter)?
                    }
                    None => None,
                };
                Ok(Arc::new(
                    ShuffleReaderExec::with_blocks(shuffle, schema, layout, partitions)
                        .hash_partitioned(hash)
                        .with_equivalences(equivalences),
                ))
            }
            Node::RegexScan {
                files,
                regex,
                options,
                table_schema,
                projection,
            } => Ok(Arc::new(RegexScanExec::try_new(
                files,
                regex,
                options,
                schema_from_bytes(&table_schema)?,
                projection,
            )?)),
            Node::Repair(repair) => gaps::rebuild(repair, inputs),
        }
    }

    fn try_decode_expr(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn PhysicalExpr>],
        _ctx: &datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx<
            '_,
        >,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let (node, _): (gaps::ExprNode, usize) =
            riffle_planner::codec::decode_bounded(buf).map_err(|e| error(e.to_string()))?;
        Ok(gaps::decode_expr(node))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let message = if let Some(w) = node.downcast_ref::<ShuffleWriterExec>() {
            let proto = serialize_partitioning(w.partitioning(), self, proto_converter)?;
            Node::Writer {
                partitioning: proto.encode_to_vec(),
            }
        } else if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
            Node::Reader {
                shuffle: r.shuffle(),
                schema: schema_to_bytes(&r.schema())?,
                layout: r.layout(),
                partitions: r.blocks().to_vec(),
                hash: r
                    .hash()
                    .map(|h| serialize_partitioning(h, self, proto_converter))
                    .transpose()?
                    .map(|p| p.encode_to_vec()),
                equivalences: encode_equivalences(r.equivalences(), self, proto_converter)?,
            }
        } else if let Some(scan) = node.downcast_ref::<RegexScanExec>() {
            Node::RegexScan {
                files: scan.files().to_vec(),
                regex: scan.regex().to_string(),
                options: scan.options(),
                table_schema: schema_to_bytes(scan.table_schema())?,
                projection: scan.projection().to_vec(),
            }
        } else {
            return Err(error(format!("cannot encode plan node {}", node.name())));
        };
        let bytes =
            bincode::serde::encode_to_vec(&message, CONFIG).map_err(|e| error(e.to_string()))?;
        buf.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Whether `plan` is one of Riffle's nodes, which [`RiffleCodec`] encodes.
fn is_riffle_node(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<ShuffleWriterExec>() || plan.is::<ShuffleReaderExec>() || plan.is::<RegexScanExec>()
}

/// A partitioning encoded by `serialize_partitioning`, over `schema`.
fn decode_partitioning(
    bytes: &[u8],
    schema: &Schema,
    ctx: &TaskContext,
    codec: &RiffleCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Result<Option<Partitioning>> {
    let proto = datafusion_proto::protobuf::Partitioning::decode(bytes)
        .map_err(|e| error(e.to_string()))?;
    let dctx = PhysicalPlanDecodeContext::new(ctx, codec);
    parse_protobuf_partitioning(Some(&proto), &dctx, schema, converter)
}

fn encode_equivalences(
    eq: &EquivalenceProperties,
    codec: &RiffleCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Result<Equivalences> {
    let expr = |e: &Arc<dyn PhysicalExpr>| -> Result<Vec<u8>> {
        Ok(converter.physical_expr_to_proto(e, codec)?.encode_to_vec())
    };
    let classes = eq
        .eq_group()
        .iter()
        .filter(|class| class.len() > 1)
        .map(|class| class.iter().map(expr).collect::<Result<Vec<_>>>())
        .collect::<Result<Vec<_>>>()?;
    let constants = eq
        .constants()
        .iter()
        .map(|c| {
            let across = match &c.across_partitions {
                AcrossPartitions::Heterogeneous => Across::Heterogeneous,
                AcrossPartitions::Uniform(None) => Across::Uniform(None),
                AcrossPartitions::Uniform(Some(value)) => {
                    let literal: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(value.clone()));
                    Across::Uniform(Some(expr(&literal)?))
                }
            };
            Ok(Constant {
                expr: expr(&c.expr)?,
                across,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let orderings = eq
        .oeq_class()
        .iter()
        .map(|ordering| {
            serialize_physical_sort_exprs(ordering.iter().cloned(), codec, converter)
                .map(|nodes| nodes.iter().map(|n| n.encode_to_vec()).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let keys = eq
        .constraints()
        .iter()
        .map(|c| match c {
            Constraint::PrimaryKey(columns) => (true, columns.clone()),
            Constraint::Unique(columns) => (false, columns.clone()),
        })
        .collect();
    Ok(Equivalences {
        classes,
        constants,
        orderings,
        keys,
    })
}

fn decode_equivalences(
    encoded: &Equivalences,
    schema: &SchemaRef,
    ctx: &TaskContext,
    codec: &RiffleCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> Result<EquivalenceProperties> {
    let dctx = PhysicalPlanDecodeContext::new(ctx, codec);
    let expr = |bytes: &Vec<u8>| -> Result<Arc<dyn PhysicalExpr>> {
        let node = datafusion_proto::protobuf::PhysicalExprNode::decode(bytes.as_slice())
            .map_err(|e| error(e.to_string()))?;
        converter.proto_to_physical_expr(&node, schema, &dctx)
    };
    let keys = encoded
        .keys
        .iter()
        .map(|(primary, columns)| match primary {
            true => Constraint::PrimaryKey(columns.clone()),
            false => Constraint::Unique(columns.clone()),
        })
        .collect();
    let mut eq = EquivalenceProperties::new(schema.clone())
        .with_constraints(Constraints::new_unverified(keys));
    for class in &encoded.classes {
        let exprs = class.iter().map(expr).collect::<Result<Vec<_>>>()?;
        if let Some((first, rest)) = exprs.split_first() {
            for other in rest {
                eq.add_equal_conditions(first.clone(), other.clone())?;
            }
        }
    }
    let constants = encoded
        .constants
        .iter()
        .map(|constant| {
            let across = match &constant.across {
                Across::Heterogeneous => AcrossPartitions::Heterogeneous,
                Across::Uniform(None) => AcrossPartitions::Uniform(None),
                Across::Uniform(Some(literal)) => {
                    let literal = expr(literal)?;
                    let value = literal
                        .downcast_ref::<Literal>()
                        .ok_or_else(|| error("a constant's value is not a literal"))?
                        .value()
                        .clone();
                    AcrossPartitions::Uniform(Some(value))
                }
            };
            Ok(ConstExpr::new(expr(&constant.expr)?, across))
        })
        .collect::<Result<Vec<_>>>()?;
    eq.add_constants(constants)?;
    let orderings = encoded
        .orderings
        .iter()
        .map(|ordering| {
            let nodes = ordering
                .iter()
                .map(|b| {
                    datafusion_proto::protobuf::PhysicalSortExprNode::decode(b.as_slice())
                        .map_err(|e| error(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            parse_physical_sort_exprs(&nodes, &dctx, schema, converter)
        })
        .collect::<Result<Vec<_>>>()?;
    eq.add_orderings(orderings);
    Ok(eq)
}

/// Encodes a fragment.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
        plan,
        &RiffleCodec,
        &RiffleConverter,
    )
    .map(|b| b.to_vec())
}

/// Checks that `plan` survives the codec whole: encoded and decoded, as an
/// executor will see it, it must be the very plan that was optimized. A
/// field the encoding drops (datafusion-proto 55 drops several, which
/// `codec/gaps.rs` carries; a window aggregate's `FILTER` is out of any codec's
/// reach) would otherwise run as another query and answer wrongly without
/// an error. Plans are compared by their full `Debug` form, which shows every
/// expression and option, not only what `EXPLAIN` prints.
///
/// Errors: the fragment cannot be encoded or decoded, or it decodes
/// differently; the error names the first node that differs and shows
/// where.
pub fn check_round_trip(plan: &Arc<dyn ExecutionPlan>, ctx: &TaskContext) -> Result<()> {
    let bytes = encode_plan(plan.clone())?;
    let decoded = decode_plan(&bytes, ctx)?;
    let plan = &as_decoded(plan.clone())?;
    let Some((original, back)) = first_difference(plan, &decoded) else {
        return Ok(());
    };
    let (a, b) = (comparable(&original), comparable(&back));
    let at = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(0);
    let excerpt = |s: &str| {
        let start = s.floor_char_boundary(at.saturating_sub(60));
        let end = s.ceil_char_boundary((at + 60).min(s.len()));
        s[start..end].to_string()
    };
    Err(DataFusionError::NotImplemented(format!(
        "{REFUSED} {} node intact to its executors, so it refuses to run it there rather than risk a wrong answer: planned `...{}...`, would run `...{}...`",
        original.name(),
        excerpt(&a),
        excerpt(&b)
    )))
}

const REFUSED: &str = "Riffle cannot ship this query's";

/// Whether `e` says that a fragment cannot reach the executors intact (a
/// node the codec cannot encode, or one that would decode differently)
/// rather than that the query is wrong in itself: such a query can still
/// run whole in one process (if it ends: see `ExecutionPlan::boundedness`).
pub fn is_unshippable(e: &DataFusionError) -> bool {
    let text = e.to_string();
    text.contains(REFUSED) || text.contains("riffle codec: cannot encode plan node")
}

/// `plan` with the nodes decoding builds otherwise, for the same rows,
/// built as decoding builds them:
/// - a union (`UnionExec::try_new`) casts an input whose field types
///   differ from the union's (a `NULL` column unioned with numbers) where
///   the planner left it alone: one more projection;
/// - a window node without `PARTITION BY` comes back with its
///   `can_repartition` flag cleared (datafusion-proto recovers the flag
///   from the partition keys, of which there are none), a flag that only
///   ever selects those keys.
fn as_decoded(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_plan::union::UnionExec;
    use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
    plan.transform_up(|node| {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(union) = any.downcast_ref::<UnionExec>() {
            return Ok(Transformed::yes(UnionExec::try_new(
                union.inputs().clone(),
            )?));
        }
        let unpartitioned = |exprs: &[Arc<dyn datafusion::physical_plan::WindowExpr>]| {
            exprs.first().is_some_and(|e| e.partition_by().is_empty())
        };
        if let Some(window) = any.downcast_ref::<WindowAggExec>()
            && unpartitioned(window.window_expr())
        {
            let rebuilt = WindowAggExec::try_new(
                window.window_expr().to_vec(),
                window.input().clone(),
                false,
            )?;
            return Ok(Transformed::yes(Arc::new(rebuilt)));
        }
        if let Some(window) = any.downcast_ref::<BoundedWindowAggExec>()
            && unpartitioned(window.window_expr())
        {
            let rebuilt = BoundedWindowAggExec::try_new(
                window.window_expr().to_vec(),
                window.input().clone(),
                window.input_order_mode.clone(),
                false,
            )?;
            return Ok(Transformed::yes(Arc::new(rebuilt)));
        }
        Ok(Transformed::no(node))
    })
    .map(|t| t.data)
}

/// `plan` and every node below it.
fn nodes(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut out = vec![plan.clone()];
    for child in plan.children() {
        out.extend(nodes(child));
    }
    out
}

/// The deepest pair of nodes that differ, walking both trees together
/// (`None` if they are the same).
fn first_difference(
    a: &Arc<dyn ExecutionPlan>,
    b: &Arc<dyn ExecutionPlan>,
) -> Option<(Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>)> {
    if comparable(a) == comparable(b) {
        return None;
    }
    let (ca, cb) = (a.children(), b.children());
    if ca.len() == cb.len() {
        for (x, y) in ca.into_iter().zip(cb) {
            if let Some(found) = first_difference(x, y) {
                return Some(found);
            }
        }
    }
    Some((a.clone(), b.clone()))
}

/// A node's `Debug` form (its subtree included), without what the codec
/// rebuilds rather than ships and what does not change the result:
/// - an aggregate's `schema`, which the planner may take from a wider plan
///   than the node's input (decoding takes the input's; expressions refer
///   to the same columns either way);
/// - the `leading_map` of derived ordering properties, a hash map whose
///   `Debug` order differs between two equal plans;
/// - a dictionary field's `dict_id`, which Arrow no longer uses;
/// - an ordered aggregate's `is_input_pre_ordered`: decoded as `false`, the
///   aggregate sorts its input itself, as it must when nobody else did.
fn comparable(plan: &Arc<dyn ExecutionPlan>) -> String {
    let mut text = format!("{plan:?}");
    // A CSV sink's `Debug` hides its options: show them.
    for node in nodes(plan) {
        if let Some(exec) = node.downcast_ref::<DataSinkExec>() {
            let sink: &dyn std::any::Any = exec.sink();
            if let Some(csv) = sink.downcast_ref::<CsvSink>() {
                text.push_str(&format!(" csv sink: {:?}", csv.writer_options()));
            }
        }
    }
    let text = blank_braces(&text, "schema: Schema {", Some(", order_bys:"));
    let text = blank_braces(&text, "leading_map: {", None);
    let text = text.replace("is_input_pre_ordered: true", "is_input_pre_ordered: false");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(", dict_id: ") {
        out.push_str(&rest[..at]);
        rest = rest[at + ", dict_id: ".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// `text` with the braces opened by each `open` (and what they hold)
/// replaced by `_`; with `next`, only where the closing brace is followed
/// by it.
fn blank_braces(text: &str, open: &str, next: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        // The matching closing brace.
        let body = &rest[start + open.len()..];
        let mut depth = 1;
        let end = body.char_indices().find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        match end {
            Some(end) if next.is_none_or(|n| body[end + 1..].starts_with(n)) => {
                out.push_str(&rest[..start + open.len() - 1]);
                out.push('_');
                rest = &body[end + 1..];
            }
            _ => {
                out.push_str(&rest[..start + open.len()]);
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes a fragment; `ctx` must know the object stores it reads.
///
/// # Errors
///
/// Bytes that are not a fragment, including corrupt ones: datafusion-proto
/// 55 trusts its input in places (a flipped bit made it panic in the
/// hostile-input test, `sql/tests/stages.rs`), so a panic while decoding
/// is caught and becomes an error too, never a panic on an executor.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
            bytes,
            ctx,
            &RiffleCodec,
        )
    }))
    .map_err(|panic| {
        DataFusionError::Plan(format!(
            "the {}-byte SQL fragment is corrupt: decoding it panicked: {}",
            bytes.len(),
            riffle_planner::error::panic_message(panic.as_ref())
        ))
    })?;
    gaps::repair_csv_sinks(decoded?)
}

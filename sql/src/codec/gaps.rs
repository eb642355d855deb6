//! What datafusion-proto 55 drops from the nodes it encodes itself, and
//! how Riffle carries it across anyway.
//!
//! datafusion-proto writes DataFusion's own nodes, and a few fields do not
//! survive the trip (issue 14; each would make an executor run another
//! query than the one planned):
//! - a window function's `IGNORE NULLS` (`first_value(x) IGNORE NULLS`,
//!   `lag`, `lead`, `nth_value`): written as `false`;
//! - a reversed window function (the optimizer evaluates `lag(x) OVER
//!   (ORDER BY x)` beside `... ORDER BY x DESC` over the reversed order,
//!   with the function's `reverse_expr`: `lag` with its reversal flag set,
//!   which negates the offset; `first_value` as `last_value`): the flag
//!   is not written, so `lag` decodes as a plain `lag` and reads the wrong
//!   neighbour;
//! - an aggregate's empty grouping sets (`GROUP BY GROUPING SETS (())`):
//!   the groups are flattened into nothing and decode as "no groups", so
//!   the aggregate returns no row;
//! - a `generate_series`/`range` scan that reads no column (`SELECT
//!   count(*) FROM generate_series(1, 10)`): written with the projected,
//!   empty schema, from which the decoded generator builds batches that
//!   fail ("number of columns(1) must match number of fields(0)");
//! - a Float16 literal: written as a Float32;
//! - a CSV sink's unset date and time formats: read back as empty strings.
//!
//! [`RiffleConverter`] encodes every node as datafusion-proto does, and
//! where something would be lost it wraps that encoding in a Riffle
//! extension node holding what was dropped (a [`Repair`]); decoding
//! rebuilds the node from datafusion-proto's decoding and the repair.
//! Float16 literals travel as Riffle extension expressions, and CSV sinks
//! are repaired after decoding ([`repair_csv_sinks`]).
//!
//! A window aggregate's `FILTER (WHERE ...)` cannot be carried this way:
//! DataFusion 55 gives no access to the filter of a built window
//! expression. Such fragments, and anything else that still decodes
//! differently, are caught by [`super::check_round_trip`] and run whole on
//! the driver.

use super::{CONFIG, Node, error};
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::physical_plan::FileSink;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::ReversedUDWF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::window::{
    StandardWindowExpr, StandardWindowFunctionExpr, WindowExpr,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, PhysicalGroupBy};
use datafusion::physical_plan::memory::LazyMemoryExec;
use datafusion::physical_plan::windows::{
    BoundedWindowAggExec, WindowAggExec, WindowUDFExpr, create_udwf_window_expr,
};
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    DefaultPhysicalProtoConverter, PhysicalExtensionCodec, PhysicalPlanDecodeContext,
    PhysicalPlanNodeExt, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{
    PhysicalExprNode, PhysicalExtensionExprNode, PhysicalExtensionNode, PhysicalPlanNode,
    physical_expr_node::ExprType, physical_plan_node::PhysicalPlanType,
};
use half::f16;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// More empty grouping sets than any query writes; bounds what a
/// corrupt fragment can make a decoder allocate.
const MAX_EMPTY_GROUPING_SETS: usize = 4096;

/// What datafusion-proto's encoding of a node lost, kept beside it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) enum Repair {
    /// An aggregate without grouping expressions but with this many
    /// (empty) grouping sets.
    EmptyGroupingSets(usize),
    /// The flags of each window expression of a window node, in order.
    Window(Vec<WindowFlags>),
    /// A lazy memory scan (`generate_series`) that reads no column; the
    /// input was encoded with the generator's full schema.
    EmptyProjection,
}

/// What a window function expression holds beyond datafusion-proto's
/// encoding.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct WindowFlags {
    ignore_nulls: bool,
    reversed: bool,
}

/// An expression Riffle encodes itself.
#[derive(Serialize, Deserialize)]
pub(super) enum ExprNode {
    /// A Float16 literal, as its bits (`None`: a NULL).
    Float16(Option<u16>),
}

/// datafusion-proto's encoding with the gaps above filled in; use it to
/// encode fragments (decoding needs nothing but [`super::RiffleCodec`]).
#[derive(Debug, Default, Clone)]
pub struct RiffleConverter;

impl PhysicalProtoConverterExtension for RiffleConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalProtoConverter {}.proto_to_execution_plan(proto, ctx)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> Result<PhysicalPlanNode> {
        // datafusion-proto encodes the inputs of an extension node itself,
        // past this converter, and every stage's root is one (a shuffle
        // writer): Riffle's own nodes are encoded here, their inputs
        // through the converter.
        if super::is_riffle_node(plan) {
            let mut node = Vec::new();
            codec.try_encode(plan.clone(), &mut node, self)?;
            let inputs = plan
                .children()
                .into_iter()
                .map(|child| self.execution_plan_to_proto(child, codec))
                .collect::<Result<Vec<_>>>()?;
            return Ok(PhysicalPlanNode {
                physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
                    node,
                    inputs,
                })),
            });
        }
        let mut stock =
            PhysicalPlanNode::try_from_physical_plan_with_converter(plan.clone(), codec, self)?;
        let repair = match repair_of(plan)? {
            Some(repair) => repair,
            None if unprojected_series(plan, &mut stock)? => Repair::EmptyProjection,
            None => return Ok(stock),
        };
        let node = bincode::serde::encode_to_vec(Node::Repair(repair), CONFIG)
            .map_err(|e| error(e.to_string()))?;
        Ok(PhysicalPlanNode {
            physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
                node,
                inputs: vec![stock],
            })),
        })
    }

    fn proto_to_physical_expr(
        &self,
        proto: &PhysicalExprNode,
        input_schema: &datafusion::arrow::datatypes::Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        DefaultPhysicalProtoConverter {}.proto_to_physical_expr(proto, input_schema, ctx)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> Result<PhysicalExprNode> {
        if let Some(literal) = expr.downcast_ref::<Literal>()
            && let ScalarValue::Float16(value) = literal.value()
            && literal
                .return_field(&datafusion::arrow::datatypes::Schema::empty())?
                .metadata()
                .is_empty()
        {
            let node = ExprNode::Float16(value.map(f16::to_bits));
            return Ok(PhysicalExprNode {
                expr_id: expr.expression_id(),
                expr_type: Some(ExprType::Extension(PhysicalExtensionExprNode {
                    expr: bincode::serde::encode_to_vec(node, CONFIG)
                        .map_err(|e| error(e.to_string()))?,
                    inputs: vec![],
                })),
            });
        }
        serialize_physical_expr_with_converter(expr, codec, self)
    }
}

/// The expression [`ExprNode`] stands for.
pub(super) fn decode_expr(node: ExprNode) -> Arc<dyn PhysicalExpr> {
    match node {
        ExprNode::Float16(bits) => {
            Arc::new(Literal::new(ScalarValue::Float16(bits.map(f16::from_bits))))
        }
    }
}

/// What datafusion-proto would lose of `plan` itself (not of its
/// children, which are encoded on their own), if anything.
fn repair_of(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Repair>> {
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        let group_by = aggregate.group_expr();
        let lost = group_by.expr().is_empty() && !group_by.groups().is_empty();
        return Ok(lost.then(|| Repair::EmptyGroupingSets(group_by.groups().len())));
    }
    let exprs = if let Some(window) = plan.downcast_ref::<WindowAggExec>() {
        window.window_expr()
    } else if let Some(window) = plan.downcast_ref::<BoundedWindowAggExec>() {
        window.window_expr()
    } else {
        return Ok(None);
    };
    let flags = exprs
        .iter()
        .map(|expr| window_flags(expr, plan.name()))
        .collect::<Result<Vec<_>>>()?;
    let lost = flags.iter().any(|f| *f != WindowFlags::default());
    Ok(lost.then_some(Repair::Window(flags)))
}

/// Whether `plan` is a `generate_series` scan that reads no column, whose
/// datafusion-proto encoding `stock` now carries the generator's full
/// schema (that of DataFusion's `generate_series` table function: one
/// non-null `value` column) instead of the empty projected one.
fn unprojected_series(plan: &Arc<dyn ExecutionPlan>, stock: &mut PhysicalPlanNode) -> Result<bool> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion_proto::protobuf::generate_series_node::Args;
    let Some(exec) = plan.downcast_ref::<LazyMemoryExec>() else {
        return Ok(false);
    };
    let Some(PhysicalPlanType::GenerateSeries(node)) = &mut stock.physical_plan_type else {
        return Ok(false);
    };
    if !exec.schema().fields().is_empty() {
        return Ok(false);
    }
    let value = match &node.args {
        Some(Args::Int64Args(_)) => DataType::Int64,
        Some(Args::TimestampArgs(args)) => {
            DataType::Timestamp(TimeUnit::Nanosecond, args.tz.as_deref().map(Arc::from))
        }
        Some(Args::DateArgs(_)) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => return Ok(false),
    };
    let full = Schema::new(vec![Field::new("value", value, false)]);
    node.schema = Some((&full).try_into()?);
    Ok(true)
}

/// The flags of a window function expression (none for a window
/// aggregate, whose `IGNORE NULLS` datafusion-proto keeps).
///
/// `WindowUDFExpr` has no accessor for them in DataFusion 55; its derived
/// `Debug` form ends with both, after every field a user can name, so the
/// last occurrence of each is the field itself. Should a later DataFusion
/// print them otherwise, the node is reported as not encodable (the query
/// then runs on the driver), never guessed.
fn window_flags(expr: &Arc<dyn WindowExpr>, node: &str) -> Result<WindowFlags> {
    let Some(function) = expr
        .as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|s| {
            s.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
        })
    else {
        return Ok(WindowFlags::default());
    };
    let text = format!("{function:?}");
    let flag = |name: &str| -> Option<bool> {
        let key = format!(", {name}: ");
        let rest = &text[text.rfind(&key)? + key.len()..];
        match () {
            _ if rest.starts_with("true") => Some(true),
            _ if rest.starts_with("false") => Some(false),
            _ => None,
        }
    };
    match (flag("ignore_nulls"), flag("is_reversed")) {
        (Some(ignore_nulls), Some(reversed)) => Ok(WindowFlags {
            ignore_nulls,
            reversed,
        }),
        _ => Err(error(format!(
            "cannot encode plan node {node}: the flags of window function {} are unreadable",
            function.name()
        ))),
    }
}

/// `node` (datafusion-proto's decoding of what was encoded with `repair`)
/// as it was planned.
pub(super) fn rebuild(
    repair: Repair,
    inputs: &[Arc<dyn ExecutionPlan>],
) -> Result<Arc<dyn ExecutionPlan>> {
    let [node] = inputs else {
        return Err(error("a repaired node must have exactly one input"));
    };
    match repair {
        Repair::EmptyGroupingSets(n) => {
            let aggregate = node
                .downcast_ref::<AggregateExec>()
                .ok_or_else(|| error("empty grouping sets repair a node that is no aggregate"))?;
            let group_by = aggregate.group_expr();
            if !group_by.expr().is_empty()
                || !group_by.groups().is_empty()
                || n == 0
                || n > MAX_EMPTY_GROUPING_SETS
            {
                return Err(error(format!(
                    "{n} empty grouping sets do not fit the aggregate they repair"
                )));
            }
            let group_by =
                PhysicalGroupBy::new(vec![], vec![], vec![vec![]; n], group_by.has_grouping_set());
            // Built anew, the aggregate makes its own dynamic filter; one
            // shared with a scan below it would only prune, not change
            // rows, and an aggregate without grouping keys has none.
            let rebuilt = AggregateExec::try_new(
                *aggregate.mode(),
                group_by,
                aggregate.aggr_expr().to_vec(),
                aggregate.filter_expr().to_vec(),
                aggregate.input().clone(),
                aggregate.input_schema(),
            )?
            .with_limit_options(aggregate.limit_options());
            Ok(Arc::new(rebuilt))
        }
        Repair::EmptyProjection => {
            let scan = node
                .downcast_ref::<LazyMemoryExec>()
                .ok_or_else(|| error("an empty projection repairs a node that is no lazy scan"))?;
            let rebuilt = LazyMemoryExec::try_new(scan.schema(), scan.generators().clone())?
                .with_projection(Some(vec![]));
            Ok(Arc::new(rebuilt))
        }
        Repair::Window(flags) => {
            let repaired = |exprs: &[Arc<dyn WindowExpr>], input: &Arc<dyn ExecutionPlan>| {
                if exprs.len() != flags.len() {
                    return Err(error(format!(
                        "{} window flags for {} window expressions",
                        flags.len(),
                        exprs.len()
                    )));
                }
                let schema = input.schema();
                exprs
                    .iter()
                    .zip(&flags)
                    .map(|(expr, flags)| repair_window_expr(expr, *flags, &schema))
                    .collect::<Result<Vec<_>>>()
            };
            if let Some(window) = node.downcast_ref::<WindowAggExec>() {
                let exprs = repaired(window.window_expr(), window.input())?;
                let can_repartition = !window.partition_keys().is_empty();
                Ok(Arc::new(WindowAggExec::try_new(
                    exprs,
                    window.input().clone(),
                    can_repartition,
                )?))
            } else if let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() {
                let exprs = repaired(window.window_expr(), window.input())?;
                let can_repartition = !window.partition_keys().is_empty();
                Ok(Arc::new(BoundedWindowAggExec::try_new(
                    exprs,
                    window.input().clone(),
                    window.input_order_mode.clone(),
                    can_repartition,
                )?))
            } else {
                Err(error("window flags repair a node that is no window"))
            }
        }
    }
}

/// `expr` with `flags` set again.
fn repair_window_expr(
    expr: &Arc<dyn WindowExpr>,
    flags: WindowFlags,
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<Arc<dyn WindowExpr>> {
    if flags == WindowFlags::default() {
        return Ok(expr.clone());
    }
    let standard = expr
        .as_any()
        .downcast_ref::<StandardWindowExpr>()
        .ok_or_else(|| {
            error(format!(
                "window flags for {}, not a window function",
                expr.name()
            ))
        })?;
    let function = standard
        .get_standard_func_expr()
        .as_any()
        .downcast_ref::<WindowUDFExpr>()
        .ok_or_else(|| {
            error(format!(
                "window flags for {}, not a window UDF",
                expr.name()
            ))
        })?;
    // A reversed function was encoded as the function it became (its
    // `reverse_expr`, which may be itself); build the one it came from
    // and reverse it again, as the optimizer did.
    let fun = match (flags.reversed, function.fun().reverse_expr()) {
        (false, _) => function.fun().clone(),
        (true, ReversedUDWF::Reversed(original)) => original,
        (true, _) => {
            return Err(error(format!(
                "window function {} is marked reversed but has no reverse",
                function.fun().name()
            )));
        }
    };
    let mut rebuilt = create_udwf_window_expr(
        &fun,
        function.args(),
        schema,
        function.name().to_string(),
        flags.ignore_nulls,
    )?;
    if flags.reversed {
        rebuilt = rebuilt
            .reverse_expr()
            .ok_or_else(|| error(format!("window function {} cannot be reversed", fun.name())))?;
    }
    Ok(Arc::new(StandardWindowExpr::new(
        rebuilt,
        standard.partition_by(),
        standard.order_by(),
        standard.get_window_frame().clone(),
    )))
}

/// Undoes what datafusion-proto 55 decodes wrongly and Riffle can tell
/// for certain: a CSV sink's unset date, time and timestamp formats come
/// back as empty strings, with which Arrow's writer prints every such
/// value as an empty field (`COPY ... STORED AS CSV` wrote `,,1.5`). An
/// empty format means nothing, so it is unset again (and an empty NULL
/// string, the default, too).
pub(super) fn repair_csv_sinks(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSinkExec>() else {
            return Ok(Transformed::no(node));
        };
        let sink: &dyn std::any::Any = exec.sink();
        let Some(csv) = sink.downcast_ref::<CsvSink>() else {
            return Ok(Transformed::no(node));
        };
        let options = csv.writer_options();
        let w = &options.writer_options;
        let formats = [
            w.date_format(),
            w.datetime_format(),
            w.time_format(),
            w.timestamp_format(),
            w.timestamp_tz_format(),
        ];
        if !formats.contains(&Some("")) {
            return Ok(Transformed::no(node));
        }
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(w.header())
            .with_delimiter(w.delimiter())
            .with_quote(w.quote())
            .with_escape(w.escape())
            .with_double_quote(w.double_quote())
            .with_ignore_leading_whitespace(w.ignore_leading_whitespace())
            .with_ignore_trailing_whitespace(w.ignore_trailing_whitespace())
            .with_quote_style(w.quote_style())
            .with_line_terminator(w.line_terminator().clone());
        let keep = |f: Option<&str>| f.filter(|f| !f.is_empty()).map(str::to_string);
        // The empty string is also the writer's default NULL.
        if let Some(null) = keep(Some(w.null())) {
            writer = writer.with_null(null);
        }
        if let Some(f) = keep(w.date_format()) {
            writer = writer.with_date_format(f);
        }
        if let Some(f) = keep(w.datetime_format()) {
            writer = writer.with_datetime_format(f);
        }
        if let Some(f) = keep(w.time_format()) {
            writer = writer.with_time_format(f);
        }
        if let Some(f) = keep(w.timestamp_format()) {
            writer = writer.with_timestamp_format(f);
        }
        if let Some(f) = keep(w.timestamp_tz_format()) {
            writer = writer.with_timestamp_tz_format(f);
        }
        let sink = CsvSink::new(
            csv.config().clone(),
            CsvWriterOptions {
                writer_options: writer,
                compression: options.compression,
                compression_level: options.compression_level,
            },
        );
        Ok(Transformed::yes(Arc::new(DataSinkExec::new(
            exec.input().clone(),
            Arc::new(sink),
            exec.sort_order().clone(),
        )) as _))
    })
    .map(|t| t.data)
}

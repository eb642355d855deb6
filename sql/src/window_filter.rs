//! A window aggregate's `FILTER (WHERE p)` in a form that reaches the
//! executors.
//!
//! DataFusion 55 keeps the filter of a built window expression private,
//! and datafusion-proto does not encode it, so a fragment holding one
//! cannot be shipped intact (`codec::check_round_trip` refuses it and the
//! query runs whole on the driver). For an aggregate that skips NULL
//! inputs, though, the filter can be written into its arguments:
//! `sum(x) FILTER (WHERE p) OVER w` is `sum(CASE WHEN p THEN x END) OVER w`,
//! row for row, since a row whose `p` is not true then feeds the
//! aggregate a NULL, which it skips as the filter would have skipped the
//! row (`count(*)`'s argument is the constant 1, so it becomes
//! `count(CASE WHEN p THEN 1 END)`). The equivalence is the one Apache
//! Calcite's `AggregateCaseToFilterRule` applies in the other direction.
//! DataFusion applies a window FILTER inside each frame after the frame's
//! bounds are set, so frames (`ROWS`, `RANGE`, sliding ones that retract
//! rows) see the same rows either way, and `DISTINCT` too.
//!
//! Aggregates that keep NULLs (`array_agg`, `first_value`, `string_agg`
//! with NULL handling of its own, user-defined ones) are left alone and
//! run on the driver.

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{AggregateUDF, Expr, LogicalPlan, WindowFunctionDefinition, when};
use datafusion::optimizer::AnalyzerRule;
use std::any::Any;
use std::sync::Arc;

/// DataFusion's built-in aggregates whose result ignores NULL inputs, when
/// rows are added to a frame and when they leave a sliding one.
fn skipping_nulls() -> [Arc<AggregateUDF>; 17] {
    use datafusion::functions_aggregate::*;
    [
        sum::sum_udaf(),
        average::avg_udaf(),
        min_max::min_udaf(),
        min_max::max_udaf(),
        count::count_udaf(),
        stddev::stddev_udaf(),
        stddev::stddev_pop_udaf(),
        variance::var_samp_udaf(),
        variance::var_pop_udaf(),
        bool_and_or::bool_and_udaf(),
        bool_and_or::bool_or_udaf(),
        bit_and_or_xor::bit_and_udaf(),
        bit_and_or_xor::bit_or_udaf(),
        bit_and_or_xor::bit_xor_udaf(),
        median::median_udaf(),
        approx_distinct::approx_distinct_udaf(),
        approx_median::approx_median_udaf(),
    ]
}

/// The analyzer rule (see the module documentation).
#[derive(Debug, Default)]
pub struct WindowFilterAsCase;

impl AnalyzerRule for WindowFilterAsCase {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Window(_) = &node else {
                return Ok(Transformed::no(node));
            };
            if !node.expressions().iter().any(rewritable) {
                return Ok(Transformed::no(node));
            }
            let names = NamePreserver::new(&node);
            let node = node
                .map_expressions(|e| {
                    let saved = names.save(&e);
                    let rewritten = filter_as_case(e)?;
                    Ok(rewritten.update_data(|e| saved.restore(e)))
                })?
                .data
                .recompute_schema()?;
            Ok(Transformed::yes(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "riffle_window_filter_as_case"
    }
}

/// Whether `expr` is a filtered window aggregate of one argument that
/// skips NULLs.
fn rewritable(expr: &Expr) -> bool {
    let Expr::WindowFunction(window) = expr else {
        return false;
    };
    let params = &window.params;
    skips_nulls(&window.fun) && params.filter.is_some() && params.args.len() == 1
}

/// Whether `fun` is one of [`skipping_nulls`]: by name and by
/// implementation, so that a user's function registered under a built-in
/// name is not taken for it.
fn skips_nulls(fun: &WindowFunctionDefinition) -> bool {
    let WindowFunctionDefinition::AggregateUDF(fun) = fun else {
        return false;
    };
    let implementation: &dyn Any = fun.inner().as_ref();
    skipping_nulls().iter().any(|builtin| {
        let builtin_implementation: &dyn Any = builtin.inner().as_ref();
        builtin.name() == fun.name() && builtin_implementation.type_id() == implementation.type_id()
    })
}

/// `expr` with its filter moved into its argument, if it is
/// [`rewritable`].
fn filter_as_case(expr: Expr) -> Result<Transformed<Expr>> {
    let Expr::WindowFunction(window) = expr else {
        return Ok(Transformed::no(expr));
    };
    let WindowFunction { fun, mut params } = *window;
    match params.filter.take() {
        Some(filter) if skips_nulls(&fun) && params.args.len() == 1 => {
            params.args = std::mem::take(&mut params.args)
                .into_iter()
                .map(|arg| when(*filter.clone(), arg).end())
                .collect::<Result<_>>()?;
            let rewritten = WindowFunction { fun, params };
            Ok(Transformed::yes(Expr::WindowFunction(Box::new(rewritten))))
        }
        filter => {
            params.filter = filter;
            let unchanged = WindowFunction { fun, params };
            Ok(Transformed::no(Expr::WindowFunction(Box::new(unchanged))))
        }
    }
}

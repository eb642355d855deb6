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
//! `count(CASE WHEN p THEN 1 END)`). This is the rewrite Spark's analyzer
//! applies to every aggregate filter it cannot push down
//! (`RewriteDistinctAggregates` wraps arguments in `If(filter, arg,
//! null)` the same way).
//!
//! Aggregates that keep NULLs (`array_agg`, `first_value`, `string_agg`
//! with NULL handling of its own, user-defined ones) are left alone and
//! run on the driver.

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFunctionDefinition, when};
use datafusion::optimizer::AnalyzerRule;

/// Aggregates whose result ignores NULL inputs (by their DataFusion
/// names), so that a filter can become a `CASE` on their single argument.
const SKIP_NULLS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "bit_xor",
    "median",
    "approx_distinct",
    "approx_median",
];

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

fn skips_nulls(fun: &WindowFunctionDefinition) -> bool {
    matches!(fun, WindowFunctionDefinition::AggregateUDF(f) if SKIP_NULLS.contains(&f.name()))
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

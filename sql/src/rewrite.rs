//! Logical rewrites for queries DataFusion 55 answers wrongly, in one
//! process as well: installed as analyzer rules of every Riffle SQL
//! session, so the driver plans the right query before it is cut into
//! stages.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    Column, DFSchemaRef, ExprSchema, NullEquality, Result, ScalarValue, Spans, plan_datafusion_err,
};
use datafusion::config::ConfigOptions;
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprFunctionExt, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
    Subquery, lit, when,
};
use datafusion::optimizer::AnalyzerRule;
use std::sync::Arc;

/// `INTERSECT ALL` and `EXCEPT ALL` with the multiplicities SQL defines:
/// a row that appears `m` times on the left and `n` times on the right
/// appears `min(m, n)` times in the intersection and `max(m - n, 0)` times
/// in the difference. DataFusion plans them as a semi or anti join of the
/// two sides on every column, which keeps all `m` copies of a row found on
/// the right (`{1,1,1,2} INTERSECT ALL {1,1,3}` gave `{1,1,1}`) and none of
/// a row found there at all (`{1,1,1,2} EXCEPT ALL {1,3}` gave `{2}`).
///
/// The rewrite numbers the copies of each row on both sides
/// (`row_number() OVER (PARTITION BY every column)`) and joins on the
/// number too: copy `k` of a left row survives the intersection when the
/// right has at least `k` copies, the difference when it has fewer. This is
/// the rewrite of Spark's `RewriteIntersectAll`/`RewriteExceptAll` in
/// another form (a numbered join instead of replicated counts).
#[derive(Debug, Default)]
pub struct SetOperationsAll;

impl AnalyzerRule for SetOperationsAll {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match all_set_operation(&node) {
            Some(join_type) => rewrite_all(node, join_type).map(Transformed::yes),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "riffle_set_operations_all"
    }
}

/// The join type if `plan` is how DataFusion's planner builds
/// `INTERSECT ALL` (left semi) or `EXCEPT ALL` (left anti): a join on every
/// column, in order, with NULLs equal, and no `DISTINCT` on its left (the
/// distinct forms have one; a left side that is distinct anyway needs no
/// rewrite either, as each row then appears once).
fn all_set_operation(plan: &LogicalPlan) -> Option<JoinType> {
    let LogicalPlan::Join(join) = plan else {
        return None;
    };
    if !matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        || join.null_equality != NullEquality::NullEqualsNull
        || join.filter.is_some()
        || matches!(join.left.as_ref(), LogicalPlan::Distinct(_))
    {
        return None;
    }
    let (left, right) = (join.left.schema(), join.right.schema());
    let width = left.fields().len();
    if width == 0 || right.fields().len() != width || join.on.len() != width {
        return None;
    }
    let in_order = join.on.iter().enumerate().all(|(i, (l, r))| {
        matches!((l, r), (Expr::Column(l), Expr::Column(r))
            if l.name == *left.field(i).name() && r.name == *right.field(i).name())
    });
    in_order.then_some(join.join_type)
}

const LEFT_COPY: &str = "__riffle_left_copy";
const RIGHT_COPY: &str = "__riffle_right_copy";

fn rewrite_all(plan: LogicalPlan, join_type: JoinType) -> Result<LogicalPlan> {
    let LogicalPlan::Join(join) = plan else {
        unreachable!("all_set_operation matched a join");
    };
    let left = join.left.as_ref().clone();
    let right = join.right.as_ref().clone();
    let left_columns = left.schema().columns();
    let right_columns = right.schema().columns();
    let numbered = |plan: LogicalPlan, columns: &[Column], name: &str| {
        let copy = row_number()
            .partition_by(columns.iter().cloned().map(Expr::Column).collect())
            .build()?
            .alias(name);
        LogicalPlanBuilder::from(plan).window(vec![copy])?.build()
    };
    let left_keys: Vec<Column> = left_columns
        .iter()
        .cloned()
        .chain([Column::from_name(LEFT_COPY)])
        .collect();
    let right_keys: Vec<Column> = right_columns
        .iter()
        .cloned()
        .chain([Column::from_name(RIGHT_COPY)])
        .collect();
    LogicalPlanBuilder::from(numbered(left, &left_columns, LEFT_COPY)?)
        .join_detailed(
            numbered(right, &right_columns, RIGHT_COPY)?,
            join_type,
            (left_keys, right_keys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .project(left_columns.into_iter().map(Expr::Column))?
        .build()
}

/// `x NOT IN (subquery)` with SQL's three-valued answer wherever
/// DataFusion 55 gets it wrong: it is FALSE when the subquery holds `x`,
/// TRUE when the subquery is empty, otherwise NULL when `x` is NULL or the
/// subquery holds a NULL, otherwise TRUE. DataFusion plans it as an anti
/// join, which is right only for an uncorrelated `NOT IN` that is a
/// top-level conjunct of a `WHERE` (where NULL and FALSE both drop the row
/// and its null-aware anti join applies): correlated, it keeps rows whose
/// subquery holds a NULL; under `OR` or `IS NULL` it answers TRUE for
/// NULL; in a `SELECT` list it is not implemented.
///
/// Everywhere else the predicate becomes a `CASE` over three counts of the
/// subquery's rows (all of them, those equal to `x`, the NULLs), each a
/// scalar subquery that DataFusion decorrelates into a join.
#[derive(Debug, Default)]
pub struct NotInSubquery;

impl AnalyzerRule for NotInSubquery {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            if !has_not_in(&node) {
                return Ok(Transformed::no(node));
            }
            let inputs: Vec<DFSchemaRef> =
                node.inputs().iter().map(|i| i.schema().clone()).collect();
            let node = match node {
                LogicalPlan::Filter(filter) => {
                    let conjuncts = split_conjunction_owned(filter.predicate)
                        .into_iter()
                        .map(|c| match &c {
                            // DataFusion's null-aware anti join is right here.
                            Expr::InSubquery(s)
                                if s.negated && s.subquery.outer_ref_columns.is_empty() =>
                            {
                                Ok(c)
                            }
                            _ => rewrite_in_filter(c, &inputs),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let predicate = conjunction(conjuncts).unwrap_or_else(|| lit(true));
                    LogicalPlan::Filter(Filter::try_new(predicate, filter.input)?)
                }
                other => {
                    let names = NamePreserver::new(&other);
                    other
                        .map_expressions(|e| {
                            let saved = names.save(&e);
                            Ok(Transformed::yes(saved.restore(rewrite_not_in(e, &inputs)?)))
                        })?
                        .data
                        .recompute_schema()?
                }
            };
            Ok(Transformed::yes(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "riffle_not_in_subquery"
    }
}

fn has_not_in(node: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = node.apply_expressions(|e| {
        e.apply(|e| {
            found |= matches!(e, Expr::InSubquery(s) if s.negated);
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    });
    found
}

/// A filter predicate with each `NOT IN` reached through `AND` and `OR`
/// alone (where NULL drops the row as FALSE does) replaced by
/// `NOT EXISTS (rows where value = x OR value IS NULL OR x IS NULL)`,
/// which DataFusion decorrelates whatever the subquery's correlation; any
/// other `NOT IN` by its `CASE`.
fn rewrite_in_filter(expr: Expr, inputs: &[DFSchemaRef]) -> Result<Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::And | Operator::Or) =>
        {
            Ok(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(rewrite_in_filter(*left, inputs)?),
                op,
                Box::new(rewrite_in_filter(*right, inputs)?),
            )))
        }
        Expr::InSubquery(s) if s.negated => {
            let (value, rows, outer_x) = not_in_parts(&s.expr, &s.subquery, inputs)?;
            let matches = value
                .clone()
                .eq(outer_x.clone())
                .or(value.is_null())
                .or(outer_x.is_null());
            let plan = LogicalPlanBuilder::from(rows).filter(matches)?.build()?;
            Ok(Expr::Exists(datafusion::logical_expr::expr::Exists {
                subquery: Subquery {
                    outer_ref_columns: plan.all_out_ref_exprs(),
                    subquery: Arc::new(plan),
                    spans: Spans::new(),
                },
                negated: true,
            }))
        }
        other => rewrite_not_in(other, inputs),
    }
}

/// `expr` with each `NOT IN (subquery)` in it replaced by its `CASE`.
fn rewrite_not_in(expr: Expr, inputs: &[DFSchemaRef]) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::InSubquery(s) if s.negated => {
            three_valued_not_in(*s.expr, s.subquery, inputs).map(Transformed::yes)
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// The subquery's value column, its plan, and `x` with its columns made
/// outer references (as the subquery sees the outer query).
fn not_in_parts(
    x: &Expr,
    subquery: &Subquery,
    inputs: &[DFSchemaRef],
) -> Result<(Expr, LogicalPlan, Expr)> {
    let rows = subquery.subquery.as_ref().clone();
    let value = rows
        .schema()
        .columns()
        .into_iter()
        .next()
        .map(Expr::Column)
        .ok_or_else(|| plan_datafusion_err!("NOT IN subquery returns no column"))?;
    // `x` as the subquery sees it: its columns are the outer query's.
    let outer_x = x
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => {
                let field = inputs
                    .iter()
                    .find_map(|s| s.field_from_column(&c).ok())
                    .ok_or_else(|| {
                        plan_datafusion_err!("NOT IN: no column {c} in the outer query")
                    })?;
                Ok(Transformed::yes(Expr::OuterReferenceColumn(
                    field.clone(),
                    c,
                )))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok((value, rows, outer_x))
}

fn three_valued_not_in(x: Expr, subquery: Subquery, inputs: &[DFSchemaRef]) -> Result<Expr> {
    let (value, rows, outer_x) = not_in_parts(&x, &subquery, inputs)?;
    let count = |filter: Option<Expr>| -> Result<Expr> {
        let mut plan = LogicalPlanBuilder::from(rows.clone());
        if let Some(filter) = filter {
            plan = plan.filter(filter)?;
        }
        let plan = plan
            .aggregate(Vec::<Expr>::new(), vec![count_all()])?
            .build()?;
        Ok(Expr::ScalarSubquery(Subquery {
            outer_ref_columns: plan.all_out_ref_exprs(),
            subquery: Arc::new(plan),
            spans: Spans::new(),
        }))
    };
    let zero = || lit(0i64);
    let unknown = || lit(ScalarValue::Boolean(None));
    when(
        count(Some(value.clone().eq(outer_x)))?.gt(zero()),
        lit(false),
    )
    .when(count(None)?.eq(zero()), lit(true))
    .when(x.is_null(), unknown())
    .when(count(Some(value.is_null()))?.gt(zero()), unknown())
    .otherwise(lit(true))
}

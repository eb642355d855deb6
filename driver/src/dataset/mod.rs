//! `Dataset<T>`: a lazy, typed, partitioned collection.
//!
//! Every transformation returns a new `Dataset` whose [`Node`] points at its
//! parents; nothing runs until an action (in [`actions`]). Narrow
//! transformations are in [`narrow`], keyed (wide) ones in [`pair`].

pub mod actions;
pub(crate) mod arrow_rows;
pub mod narrow;
pub(crate) mod ops;
pub mod pair;
pub(crate) mod spill;

use crate::context::Context;
use riffle_planner::function::FnRef;
use riffle_planner::ids::ShuffleId;
use riffle_planner::task::FileSplit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a dataset's elements must be: serializable (they cross stage
/// boundaries as bytes) and shareable between threads.
pub trait Data: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Data for T {}

/// A lazy, typed, partitioned collection of `T`.
pub struct Dataset<T> {
    pub(crate) ctx: Context,
    pub(crate) node: Arc<Node>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Dataset<T> {
    fn clone(&self) -> Self {
        Dataset {
            ctx: self.ctx.clone(),
            node: self.node.clone(),
            _type: PhantomData,
        }
    }
}

/// One node of the lineage graph.
pub(crate) struct Node {
    /// A label for `explain` (`map`, `text_file(logs/*.gz)`, ...).
    pub(crate) label: String,
    /// Number of partitions.
    pub(crate) partitions: usize,
    pub(crate) kind: NodeKind,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({}, {} partitions)", self.label, self.partitions)
    }
}

pub(crate) enum NodeKind {
    Parallelize {
        op: FnRef,
        slices: Vec<Vec<u8>>,
    },
    TextFile {
        splits: Vec<FileSplit>,
    },
    Narrow {
        op: FnRef,
        parent: Arc<Node>,
    },
    Union {
        parents: Vec<Arc<Node>>,
    },
    Coalesce {
        op: FnRef,
        parent: Arc<Node>,
        /// Parent partitions of each output partition.
        groups: Vec<std::ops::Range<usize>>,
    },
    Shuffled {
        reducer: FnRef,
        deps: Vec<ShuffleDep>,
    },
    /// The rows of a SQL query: its stages run first, the last one writing
    /// its rows to `shuffle`; each partition reads one result task's rows
    /// as records through the `ArrowSourceOp` `decode`.
    SqlResult {
        stages: Vec<riffle_sql::stages::SqlStage>,
        shuffle: ShuffleId,
        decode: FnRef,
    },
    /// A transformation whose state could not be encoded; actions report
    /// the error.
    Invalid {
        error: String,
    },
}

/// A wide dependency: the parent is written by a map stage.
pub(crate) struct ShuffleDep {
    pub(crate) shuffle: ShuffleId,
    pub(crate) parent: Arc<Node>,
    pub(crate) writer: WriterSpec,
}

/// Builds a range writer from key samples, a partition count and the
/// direction.
pub(crate) type MakeRangeWriter =
    fn(Vec<Vec<u8>>, usize, bool) -> Result<FnRef, riffle_planner::PipelineError>;

/// The map-side writer of a shuffle.
#[derive(Clone)]
pub(crate) enum WriterSpec {
    /// Known when the dataset was built.
    Ready(FnRef),
    /// Range partitioning for a sort: bounds come from a sampling job run
    /// just before the map stage.
    Sampled {
        /// The `ResultOp` sampling the parent's keys.
        sampler: FnRef,
        /// Turns the per-partition samples into the writer.
        make: MakeRangeWriter,
        ascending: bool,
    },
}

impl WriterSpec {
    pub(crate) fn label(&self) -> &str {
        match self {
            WriterSpec::Ready(f) => f.name(),
            WriterSpec::Sampled { .. } => "range partition (sampled)",
        }
    }
}

impl<T: Data> Dataset<T> {
    pub(crate) fn from_node(ctx: Context, node: Node) -> Self {
        Dataset {
            ctx,
            node: Arc::new(node),
            _type: PhantomData,
        }
    }

    /// The context this dataset belongs to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.node.partitions
    }

    /// Prints the stage DAG an action on this dataset would run (see
    /// [`Dataset::to_debug_string`]) to stdout.
    pub fn explain(&self) {
        print!("{}", self.to_debug_string());
    }

    /// A description of the stage DAG an action on this dataset would run:
    /// stages, their partitions, the shuffle boundaries and the narrow
    /// operators fused into each stage (like Spark's `toDebugString`).
    pub fn to_debug_string(&self) -> String {
        let mut out = String::new();
        let mut next_stage = 0;
        explain_stage(&self.node, "result", 0, &mut next_stage, &mut out);
        out
    }
}

/// Describes the stage rooted at `node`, then its parent stages, indented.
fn explain_stage(node: &Arc<Node>, sink: &str, depth: usize, next: &mut usize, out: &mut String) {
    let id = *next;
    *next += 1;
    let mut chain = Vec::new();
    let mut deps = Vec::new();
    fuse(node, &mut chain, &mut deps);
    let indent = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{indent}Stage {id} ({sink}, {} partitions): {}",
        node.partitions,
        chain.join(" -> ")
    );
    for dep in deps {
        let _ = writeln!(
            out,
            "{indent}  <- {} boundary: map side {}",
            dep.shuffle,
            dep.writer.label()
        );
        let sink = format!("shuffle map, writes {}", dep.shuffle);
        explain_stage(&dep.parent, &sink, depth + 2, next, out);
    }
}

/// The operators fused into the stage ending at `node`, source first, and
/// the shuffle dependencies that bound it.
fn fuse<'a>(node: &'a Arc<Node>, chain: &mut Vec<String>, deps: &mut Vec<&'a ShuffleDep>) {
    match &node.kind {
        NodeKind::Parallelize { .. }
        | NodeKind::TextFile { .. }
        | NodeKind::SqlResult { .. }
        | NodeKind::Invalid { .. } => {}
        NodeKind::Narrow { parent, .. } | NodeKind::Coalesce { parent, .. } => {
            fuse(parent, chain, deps)
        }
        NodeKind::Union { parents } => {
            let mut branches = Vec::new();
            for p in parents {
                let mut sub = Vec::new();
                fuse(p, &mut sub, deps);
                branches.push(sub.join(" -> "));
            }
            chain.push(format!("[{}]", branches.join(" | ")));
        }
        NodeKind::Shuffled { deps: d, .. } => deps.extend(d.iter()),
    }
    chain.push(node.label.clone());
}

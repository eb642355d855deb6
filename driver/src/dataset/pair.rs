//! Wide transformations: each output partition reads a slice of every
//! parent partition, through a shuffle. Keyed ones apply to
//! `Dataset<(K, V)>`.

use super::ops::{self, RangeBounds, assert_zst, encode_state, stateless};
use super::{Data, Dataset, Node, NodeKind, ShuffleDep, WriterSpec};
use riffle_planner::PipelineError;
use riffle_planner::function::{FnRef, Shippable};
use std::hash::Hash;
use std::sync::Arc;

/// Keys sampled per output partition of a sort (as Spark's `RangePartitioner`).
const SAMPLES_PER_PARTITION: u64 = 60;

impl<T: Data> Dataset<T> {
    /// A node reading `deps` through shuffles into `partitions` partitions.
    pub(crate) fn shuffled<U: Data>(
        &self,
        label: &str,
        reducer: FnRef,
        deps: Vec<(Arc<Node>, WriterSpec)>,
        partitions: usize,
    ) -> Dataset<U> {
        let deps = deps
            .into_iter()
            .map(|(parent, writer)| ShuffleDep {
                shuffle: self.ctx.next_shuffle_id(),
                parent,
                writer,
            })
            .collect();
        Dataset::from_node(
            self.ctx.clone(),
            Node {
                label: label.to_string(),
                partitions: partitions.max(1),
                kind: NodeKind::Shuffled { reducer, deps },
            },
        )
    }

    /// Redistributes the elements evenly over `partitions` partitions
    /// (a shuffle; use [`Dataset::coalesce`] to only reduce the count).
    pub fn repartition(&self, partitions: usize) -> Dataset<T> {
        self.shuffled(
            &format!("repartition({partitions})"),
            stateless(ops::pass_reducer_factory::<T>, "repartition"),
            vec![(
                self.node.clone(),
                WriterSpec::Ready(stateless(
                    ops::round_robin_writer_factory::<T>,
                    "round robin",
                )),
            )],
            partitions,
        )
    }

    /// The distinct elements (a shuffle, with duplicates removed on the map
    /// side first).
    pub fn distinct(&self) -> Dataset<T>
    where
        T: Hash + Eq,
    {
        let pairs: Dataset<(T, ())> = self.narrow(
            "distinct",
            Ok(stateless(ops::pair_unit_factory::<T>, "distinct")),
        );
        pairs.reduce_by_key(|a: (), _b: ()| a).keys()
    }

    /// Sorts the elements by the key `f` computes, globally: partition `i`
    /// holds smaller keys than partition `i + 1` (descending when
    /// `ascending` is false). Runs a sampling job first to pick the range
    /// bounds.
    pub fn sort_by<K, F>(&self, f: F, ascending: bool) -> Dataset<T>
    where
        K: Data + Ord + Clone,
        F: Fn(&T) -> K + Shippable + Send + Sync + 'static,
    {
        self.key_by(f).sort_by_key(ascending).values()
    }
}

impl<K: Data, V: Data> Dataset<(K, V)> {
    /// Applies `f` to every value, keeping the keys.
    pub fn map_values<U: Data, F: Fn(V) -> U + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Dataset<(K, U)> {
        assert_zst::<F>();
        let _ = f;
        self.narrow(
            "map_values",
            Ok(stateless(
                ops::map_values_factory::<K, V, U, F>,
                "map_values",
            )),
        )
    }

    /// The keys.
    pub fn keys(&self) -> Dataset<K> {
        self.narrow("keys", Ok(stateless(ops::keys_factory::<K, V>, "keys")))
    }

    /// The values.
    pub fn values(&self) -> Dataset<V> {
        self.narrow(
            "values",
            Ok(stateless(ops::values_factory::<K, V>, "values")),
        )
    }

    /// Merges the values of each key with `f`, which must be associative and
    /// commutative. Values are combined on the map side before the shuffle.
    pub fn reduce_by_key<F: Fn(V, V) -> V + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Dataset<(K, V)>
    where
        K: Hash + Eq,
    {
        assert_zst::<F>();
        let _ = f;
        type M<F> = ops::MakeReduce<F>;
        self.shuffled(
            "reduce_by_key",
            stateless(
                ops::combine_reducer_factory::<K, V, V, M<F>>,
                "reduce_by_key merge",
            ),
            vec![(
                self.node.clone(),
                WriterSpec::Ready(stateless(
                    ops::combine_writer_factory::<K, V, V, M<F>>,
                    "reduce_by_key combine",
                )),
            )],
            self.node.partitions,
        )
    }

    /// Aggregates the values of each key into a `U`: `seq` folds a value into
    /// an accumulator starting at `zero`, `comb` merges accumulators.
    pub fn aggregate_by_key<U, S, C>(&self, zero: U, seq: S, comb: C) -> Dataset<(K, U)>
    where
        K: Hash + Eq,
        U: Data + Clone,
        S: Fn(U, V) -> U + Shippable + Send + Sync + 'static,
        C: Fn(U, U) -> U + Shippable + Send + Sync + 'static,
    {
        assert_zst::<S>();
        assert_zst::<C>();
        let _ = (seq, comb);
        type M<U, S, C> = ops::MakeAggregate<U, S, C>;
        let state = match encode_state(&zero) {
            Ok(state) => state,
            Err(e) => return self.narrow("aggregate_by_key", Err(e)),
        };
        self.shuffled(
            "aggregate_by_key",
            FnRef::new(
                ops::combine_reducer_factory::<K, V, U, M<U, S, C>>,
                state.clone(),
                "aggregate_by_key merge",
            ),
            vec![(
                self.node.clone(),
                WriterSpec::Ready(FnRef::new(
                    ops::combine_writer_factory::<K, V, U, M<U, S, C>>,
                    state,
                    "aggregate_by_key combine",
                )),
            )],
            self.node.partitions,
        )
    }

    /// Folds the values of each key with `f`, starting from `zero` (which
    /// must be neutral for `f`: it may be applied once per map task).
    pub fn fold_by_key<F>(&self, zero: V, f: F) -> Dataset<(K, V)>
    where
        K: Hash + Eq,
        V: Clone,
        F: Fn(V, V) -> V + Send + Sync + 'static + Copy,
    {
        self.aggregate_by_key(zero, f, f)
    }

    /// All values of each key, as a `Vec` (in no particular order).
    pub fn group_by_key(&self) -> Dataset<(K, Vec<V>)>
    where
        K: Hash + Eq,
    {
        self.shuffled(
            "group_by_key",
            stateless(ops::group_reducer_factory::<K, V>, "group_by_key"),
            vec![(
                self.node.clone(),
                WriterSpec::Ready(stateless(
                    ops::hash_writer_factory::<K, V>,
                    "hash partition",
                )),
            )],
            self.node.partitions,
        )
    }

    fn join_with<W: Data, U: Data>(
        &self,
        other: &Dataset<(K, W)>,
        label: &str,
        reducer: riffle_planner::function::Factory,
    ) -> Dataset<U>
    where
        K: Hash + Eq,
    {
        self.shuffled(
            label,
            stateless(reducer, label),
            vec![
                (
                    self.node.clone(),
                    WriterSpec::Ready(stateless(
                        ops::hash_writer_factory::<K, V>,
                        "hash partition",
                    )),
                ),
                (
                    other.node.clone(),
                    WriterSpec::Ready(stateless(
                        ops::hash_writer_factory::<K, W>,
                        "hash partition",
                    )),
                ),
            ],
            self.node.partitions.max(other.node.partitions),
        )
    }

    /// Inner join on the key: one `(k, (v, w))` per matching pair.
    pub fn join<W: Data + Clone>(&self, other: &Dataset<(K, W)>) -> Dataset<(K, (V, W))>
    where
        K: Hash + Eq + Clone,
        V: Clone,
    {
        self.join_with(other, "join", ops::join_reducer_factory::<K, V, W, false>)
    }

    /// Left outer join: every left record, with `None` where no right record
    /// has its key.
    pub fn left_outer_join<W: Data + Clone>(
        &self,
        other: &Dataset<(K, W)>,
    ) -> Dataset<(K, (V, Option<W>))>
    where
        K: Hash + Eq + Clone,
        V: Clone,
    {
        self.join_with(
            other,
            "left_outer_join",
            ops::join_reducer_factory::<K, V, W, true>,
        )
    }

    /// Sorts by key, globally (range partitioning from a sample of the keys,
    /// then a sort within each partition).
    pub fn sort_by_key(&self, ascending: bool) -> Dataset<(K, V)>
    where
        K: Ord + Clone,
    {
        let partitions = self.node.partitions.max(1);
        let per_partition = (SAMPLES_PER_PARTITION * partitions as u64)
            .div_ceil(self.node.partitions.max(1) as u64);
        let sampler = match encode_state(&per_partition) {
            Ok(state) => FnRef::new(ops::sample_factory::<K, V>, state, "sample keys"),
            Err(e) => return self.narrow("sort_by_key", Err(e)),
        };
        let reducer = match encode_state(&ascending) {
            Ok(state) => FnRef::new(ops::sort_reducer_factory::<K, V>, state, "sort"),
            Err(e) => return self.narrow("sort_by_key", Err(e)),
        };
        self.shuffled(
            "sort_by_key",
            reducer,
            vec![(
                self.node.clone(),
                WriterSpec::Sampled {
                    sampler,
                    make: range_writer_from_samples::<K, V>,
                    ascending,
                },
            )],
            partitions,
        )
    }
}

/// Picks `partitions - 1` range bounds from per-partition key samples, each
/// sampled key weighted by how many records it stands for.
fn range_writer_from_samples<K: Data + Ord + Clone, V: Data>(
    samples: Vec<Vec<u8>>,
    partitions: usize,
    ascending: bool,
) -> Result<FnRef, PipelineError> {
    let mut weighted: Vec<(K, f64)> = Vec::new();
    for bytes in samples {
        let (seen, keys): (u64, Vec<K>) = ops::state(&bytes)?;
        if keys.is_empty() {
            continue;
        }
        let weight = seen as f64 / keys.len() as f64;
        weighted.extend(keys.into_iter().map(|k| (k, weight)));
    }
    weighted.sort_by(|a, b| a.0.cmp(&b.0));
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let step = total / partitions.max(1) as f64;
    let mut bounds: Vec<K> = Vec::new();
    let mut cumulative = 0.0;
    for (key, weight) in weighted {
        cumulative += weight;
        if bounds.len() + 1 >= partitions {
            break;
        }
        if cumulative >= step * (bounds.len() + 1) as f64 && bounds.last().is_none_or(|b| *b < key)
        {
            bounds.push(key);
        }
    }
    let state = encode_state(&RangeBounds { bounds, ascending })?;
    Ok(FnRef::new(
        ops::range_writer_factory::<K, V>,
        state,
        "range partition",
    ))
}

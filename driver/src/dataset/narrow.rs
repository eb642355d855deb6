//! Narrow transformations: each output partition depends on one parent
//! partition, so they fuse into the parent's stage.

use super::ops::{self, assert_zst, encode_state, stateless};
use super::{Data, Dataset, Node, NodeKind};
use riffle_planner::function::{Factory, FnRef, Shippable};
use riffle_planner::pipeline::BoxIter;

impl<T: Data> Dataset<T> {
    /// A narrow node applying `op` (or recording why it could not be built).
    pub(crate) fn narrow<U: Data>(
        &self,
        label: &str,
        op: Result<FnRef, riffle_planner::PipelineError>,
    ) -> Dataset<U> {
        let kind = match op {
            Ok(op) => NodeKind::Narrow {
                op,
                parent: self.node.clone(),
            },
            Err(e) => NodeKind::Invalid {
                error: format!("{label}: {e}"),
            },
        };
        Dataset::from_node(
            self.ctx.clone(),
            Node {
                label: label.to_string(),
                partitions: self.node.partitions,
                kind,
            },
        )
    }

    fn with_state<S: Data, U: Data>(&self, label: &str, factory: Factory, state: &S) -> Dataset<U> {
        self.narrow(
            label,
            encode_state(state).map(|bytes| FnRef::new(factory, bytes, label)),
        )
    }

    /// Applies `f` to every element. `f` must capture nothing; see
    /// [`Dataset::map_with`] for state.
    pub fn map<U: Data, F: Fn(T) -> U + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Dataset<U> {
        assert_zst::<F>();
        let _ = f;
        self.narrow("map", Ok(stateless(ops::map_factory::<T, U, F>, "map")))
    }

    /// Keeps the elements for which `f` is true.
    pub fn filter<F: Fn(&T) -> bool + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Dataset<T> {
        assert_zst::<F>();
        let _ = f;
        self.narrow(
            "filter",
            Ok(stateless(ops::filter_factory::<T, F>, "filter")),
        )
    }

    /// Replaces every element by the elements `f` returns for it.
    pub fn flat_map<U, I, F>(&self, f: F) -> Dataset<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: Send,
        F: Fn(T) -> I + Shippable + Send + Sync + 'static,
    {
        assert_zst::<F>();
        let _ = f;
        self.narrow(
            "flat_map",
            Ok(stateless(ops::flat_map_factory::<T, U, I, F>, "flat_map")),
        )
    }

    /// Transforms each partition as a whole, through an iterator.
    pub fn map_partitions<U, I, F>(&self, f: F) -> Dataset<U>
    where
        U: Data,
        I: Iterator<Item = U> + Send + 'static,
        F: Fn(BoxIter<T>) -> I + Shippable + Send + Sync + 'static,
    {
        assert_zst::<F>();
        let _ = f;
        self.narrow(
            "map_partitions",
            Ok(stateless(
                ops::map_partitions_factory::<T, U, I, F>,
                "map_partitions",
            )),
        )
    }

    /// Like [`Dataset::map_partitions`], with explicit state. The function
    /// borrows the state only while it builds the iterator, so an iterator
    /// that needs it must copy what it uses.
    pub fn map_partitions_with<S, U, I, F>(&self, state: S, f: F) -> Dataset<U>
    where
        S: Data,
        U: Data,
        I: Iterator<Item = U> + Send + 'static,
        F: Fn(&S, BoxIter<T>) -> I + Shippable + Send + Sync + 'static,
    {
        assert_zst::<F>();
        let _ = f;
        self.with_state(
            "map_partitions_with",
            ops::map_partitions_with_factory::<S, T, U, I, F>,
            &state,
        )
    }

    /// Like [`Dataset::map`], with explicit state shipped to every task.
    pub fn map_with<S: Data, U: Data, F: Fn(&S, T) -> U + Shippable + Send + Sync + 'static>(
        &self,
        state: S,
        f: F,
    ) -> Dataset<U> {
        assert_zst::<F>();
        let _ = f;
        self.with_state("map_with", ops::map_with_factory::<S, T, U, F>, &state)
    }

    /// Like [`Dataset::filter`], with explicit state.
    pub fn filter_with<S: Data, F: Fn(&S, &T) -> bool + Shippable + Send + Sync + 'static>(
        &self,
        state: S,
        f: F,
    ) -> Dataset<T> {
        assert_zst::<F>();
        let _ = f;
        self.with_state("filter_with", ops::filter_with_factory::<S, T, F>, &state)
    }

    /// Like [`Dataset::flat_map`], with explicit state.
    pub fn flat_map_with<S, U, I, F>(&self, state: S, f: F) -> Dataset<U>
    where
        S: Data,
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: Send,
        F: Fn(&S, T) -> I + Shippable + Send + Sync + 'static,
    {
        assert_zst::<F>();
        let _ = f;
        self.with_state(
            "flat_map_with",
            ops::flat_map_with_factory::<S, T, U, I, F>,
            &state,
        )
    }

    /// Pairs every element with the key `f` computes for it.
    pub fn key_by<K: Data, F: Fn(&T) -> K + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Dataset<(K, T)> {
        assert_zst::<F>();
        let _ = f;
        self.narrow(
            "key_by",
            Ok(stateless(ops::key_by_factory::<T, K, F>, "key_by")),
        )
    }

    /// The elements of this dataset followed by those of `other`; the
    /// partitions of both, without a shuffle.
    pub fn union(&self, other: &Dataset<T>) -> Dataset<T> {
        Dataset::from_node(
            self.ctx.clone(),
            Node {
                label: "union".into(),
                partitions: self.node.partitions + other.node.partitions,
                kind: NodeKind::Union {
                    parents: vec![self.node.clone(), other.node.clone()],
                },
            },
        )
    }

    /// Fewer partitions, without a shuffle: each output partition reads a
    /// run of consecutive parent partitions.
    pub fn coalesce(&self, partitions: usize) -> Dataset<T> {
        let parent = self.node.partitions;
        let n = partitions.clamp(1, parent.max(1));
        let groups = (0..n)
            .map(|i| (i * parent / n)..((i + 1) * parent / n))
            .collect();
        Dataset::from_node(
            self.ctx.clone(),
            Node {
                label: format!("coalesce({n})"),
                partitions: n,
                kind: NodeKind::Coalesce {
                    op: stateless(ops::concat_factory::<T>, "coalesce"),
                    parent: self.node.clone(),
                    groups,
                },
            },
        )
    }
}

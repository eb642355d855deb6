//! Actions: the operations that run a job and return a result.

use super::ops::{self, encode_state, state, stateless};
use super::{Data, Dataset};
use crate::error::DriverError;
use crate::scheduler::{FinalSink, JobHandle, result_bytes};
use riffle_planner::function::{FnRef, Shippable};
use std::collections::HashMap;
use std::hash::Hash;

impl<T: Data> Dataset<T> {
    /// Runs a job whose result stage ends in `op`; decodes each partition's
    /// result as an `R`, in partition order.
    fn run_result<R: Data>(&self, op: FnRef) -> Result<Vec<R>, DriverError> {
        self.submit_result::<R, _>(op, |parts| parts).wait()
    }

    /// Submits a job whose result stage ends in `op`; the handle yields
    /// `combine` of the partitions' results, in partition order.
    fn submit_result<R: Data, O: 'static>(
        &self,
        op: FnRef,
        combine: fn(Vec<R>) -> O,
    ) -> JobHandle<O> {
        self.ctx
            .submit_dataset(&self.node, FinalSink::Result(op), move |outputs| {
                outputs
                    .into_iter()
                    .map(decode_result)
                    .collect::<Result<Vec<R>, _>>()
                    .map(combine)
            })
    }

    /// Like [`Dataset::collect`], submitted in the background: the handle
    /// is a `Future` of the elements, and can cancel the job or wait for
    /// it from any thread.
    pub fn collect_async(&self) -> Result<JobHandle<Vec<T>>, DriverError> {
        let op = FnRef::new(
            ops::collect_factory::<T>,
            encode_state(&None::<u64>).map_err(plan)?,
            "collect",
        );
        Ok(self.submit_result::<Vec<T>, _>(op, |parts| parts.into_iter().flatten().collect()))
    }

    /// Like [`Dataset::count`], submitted in the background.
    pub fn count_async(&self) -> JobHandle<u64> {
        self.submit_result::<u64, _>(stateless(ops::count_factory::<T>, "count"), |counts| {
            counts.into_iter().sum()
        })
    }

    /// All elements, in partition order.
    pub fn collect(&self) -> Result<Vec<T>, DriverError> {
        self.collect_async()?.wait()
    }

    /// The number of elements.
    pub fn count(&self) -> Result<u64, DriverError> {
        self.count_async().wait()
    }

    /// The first `n` elements, in partition order.
    pub fn take(&self, n: usize) -> Result<Vec<T>, DriverError> {
        let limit = Some(n as u64);
        let op = FnRef::new(
            ops::collect_factory::<T>,
            encode_state(&limit).map_err(plan)?,
            "take",
        );
        let mut all: Vec<T> = self
            .run_result::<Vec<T>>(op)?
            .into_iter()
            .flatten()
            .collect();
        all.truncate(n);
        Ok(all)
    }

    /// The `n` smallest elements, ascending (Spark's `takeOrdered`). Each
    /// task keeps only its own `n` smallest, so this is cheap for small `n`
    /// even over huge datasets; wrap values in `std::cmp::Reverse` for the
    /// largest.
    pub fn take_ordered(&self, n: usize) -> Result<Vec<T>, DriverError>
    where
        T: Ord,
    {
        let op = FnRef::new(
            ops::take_ordered_factory::<T>,
            encode_state(&(n as u64)).map_err(plan)?,
            "take_ordered",
        );
        let partials = self.run_result::<Vec<T>>(op)?;
        Ok(ops::smallest(partials.into_iter().flatten(), n))
    }

    /// The first element, if any.
    pub fn first(&self) -> Result<Option<T>, DriverError> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// Combines all elements with `f` (associative and commutative); `None`
    /// for an empty dataset.
    pub fn reduce<F: Fn(T, T) -> T + Shippable + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> Result<Option<T>, DriverError> {
        ops::assert_zst::<F>();
        let partials =
            self.run_result::<Option<T>>(stateless(ops::reduce_factory::<T, F>, "reduce"))?;
        Ok(partials.into_iter().flatten().reduce(f))
    }

    /// Folds all elements with `f` starting from `zero` in every partition
    /// and once more at the driver (so `zero` must be neutral for `f`).
    pub fn fold<F: Fn(T, T) -> T + Shippable + Send + Sync + 'static>(
        &self,
        zero: T,
        f: F,
    ) -> Result<T, DriverError>
    where
        T: Clone,
    {
        ops::assert_zst::<F>();
        let op = FnRef::new(
            ops::fold_factory::<T, F>,
            encode_state(&zero).map_err(plan)?,
            "fold",
        );
        Ok(self.run_result::<T>(op)?.into_iter().fold(zero, f))
    }

    /// How often each distinct element occurs.
    pub fn count_by_value(&self) -> Result<HashMap<T, u64>, DriverError>
    where
        T: Hash + Eq,
    {
        self.map(|x: T| (x, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect()
            .map(|pairs| pairs.into_iter().collect())
    }

    /// Writes the elements as text lines (their `Display` form) to a new
    /// directory of `part-NNNNN` files, one per partition, plus `_SUCCESS`.
    /// Files are written under `_temporary` and only moved into place when
    /// every task has succeeded, so a failed job leaves no partial output.
    pub fn save_as_text_file(&self, dir: &str) -> Result<(), DriverError>
    where
        T: std::fmt::Display,
    {
        self.save_as_text_file_async(dir)?.wait()
    }

    /// Like [`Dataset::save_as_text_file`], submitted in the background;
    /// the directory check happens here, before anything runs.
    pub fn save_as_text_file_async(&self, dir: &str) -> Result<JobHandle<()>, DriverError>
    where
        T: std::fmt::Display,
    {
        let url = self.ctx.empty_output_dir(dir)?;
        let sink = FinalSink::SaveText {
            op: stateless(ops::text_factory::<T>, "save_as_text_file"),
            dir: url.to_string(),
        };
        Ok(self.ctx.submit_dataset(&self.node, sink, |_| Ok(())))
    }
}

/// Decodes one result task's bytes as an `R`.
fn decode_result<R: Data>(out: riffle_planner::task::TaskOutput) -> Result<R, DriverError> {
    let bytes = result_bytes(out)?;
    state::<R>(&bytes).map_err(|e| DriverError::Internal(format!("decoding a task result: {e}")))
}

impl<K: Data + Hash + Eq, V: Data> Dataset<(K, V)> {
    /// How many elements each key has.
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>, DriverError> {
        self.map_values(|_: V| 1u64)
            .reduce_by_key(|a, b| a + b)
            .collect()
            .map(|pairs| pairs.into_iter().collect())
    }

    /// All pairs as a map (a later value of a key replaces an earlier one).
    pub fn collect_as_map(&self) -> Result<HashMap<K, V>, DriverError> {
        self.collect().map(|pairs| pairs.into_iter().collect())
    }
}

fn plan(e: riffle_planner::PipelineError) -> DriverError {
    DriverError::Plan(e.to_string())
}

//! The map-output tracker: which map partition of which shuffle has output
//! where, written by which attempt on which executor.
//!
//! Modelled on Spark's `MapOutputTracker`: readers are planned from it
//! (exact object keys, never a listing), outputs can be invalidated by map
//! partition or by executor, and every attempt ever launched is remembered
//! so that cleanup deletes all of them, winners and losers alike.

use riffle_planner::ids::{ExecutorId, ShuffleId};
use riffle_planner::task::MapStatus;
use std::collections::HashMap;

/// One map partition's registered output.
#[derive(Debug, Clone)]
pub(crate) struct MapOutput {
    /// Where the output is and how large each reduce block is.
    pub(crate) status: MapStatus,
    /// The task attempt that wrote it (the winner).
    pub(crate) attempt: u32,
    /// The executor that wrote it.
    pub(crate) executor: ExecutorId,
}

/// Map outputs of the shuffles of one job.
#[derive(Debug, Default)]
pub(crate) struct MapOutputTracker {
    /// Per shuffle, one slot per map partition.
    shuffles: HashMap<ShuffleId, Vec<Option<MapOutput>>>,
    /// Data object keys of every map attempt launched, for cleanup.
    attempts: Vec<String>,
}

impl MapOutputTracker {
    /// Declares a shuffle written by `partitions` map tasks.
    pub(crate) fn register_shuffle(&mut self, shuffle: ShuffleId, partitions: usize) {
        self.shuffles
            .entry(shuffle)
            .or_insert_with(|| vec![None; partitions]);
    }

    /// Remembers the data object key of a launched map attempt.
    pub(crate) fn register_attempt(&mut self, data_path: String) {
        self.attempts.push(data_path);
    }

    /// Records the output of one map partition (a later success of the
    /// same partition replaces it).
    pub(crate) fn add(&mut self, shuffle: ShuffleId, partition: u32, output: MapOutput) {
        if let Some(slot) = self
            .shuffles
            .get_mut(&shuffle)
            .and_then(|slots| slots.get_mut(partition as usize))
        {
            *slot = Some(output);
        }
    }

    /// Forgets one map partition's output; returns it if it was there.
    pub(crate) fn invalidate_partition(
        &mut self,
        shuffle: ShuffleId,
        partition: u32,
    ) -> Option<MapOutput> {
        self.shuffles
            .get_mut(&shuffle)
            .and_then(|slots| slots.get_mut(partition as usize))
            .and_then(Option::take)
    }

    /// Forgets every output written by `executor` (for stores that are
    /// not shared, where losing the executor loses its files); returns the
    /// lost (shuffle, map partition) pairs.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "every shuffle store is shared today; an executor-local one would call this on executor loss"
        )
    )]
    pub(crate) fn invalidate_executor(&mut self, executor: ExecutorId) -> Vec<(ShuffleId, u32)> {
        let mut lost = Vec::new();
        for (shuffle, slots) in &mut self.shuffles {
            for (p, slot) in slots.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|o| o.executor == executor) {
                    *slot = None;
                    lost.push((*shuffle, p as u32));
                }
            }
        }
        lost
    }

    /// Forgets every output of `shuffle` (its consumers must rerun in
    /// full against a fresh set).
    pub(crate) fn invalidate_shuffle(&mut self, shuffle: ShuffleId) {
        if let Some(slots) = self.shuffles.get_mut(&shuffle) {
            slots.iter_mut().for_each(|s| *s = None);
        }
    }

    /// Map partitions of `shuffle` with no output.
    pub(crate) fn missing(&self, shuffle: ShuffleId) -> Vec<u32> {
        self.shuffles
            .get(&shuffle)
            .map(|slots| {
                (0..slots.len() as u32)
                    .filter(|p| slots[*p as usize].is_none())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The statuses of every shuffle whose map partitions all have output,
    /// in map-partition order: what readers are planned from.
    pub(crate) fn available(&self) -> HashMap<ShuffleId, Vec<MapStatus>> {
        self.shuffles
            .iter()
            .filter_map(|(shuffle, slots)| {
                let statuses = slots
                    .iter()
                    .map(|s| s.as_ref().map(|o| o.status.clone()))
                    .collect::<Option<Vec<_>>>()?;
                Some((*shuffle, statuses))
            })
            .collect()
    }

    /// The registered output of one map partition.
    pub(crate) fn output(&self, shuffle: ShuffleId, partition: u32) -> Option<&MapOutput> {
        self.shuffles
            .get(&shuffle)
            .and_then(|slots| slots.get(partition as usize))
            .and_then(Option::as_ref)
    }

    /// Data object keys of every attempt launched, winners or not.
    pub(crate) fn all_attempts(&self) -> &[String] {
        &self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_planner::task::BlockInfo;

    fn output(path: &str, executor: u32) -> MapOutput {
        MapOutput {
            status: MapStatus {
                data_path: path.into(),
                blocks: vec![BlockInfo {
                    offset: 0,
                    len: 1,
                    rows: 1,
                    checksum: 0,
                }],
            },
            attempt: 0,
            executor: ExecutorId(executor),
        }
    }

    #[test]
    fn a_shuffle_is_available_only_when_every_map_partition_has_output() {
        let mut t = MapOutputTracker::default();
        t.register_shuffle(ShuffleId(1), 2);
        t.add(ShuffleId(1), 0, output("a", 0));
        assert!(t.available().is_empty());
        assert_eq!(t.missing(ShuffleId(1)), vec![1]);
        t.add(ShuffleId(1), 1, output("b", 1));
        assert_eq!(t.available()[&ShuffleId(1)].len(), 2);
    }

    #[test]
    fn outputs_are_invalidated_by_partition_and_by_executor() {
        let mut t = MapOutputTracker::default();
        t.register_shuffle(ShuffleId(1), 3);
        t.add(ShuffleId(1), 0, output("a", 0));
        t.add(ShuffleId(1), 1, output("b", 1));
        t.add(ShuffleId(1), 2, output("c", 1));
        assert_eq!(t.output(ShuffleId(1), 2).map(|o| o.attempt), Some(0));
        assert!(t.invalidate_partition(ShuffleId(1), 0).is_some());
        assert!(t.invalidate_partition(ShuffleId(1), 0).is_none());
        let mut lost = t.invalidate_executor(ExecutorId(1));
        lost.sort();
        assert_eq!(lost, vec![(ShuffleId(1), 1), (ShuffleId(1), 2)]);
        assert_eq!(t.missing(ShuffleId(1)), vec![0, 1, 2]);
        assert!(t.output(ShuffleId(1), 1).is_none());
    }
}

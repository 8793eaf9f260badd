//! The positions of one stream's events, by revision, in four bytes each instead of
//! eight: the largest part of the in-memory index (see "Memory" in
//! `docs/performance.md`).
//!
//! A stream's positions only grow, so their high 32 bits change at most once per 2³²
//! positions of the whole log. Each position keeps its low 32 bits in one array, and
//! the high bits are kept once per run of revisions that share them. Written here
//! rather than taken from a crate: compressed integer sequences (Elias–Fano, bit
//! packing) are built once and then only read, and a stream grows at every append.

/// One stream's positions, by revision, in ascending order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Positions {
    /// The low 32 bits of each position, by revision.
    low: Vec<u32>,
    /// The high 32 bits of the first revisions' positions.
    high: u32,
    /// Where the high bits change: the first revision of each later run and the run's
    /// high bits. `None` (no allocation) for every stream of a log below 2³² positions;
    /// a boxed slice (8 bytes in the stream's entry, not a vector's 24) since it
    /// changes at most once per 2³² positions.
    changes: Option<Box<[(u64, u32)]>>,
}

impl Positions {
    pub(crate) fn len(&self) -> usize {
        self.low.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.low.is_empty()
    }

    /// The position of revision `i`, if the stream has it.
    pub(crate) fn get(&self, i: usize) -> Option<u64> {
        let low = *self.low.get(i)?;
        Some((u64::from(self.high_of(i)) << 32) | u64::from(low))
    }

    /// The position of revision `i`; panics when the stream has no such revision, as
    /// indexing a slice does.
    pub(crate) fn at(&self, i: usize) -> u64 {
        match self.get(i) {
            Some(position) => position,
            None => panic!(
                "revision {i} is past the end of a stream of {} events",
                self.len()
            ),
        }
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Adds the next revision's position, which must be above every position held.
    pub(crate) fn push(&mut self, position: u64) {
        debug_assert!(
            self.last().is_none_or(|last| last < position),
            "a stream's positions ascend"
        );
        let (high, low) = ((position >> 32) as u32, position as u32);
        if self.low.is_empty() {
            self.high = high;
        } else if high != self.last_high() {
            let first = self.low.len() as u64;
            let mut changes = self.changes.take().map_or_else(Vec::new, Vec::from);
            changes.push((first, high));
            self.changes = Some(changes.into_boxed_slice());
        }
        self.low.push(low);
    }

    /// The first revision whose position `pred` rejects, given that `pred` accepts a
    /// prefix of the revisions and rejects the rest (as [`slice::partition_point`]).
    pub(crate) fn partition_point(&self, mut pred: impl FnMut(u64) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if pred(self.at(mid)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Gives back the room kept for growth (an open does this once every segment is
    /// loaded: the streams of a reopened store are mostly complete).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.low.shrink_to_fit();
    }

    /// Heap bytes held, room for growth included.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.low.capacity() * size_of::<u32>()
            + self
                .changes
                .as_ref()
                .map_or(0, |c| size_of_val::<[(u64, u32)]>(c))
    }

    fn last_high(&self) -> u32 {
        self.changes
            .as_ref()
            .and_then(|c| c.last())
            .map_or(self.high, |&(_, high)| high)
    }

    fn high_of(&self, i: usize) -> u32 {
        let Some(changes) = &self.changes else {
            return self.high;
        };
        match changes.partition_point(|&(first, _)| first <= i as u64) {
            0 => self.high,
            k => changes[k - 1].1,
        }
    }
}

impl Extend<u64> for Positions {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, positions: I) {
        for position in positions {
            self.push(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Positions;

    /// Ascending positions with steps from 1 to past 2³², so that runs of high bits
    /// begin and end anywhere.
    fn ascending() -> impl Strategy<Value = Vec<u64>> {
        (
            0u64..1 << 40,
            prop::collection::vec(
                prop_oneof![1u64..4, 1u64..1 << 20, (1u64 << 31)..(1u64 << 34)],
                0..200,
            ),
        )
            .prop_map(|(start, steps)| {
                steps
                    .into_iter()
                    .scan(start, |p, step| {
                        *p += step;
                        Some(*p)
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn holds_every_position_as_a_vec_does(expected in ascending()) {
            let mut positions = Positions::default();
            positions.extend(expected.iter().copied());
            prop_assert_eq!(positions.len(), expected.len());
            prop_assert_eq!(positions.is_empty(), expected.is_empty());
            for (i, &p) in expected.iter().enumerate() {
                prop_assert_eq!(positions.get(i), Some(p));
            }
            prop_assert_eq!(positions.get(expected.len()), None);
            prop_assert_eq!(positions.last(), expected.last().copied());
            for probe in expected.iter().flat_map(|&p| [p.saturating_sub(1), p, p + 1]) {
                prop_assert_eq!(
                    positions.partition_point(|p| p < probe),
                    expected.partition_point(|&p| p < probe)
                );
            }
        }
    }

    #[test]
    fn a_log_below_four_billion_positions_costs_four_bytes_per_event() {
        let mut positions = Positions::default();
        positions.extend(7..100_007);
        positions.shrink_to_fit();
        assert_eq!(positions.len(), 100_000);
        assert_eq!(positions.heap_bytes(), 100_000 * 4);
        assert_eq!(positions.at(99_999), 100_006);
    }

    #[test]
    #[should_panic(expected = "revision 3 is past the end of a stream of 3 events")]
    fn a_revision_past_the_end_panics_with_the_length() {
        let mut positions = Positions::default();
        positions.extend([1, 2, 3]);
        positions.at(3);
    }
}

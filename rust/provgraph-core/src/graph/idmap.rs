//! The snapshot's external-id -> internal-id map: built once, read by every query first.
//!
//! A general hash map (hashbrown) keeps its control bytes apart from its buckets, so a lookup
//! of a cold key costs two cache misses before the query can start. This map is open
//! addressing with linear probing over 16-byte slots holding key and value together, at a load
//! of at most 3/4: a lookup reads one slot's cache line (four slots), rarely the next.

/// A slot: `val == EMPTY` marks a free one (internal ids are below `u32::MAX`: see
/// `Csr::from_edges`' size check), so every `i64` is a valid key.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    key: i64,
    val: u32,
}

const EMPTY: u32 = u32::MAX;

/// Immutable map from external ids to internal ids.
#[derive(Debug, Clone)]
pub(crate) struct IdMap {
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: the hash's top bits index the table.
    shift: u32,
}

/// Fibonacci hashing: a multiply by 2^64 / phi spreads sequential and strided ids alike over
/// the top bits.
#[inline(always)]
fn hash(key: i64, shift: u32) -> usize {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

impl IdMap {
    /// Maps `keys[i] -> i`; the keys must be distinct and fewer than `u32::MAX`.
    pub(crate) fn from_keys(keys: &[i64]) -> IdMap {
        // a power of two with keys.len() <= 3/4 of it, and at least 2 slots
        let len = (keys.len() * 4 / 3 + 1).next_power_of_two().max(2);
        let mut slots = vec![Slot { key: 0, val: EMPTY }; len];
        let shift = 64 - len.trailing_zeros();
        let mask = len - 1;
        for (i, &k) in keys.iter().enumerate() {
            let mut at = hash(k, shift);
            while slots[at].val != EMPTY {
                debug_assert!(slots[at].key != k, "duplicate key {k}");
                at = (at + 1) & mask;
            }
            slots[at] = Slot { key: k, val: i as u32 };
        }
        IdMap { slots, shift }
    }

    /// The internal id of `key`, if mapped.
    #[inline]
    pub(crate) fn get(&self, key: i64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = hash(key, self.shift);
        loop {
            let s = self.slots[at];
            if s.val == EMPTY {
                return None;
            }
            if s.key == key {
                return Some(s.val);
            }
            at = (at + 1) & mask;
        }
    }

    /// Heap bytes of the table.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_found_and_others_missing() {
        // sequential, strided, negative, extreme and random-looking keys, with collisions forced
        // by a small table
        let mut keys: Vec<i64> = (0..1000).collect();
        keys.extend((1..500).map(|i| i * 1024));
        keys.extend((1..300).map(|i| -i * 7919));
        keys.extend([i64::MIN, i64::MAX, i64::MIN + 1]);
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(x as i64);
        }
        keys.sort_unstable();
        keys.dedup();
        let m = IdMap::from_keys(&keys);
        assert!(m.slots.len() * 3 >= keys.len() * 4, "load at most 3/4");
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(m.get(k), Some(i as u32), "key {k}");
        }
        let present: std::collections::HashSet<i64> = keys.iter().copied().collect();
        for k in (-5000..5000).chain([i64::MAX - 1, 12345678901]) {
            if !present.contains(&k) {
                assert_eq!(m.get(k), None, "key {k}");
            }
        }
    }

    #[test]
    fn empty_and_tiny_maps() {
        let m = IdMap::from_keys(&[]);
        assert_eq!(m.get(0), None);
        assert_eq!(m.get(i64::MIN), None);
        let m = IdMap::from_keys(&[42]);
        assert_eq!(m.get(42), Some(0));
        assert_eq!(m.get(0), None);
    }
}

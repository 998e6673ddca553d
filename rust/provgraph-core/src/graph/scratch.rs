//! Thread-local scratch buffers so queries allocate nothing on the hot path: generation-stamped
//! arrays (Q1 and Q2) and visited bitsets plus a flat queue (BFS-style queries Q2-Q4).

use std::cell::RefCell;

/// Per-thread query work space, sized to the largest internal id capacity seen.
///
/// `mark[v] == gen` means "visited / has a score in this query"; `aux[v] == gen` is a second
/// per-query flag; `score` is only meaningful where `mark[v] == gen`.
///
/// `bits` / `bits2` are bitsets over internal ids (`cap / 64` words, small enough to stay in
/// L1/L2) that are all-zero between queries: a query that sets bits clears them before it
/// returns (see [`clear_bits`]). `level` is only meaningful where the query wrote it.
/// `bq` is a flat BFS queue with room for every internal id plus one, so kernels can write
/// `bq[len]` unconditionally and advance `len` only for new nodes (branch-free push).
#[derive(Default)]
pub(crate) struct Scratch {
    pub mark: Vec<u32>,
    pub aux: Vec<u32>,
    pub level: Vec<u8>,
    pub score: Vec<f64>,
    pub gen: u32,
    pub bits: Vec<u64>,
    pub bits2: Vec<u64>,
    pub bq: Vec<u32>,
    /// Set while a query may leave bits behind (cleared once it has cleaned up); a query that
    /// did not finish (panic) makes the next `prepare` wipe the bitsets.
    pub bits_dirty: bool,
    /// Byte generation stamps (Q2's visited set): `seen[v] == seen_gen` iff visited in this
    /// query; the generation wraps every 255 queries, wiping the array.
    pub seen: Vec<u8>,
    pub seen_gen: u8,
}

impl Scratch {
    /// Makes every buffer cover `cap` ids and starts a new generation.
    fn prepare(&mut self, cap: usize) {
        if self.mark.len() < cap {
            self.mark.resize(cap, 0);
            self.aux.resize(cap, 0);
            self.level.resize(cap, 0);
            self.score.resize(cap, 0.0);
        }
        let words = cap.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
            self.bits2.resize(words, 0);
        }
        if self.seen.len() < cap {
            self.seen.resize(cap, 0);
        }
        if self.bq.len() < cap + 1 {
            self.bq.resize(cap + 1, 0);
        }
        if self.bits_dirty {
            self.bits.fill(0);
            self.bits2.fill(0);
            self.bits_dirty = false;
        }
        self.seen_gen = self.seen_gen.wrapping_add(1);
        if self.seen_gen == 0 {
            self.seen.fill(0);
            self.seen_gen = 1;
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.mark.fill(0);
            self.aux.fill(0);
            self.gen = 1;
        }
    }
}

/// Zeroes every bit set for the nodes in `set` (each set bit must belong to one of them):
/// word by word when few nodes were touched, else one memset of the whole bitset.
#[inline]
pub(crate) fn clear_bits(bits: &mut [u64], set: &[u32]) {
    if set.len() >= bits.len() / 4 {
        bits.fill(0);
    } else {
        for &v in set {
            bits[(v >> 6) as usize] = 0;
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch prepared for `cap` internal ids.
pub(crate) fn with_scratch<R>(cap: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            s.prepare(cap);
            f(&mut s)
        }
        // Re-entrant use (not expected): fall back to a private buffer.
        Err(_) => {
            let mut s = Scratch::default();
            s.prepare(cap);
            f(&mut s)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_wraps_cleanly() {
        let mut s = Scratch::default();
        s.prepare(4);
        s.mark[2] = s.gen;
        s.gen = u32::MAX;
        s.mark[1] = u32::MAX;
        s.prepare(4);
        assert_eq!(s.gen, 1);
        assert!(s.mark.iter().all(|&m| m == 0));
    }

    #[test]
    fn seen_stamps_sized_and_wrap_cleanly() {
        let mut s = Scratch::default();
        s.prepare(10);
        assert_eq!(s.seen.len(), 10);
        let g = s.seen_gen;
        s.seen[3] = g;
        s.prepare(10);
        assert_ne!(s.seen_gen, g, "a new generation per query: node 3 is unvisited again");
        s.seen_gen = u8::MAX;
        s.seen[7] = 1;
        s.prepare(10);
        assert_eq!(s.seen_gen, 1);
        assert!(s.seen.iter().all(|&m| m == 0), "the wrap wipes every stamp");
    }

    #[test]
    fn bitsets_sized_and_dirty_wiped() {
        let mut s = Scratch::default();
        s.prepare(130);
        assert_eq!(s.bits.len(), 3);
        assert_eq!(s.bq.len(), 131);
        s.bits[1] = 5;
        s.bits2[2] = 1;
        s.bits_dirty = true;
        s.prepare(130);
        assert!(s.bits.iter().chain(&s.bits2).all(|&w| w == 0));
        // word-wise and memset clearing
        let mut b = vec![0u64; 8];
        b[0] = 1 << 3;
        b[7] = 1 << 63;
        clear_bits(&mut b, &[3]);
        assert_eq!(b[0], 0);
        assert_eq!(b[7], 1 << 63);
        clear_bits(&mut b, &[1, 2]);
        assert!(b.iter().all(|&w| w == 0));
    }
}

//! Graph engine: type masks, query statistics and re-exports of the CSR / tenant graph types.

pub mod budget;
mod csr;
mod idmap;
mod overlay;
mod query;
pub mod rows;
mod scratch;
pub mod spec;

pub use csr::Csr;

/// Asks the CPU to bring the cache line at `p` into L1 ahead of use, so the miss overlaps other
/// work. A hint: it never faults (any address, even an invalid one, is allowed) and changes no
/// memory, so it cannot break safety; it is `unsafe` in `core::arch` only because it is a
/// target-feature intrinsic (SSE, part of every x86-64). Elsewhere it does nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: prefetch reads no memory architecturally and cannot fault (see the doc above).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
pub use overlay::{Export, RebuildJob, TenantGraph};

/// A 256-bit set of allowed type codes (edge types or node types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EdgeTypeMask([u64; 4]);

/// Node-type filters use the same representation as edge-type filters.
pub type NodeTypeMask = EdgeTypeMask;

impl EdgeTypeMask {
    /// Every type allowed (the meaning of an omitted / `null` filter).
    pub fn all() -> Self {
        EdgeTypeMask([u64::MAX; 4])
    }

    /// Exactly the listed types allowed (an empty list allows nothing).
    pub fn from_types(types: &[u8]) -> Self {
        let mut m = [0u64; 4];
        for &t in types {
            m[(t >> 6) as usize] |= 1u64 << (t & 63);
        }
        EdgeTypeMask(m)
    }

    /// Whether type `t` is in the set.
    #[inline(always)]
    pub fn contains(&self, t: u8) -> bool {
        (self.0[(t >> 6) as usize] >> (t & 63)) & 1 == 1
    }

    /// Whether every type is in the set (lets queries skip the per-item check).
    #[inline]
    pub fn is_all(&self) -> bool {
        self.0 == [u64::MAX; 4]
    }
}

/// Work counters of one query (see the "Explain" section of docs/queries.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Adjacency rows read.
    pub rows_scanned: u64,
    /// Edges examined (pruned edges are not counted).
    pub edges_scanned: u64,
    /// Wall-clock duration of the query in microseconds, when its caller timed it (the Python
    /// binding does when a plan is asked for); 0 otherwise.
    pub micros: u64,
    /// Set when the query stopped at a limit of its budget (its answer is then discarded).
    pub abort: Option<budget::Abort>,
}

impl QueryStats {
    /// The query's error when it stopped at a limit of its budget.
    pub fn aborted(&self) -> crate::error::Result<()> {
        match self.abort {
            None => Ok(()),
            Some(budget::Abort::WorkCap(cap)) => Err(crate::error::Error::WorkCap(cap)),
            Some(budget::Abort::Deadline) => Err(crate::error::Error::Deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_basics() {
        let m = EdgeTypeMask::from_types(&[0, 63, 64, 255]);
        for t in 0..=255u8 {
            assert_eq!(m.contains(t), matches!(t, 0 | 63 | 64 | 255), "type {t}");
        }
        assert!(!m.is_all());
        assert!(EdgeTypeMask::all().is_all());
        assert!((0..=255u8).all(|t| EdgeTypeMask::all().contains(t)));
        assert!((0..=255u8).all(|t| !EdgeTypeMask::from_types(&[]).contains(t)));
    }
}

//! Immutable CSR snapshot of one tenant: hub-first internal numbering, weight-sorted rows of
//! interleaved edge records.

use crate::error::{Error, Result};
use super::idmap::IdMap;
use rustc_hash::FxHashMap;

/// Immutable CSR snapshot of one tenant.
///
/// Internal ids are `u32` in `0..n`, renumbered so that nodes are ordered by out-degree
/// descending (ties by external id ascending). Each adjacency row is sorted by weight
/// descending (ties by destination external id ascending), which lets Q1 prune by score bound.
/// A row is one run of [`Edge`] records, so reading it is one stream, not one per field.
#[derive(Debug, Clone)]
pub struct Csr {
    pub(crate) offsets: Vec<u32>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) ext_ids: Vec<i64>,
    pub(crate) node_type: Vec<u8>,
    /// In-degree of every node, computed at build time and moved into the `TenantGraph`
    /// that adopts the snapshot (keeps live edge counts exact on node deletion).
    pub(crate) in_deg: Vec<u32>,
    pub(crate) ext_to_int: IdMap,
}

/// One out-edge: destination (internal id), weight and edge type in 9 packed bytes, so that the
/// start of a row (all Q1 reads of it after pruning) is one cache line, not one per field.
/// Unaligned loads cost nothing extra on the targets this builds for (x86-64, aarch64).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, packed)]
pub(crate) struct Edge {
    pub dst: u32,
    pub w: f32,
    pub et: u8,
}

impl Edge {
    #[inline(always)]
    pub fn new(dst: u32, w: f32, et: u8) -> Self {
        Edge { dst, w, et }
    }
}

/// A borrowed adjacency row.
pub(crate) type RowRef<'a> = &'a [Edge];

/// A weight is valid when it lies in (0, 1] (NaN is rejected by the comparison).
#[inline]
pub(crate) fn valid_weight(w: f32) -> bool {
    w > 0.0 && w <= 1.0
}

/// Checks the parallel edge arrays of a write or build batch.
pub(crate) fn validate_edges(src: &[i64], dst: &[i64], w: &[f32], etype: &[u8]) -> Result<()> {
    if src.len() != dst.len() || src.len() != w.len() || src.len() != etype.len() {
        return Err(Error::InvalidArgument(format!(
            "edge arrays differ in length: src {}, dst {}, w {}, etype {}",
            src.len(),
            dst.len(),
            w.len(),
            etype.len()
        )));
    }
    if let Some(i) = w.iter().position(|&x| !valid_weight(x)) {
        return Err(Error::InvalidArgument(format!(
            "weight {} at index {i} is not in (0, 1]",
            w[i]
        )));
    }
    Ok(())
}

/// Approximate heap bytes of a hashbrown-backed map (buckets of `(K, V)` plus control bytes).
pub(crate) fn map_bytes<K, V>(m: &FxHashMap<K, V>) -> usize {
    let cap = m.capacity();
    if cap == 0 {
        return 0;
    }
    let buckets = (cap * 8 / 7).next_power_of_two();
    buckets * (std::mem::size_of::<(K, V)>() + 1)
}

pub(crate) fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

impl Csr {
    /// Builds a snapshot from parallel edge arrays plus an explicit node list.
    ///
    /// `src`/`dst`/`w`/`etype` must have the same length; a duplicated `(src, dst)` pair keeps
    /// its last occurrence. Nodes listed in `nodes` (types in `node_types`, last occurrence
    /// wins) exist even without edges; endpoints not listed get type 0.
    /// Errors: length mismatch, weight not in (0, 1] or NaN -> `InvalidArgument`.
    pub fn from_edges(
        src: &[i64],
        dst: &[i64],
        w: &[f32],
        etype: &[u8],
        nodes: &[i64],
        node_types: &[u8],
    ) -> Result<Csr> {
        validate_edges(src, dst, w, etype)?;
        if nodes.len() != node_types.len() {
            return Err(Error::InvalidArgument(format!(
                "nodes ({}) and node_types ({}) differ in length",
                nodes.len(),
                node_types.len()
            )));
        }
        if src.len() >= u32::MAX as usize || nodes.len() + 2 * src.len() >= u32::MAX as usize {
            return Err(Error::InvalidArgument("graph too large".into()));
        }

        // 1. Temporary ids in first-seen order.
        let mut tmp: FxHashMap<i64, u32> = FxHashMap::default();
        tmp.reserve(nodes.len() + src.len() / 4);
        let mut exts: Vec<i64> = Vec::new();
        let mut types: Vec<u8> = Vec::new();
        let mut intern = |id: i64, exts: &mut Vec<i64>, types: &mut Vec<u8>| -> u32 {
            *tmp.entry(id).or_insert_with(|| {
                exts.push(id);
                types.push(0);
                (exts.len() - 1) as u32
            })
        };
        for (&id, &t) in nodes.iter().zip(node_types) {
            let i = intern(id, &mut exts, &mut types);
            types[i as usize] = t;
        }
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(src.len());
        for (i, (&s, &d)) in src.iter().zip(dst).enumerate() {
            let si = intern(s, &mut exts, &mut types);
            let di = intern(d, &mut exts, &mut types);
            keyed.push((((si as u64) << 32) | di as u64, i as u32));
        }
        drop(tmp);

        // 2. Deduplicate (src, dst): the last occurrence wins.
        keyed.sort_unstable();
        let mut kept: Vec<(u32, u32, u32)> = Vec::with_capacity(keyed.len());
        for (j, &(key, idx)) in keyed.iter().enumerate() {
            if j + 1 < keyed.len() && keyed[j + 1].0 == key {
                continue;
            }
            kept.push(((key >> 32) as u32, key as u32, idx));
        }
        drop(keyed);

        // 3. Hub-first renumbering: out-degree desc, external id asc.
        let nn = exts.len();
        let mut deg = vec![0u32; nn];
        for &(s, _, _) in &kept {
            deg[s as usize] += 1;
        }
        let mut order: Vec<u32> = (0..nn as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            deg[b as usize]
                .cmp(&deg[a as usize])
                .then(exts[a as usize].cmp(&exts[b as usize]))
        });
        let mut new_id = vec![0u32; nn];
        for (ni, &old) in order.iter().enumerate() {
            new_id[old as usize] = ni as u32;
        }
        let ext_ids: Vec<i64> = order.iter().map(|&o| exts[o as usize]).collect();
        let node_type: Vec<u8> = order.iter().map(|&o| types[o as usize]).collect();
        let mut offsets = Vec::with_capacity(nn + 1);
        offsets.push(0u32);
        let mut acc = 0u32;
        for &o in &order {
            acc += deg[o as usize];
            offsets.push(acc);
        }
        drop((deg, order, exts, types));

        // 4. Rows: src asc, weight desc, dst external id asc.
        let mut edges: Vec<(u32, u32, f32, u8)> = kept
            .iter()
            .map(|&(s, d, idx)| {
                (
                    new_id[s as usize],
                    new_id[d as usize],
                    w[idx as usize],
                    etype[idx as usize],
                )
            })
            .collect();
        drop(kept);
        edges.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.2.total_cmp(&a.2))
                .then(ext_ids[a.1 as usize].cmp(&ext_ids[b.1 as usize]))
        });
        let mut in_deg = vec![0u32; nn];
        let mut recs = Vec::with_capacity(edges.len());
        for &(_, d, wt, t) in &edges {
            in_deg[d as usize] += 1;
            recs.push(Edge::new(d, wt, t));
        }
        drop(edges);
        let ext_to_int = IdMap::from_keys(&ext_ids);
        Ok(Csr {
            offsets,
            edges: recs,
            ext_ids,
            node_type,
            in_deg,
            ext_to_int,
        })
    }

    /// An empty snapshot (no nodes, no edges).
    pub fn empty() -> Csr {
        Csr {
            offsets: vec![0],
            edges: Vec::new(),
            ext_ids: Vec::new(),
            node_type: Vec::new(),
            in_deg: Vec::new(),
            ext_to_int: IdMap::from_keys(&[]),
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.ext_ids.len()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Approximate heap bytes held by the snapshot.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + vec_bytes(&self.offsets)
            + vec_bytes(&self.edges)
            + vec_bytes(&self.ext_ids)
            + vec_bytes(&self.node_type)
            + vec_bytes(&self.in_deg)
            + self.ext_to_int.bytes()
    }

    #[inline(always)]
    pub(crate) fn row(&self, u: u32) -> RowRef<'_> {
        let a = self.offsets[u as usize] as usize;
        let b = self.offsets[u as usize + 1] as usize;
        &self.edges[a..b]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_and_row_order() {
        // 5 -> {1 (0.5), 2 (0.9), 3 (0.5)}, 7 -> {5 (1.0)}, node 9 isolated with type 4.
        let c = Csr::from_edges(
            &[5, 5, 5, 7],
            &[3, 2, 1, 5],
            &[0.5, 0.9, 0.5, 1.0],
            &[0, 1, 2, 3],
            &[9, 5],
            &[4, 2],
        )
        .unwrap();
        assert_eq!(c.node_count(), 6);
        assert_eq!(c.edge_count(), 4);
        // hub first: 5 (deg 3), 7 (deg 1), then deg 0 by ext id: 1, 2, 3, 9
        assert_eq!(c.ext_ids, vec![5, 7, 1, 2, 3, 9]);
        assert_eq!(c.node_type, vec![2, 0, 0, 0, 0, 4]);
        let r = c.row(0);
        let d: Vec<i64> = r.iter().map(|e| c.ext_ids[e.dst as usize]).collect();
        assert_eq!(d, vec![2, 1, 3]);
        assert_eq!(r.iter().map(|e| e.w).collect::<Vec<_>>(), vec![0.9, 0.5, 0.5]);
        assert_eq!(r.iter().map(|e| e.et).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(std::mem::size_of::<Edge>(), 9);
        assert_eq!(c.in_deg, vec![1, 0, 1, 1, 1, 0]);
    }

    #[test]
    fn duplicates_last_wins() {
        let c = Csr::from_edges(
            &[1, 1, 1],
            &[2, 2, 3],
            &[0.3, 0.7, 0.1],
            &[1, 2, 3],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.edge_count(), 2);
        let r = c.row(0);
        assert_eq!(r.iter().map(|e| e.w).collect::<Vec<_>>(), vec![0.7, 0.1]);
        assert_eq!(r.iter().map(|e| e.et).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn weight_and_length_validation() {
        for bad in [0.0f32, -0.5, 1.0001, f32::NAN, f32::INFINITY] {
            let e = Csr::from_edges(&[1], &[2], &[bad], &[0], &[], &[]).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}");
        }
        assert!(Csr::from_edges(&[1], &[2], &[1.0], &[0], &[], &[]).is_ok());
        assert!(Csr::from_edges(&[1, 2], &[2], &[1.0], &[0], &[], &[]).is_err());
        assert!(Csr::from_edges(&[1], &[2], &[1.0], &[0], &[1], &[]).is_err());
    }

    #[test]
    fn memory_per_edge_at_most_16_bytes() {
        // 20k nodes, 10 out-edges each, pseudo-random destinations.
        let n = 20_000i64;
        let mut src = Vec::new();
        let mut dst = Vec::new();
        let mut x: u64 = 12345;
        for s in 0..n {
            for k in 0..10 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut d = ((x >> 33) % n as u64) as i64;
                if d == s {
                    d = (d + 1 + k) % n;
                }
                src.push(s * 7919);
                dst.push(d * 7919);
            }
        }
        let w: Vec<f32> = (0..src.len())
            .map(|i| ((i % 100) as f32 + 1.0) / 100.0)
            .collect();
        let t: Vec<u8> = (0..src.len()).map(|i| (i % 5) as u8).collect();
        let c = Csr::from_edges(&src, &dst, &w, &t, &[], &[]).unwrap();
        let per_edge = c.memory_bytes() as f64 / c.edge_count() as f64;
        assert!(c.edge_count() > 190_000);
        assert!(per_edge <= 16.0, "{per_edge} bytes/edge");
    }
}

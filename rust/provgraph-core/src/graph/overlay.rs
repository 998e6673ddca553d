//! Tenant graph: an `Arc<Csr>` snapshot plus a write overlay (read-your-writes) and rebuild/swap.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::csr::{map_bytes, validate_edges, vec_bytes, Csr, Edge, RowRef};
use super::{EdgeTypeMask, QueryStats};
use crate::error::{Error, Result};

/// Neighbours of the seed whose row lengths `estimate_work` reads.
const ESTIMATE_SAMPLE: usize = 8;

/// The merged graph as parallel arrays: `(src, dst, w, etype, nodes, node_types)`.
pub type Export = (Vec<i64>, Vec<i64>, Vec<f32>, Vec<u8>, Vec<i64>, Vec<u8>);

/// A full replacement adjacency row, sorted like CSR rows (weight desc, dst external id asc).
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    edges: Vec<Edge>,
}

impl Row {
    fn as_ref(&self) -> RowRef<'_> {
        &self.edges
    }

    /// Drops entries whose destination is tombstoned.
    fn drop_dead(&mut self, dead: &[u64]) {
        self.edges.retain(|e| !bit(dead, e.dst));
    }

    fn bytes(&self) -> usize {
        vec_bytes(&self.edges)
    }
}

#[inline(always)]
fn bit(words: &[u64], u: u32) -> bool {
    words
        .get((u >> 6) as usize)
        .is_some_and(|w| (w >> (u & 63)) & 1 == 1)
}

/// Changes on top of the base snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay {
    /// Full current row of every node whose out-edges changed.
    rows: FxHashMap<u32, Row>,
    /// External ids / types of nodes created after the snapshot (internal ids `n..`).
    new_ext: Vec<i64>,
    new_types: Vec<u8>,
    /// Type changes of snapshot nodes.
    type_over: FxHashMap<u32, u8>,
    /// External id overrides: `Some(id)` for created nodes, `None` for deleted ones.
    ext_over: FxHashMap<i64, Option<u32>>,
    /// Tombstone bitset over internal ids, and how many bits are set.
    dead: Vec<u64>,
    n_dead: usize,
}

/// A consistent read view: base snapshot plus overlay.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) base: Arc<Csr>,
    ov: Overlay,
}

impl Snapshot {
    /// Internal id capacity (base nodes + created nodes, including dead ones).
    #[inline]
    pub(crate) fn cap(&self) -> usize {
        self.base.ext_ids.len() + self.ov.new_ext.len()
    }

    /// Live internal id of an external id.
    #[inline]
    pub(crate) fn lookup(&self, ext: i64) -> Option<u32> {
        if !self.ov.ext_over.is_empty() {
            if let Some(o) = self.ov.ext_over.get(&ext) {
                return *o;
            }
        }
        self.base.ext_to_int.get(ext)
    }

    #[inline(always)]
    pub(crate) fn ext(&self, u: u32) -> i64 {
        let n = self.base.ext_ids.len();
        if (u as usize) < n {
            self.base.ext_ids[u as usize]
        } else {
            self.ov.new_ext[u as usize - n]
        }
    }

    #[inline(always)]
    pub(crate) fn node_type(&self, u: u32) -> u8 {
        let n = self.base.ext_ids.len();
        if (u as usize) < n {
            if !self.ov.type_over.is_empty() {
                return self.retyped(u);
            }
            self.base.node_type[u as usize]
        } else {
            self.ov.new_types[u as usize - n]
        }
    }

    /// `node_type` of a snapshot node when the overlay retypes some: kept out of line, so the
    /// common case stays small enough to inline into the query loops.
    #[cold]
    #[inline(never)]
    fn retyped(&self, u: u32) -> u8 {
        match self.ov.type_over.get(&u) {
            Some(&t) => t,
            None => self.base.node_type[u as usize],
        }
    }

    /// Whether any node is tombstoned (so traversals must check destinations).
    #[inline(always)]
    pub(crate) fn has_dead(&self) -> bool {
        self.ov.n_dead != 0
    }

    #[inline(always)]
    pub(crate) fn is_dead(&self, u: u32) -> bool {
        bit(&self.ov.dead, u)
    }

    /// Current out-row of a live node (may contain tombstoned destinations).
    #[inline(always)]
    pub(crate) fn row(&self, u: u32) -> RowRef<'_> {
        if !self.ov.rows.is_empty() {
            if let Some(r) = self.ov.rows.get(&u) {
                return r.as_ref();
            }
        }
        if (u as usize) < self.base.ext_ids.len() {
            self.base.row(u)
        } else {
            &[]
        }
    }

    /// Prefetches the external id of `u` (a snapshot node's; created nodes' are few and hot).
    #[inline(always)]
    pub(crate) fn prefetch_ext(&self, u: u32) {
        super::prefetch(self.base.ext_ids.as_ptr().wrapping_add(u as usize));
    }

    /// Prefetches the CSR offsets of `u` (the first load of reading its row; see `prefetch`).
    #[inline(always)]
    pub(crate) fn prefetch_offsets(&self, u: u32) {
        super::prefetch(self.base.offsets.as_ptr().wrapping_add(u as usize));
    }

    /// The base CSR when the overlay replaces no row, tombstones nothing and adds no node, so
    /// the BFS kernels can read rows straight from the snapshot arrays (and, for Q4, rely on
    /// the hub-first numbering: internal id order is (out-degree desc, external id asc)).
    #[inline]
    pub(crate) fn pristine_base(&self) -> Option<&Csr> {
        (self.ov.rows.is_empty() && self.ov.n_dead == 0 && self.ov.new_ext.is_empty())
            .then_some(&*self.base)
    }

    /// Number of out-edges of a live node into live nodes (every edge type).
    #[inline]
    pub(crate) fn live_out_degree(&self, u: u32) -> u64 {
        let r = self.row(u);
        if self.has_dead() {
            r.iter().filter(|e| !self.is_dead(e.dst)).count() as u64
        } else {
            r.len() as u64
        }
    }

    fn export(&self) -> Export {
        let (mut s, mut d, mut w, mut t, mut nodes, mut types) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for u in 0..self.cap() as u32 {
            if self.is_dead(u) {
                continue;
            }
            let e = self.ext(u);
            nodes.push(e);
            types.push(self.node_type(u));
            for edge in self.row(u) {
                if self.is_dead(edge.dst) {
                    continue;
                }
                s.push(e);
                d.push(self.ext(edge.dst));
                w.push(edge.w);
                t.push(edge.et);
            }
        }
        (s, d, w, t, nodes, types)
    }
}

/// A write recorded during a rebuild, replayed onto the new snapshot.
#[derive(Debug, Clone)]
enum Op {
    UpsertNodes(Vec<i64>, Vec<u8>),
    UpsertEdges(Vec<i64>, Vec<i64>, Vec<f32>, Vec<u8>),
    DeleteEdges(Vec<i64>, Vec<i64>),
    DeleteNodes(Vec<i64>),
}

/// A tenant graph: an `Arc<Csr>` snapshot plus a delta overlay so every acknowledged write is
/// visible at once (read-your-writes), with rebuild + atomic swap.
#[derive(Debug)]
pub struct TenantGraph {
    pub(crate) snap: Snapshot,
    /// Live in-degree (from live sources) of every internal id; 0 for dead ids.
    in_deg: Vec<u32>,
    live_nodes: usize,
    live_edges: usize,
    version: u64,
    /// `Some` while a rebuild is in progress: the writes made since `begin_rebuild`.
    recording: Option<Vec<Op>>,
}

/// A rebuild in progress: a frozen copy of the tenant's view, merged into a new CSR by
/// [`RebuildJob::build`] without holding any lock on the tenant.
#[derive(Debug)]
pub struct RebuildJob {
    snap: Snapshot,
}

impl RebuildJob {
    /// Merges base + overlay into a clean CSR (no tombstones, no overlay).
    pub fn build(self) -> Result<Csr> {
        let (s, d, w, t, n, nt) = self.snap.export();
        Csr::from_edges(&s, &d, &w, &t, &n, &nt)
    }
}

fn check_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(Error::InvalidArgument(format!(
            "{what}: arrays differ in length ({a} vs {b})"
        )));
    }
    Ok(())
}

impl TenantGraph {
    /// Wraps a snapshot with an empty overlay (snapshot version 0).
    pub fn new(mut base: Csr) -> Self {
        // The tenant keeps the (mutable) in-degrees; the shared snapshot does not need them.
        let in_deg = std::mem::take(&mut base.in_deg);
        let live_nodes = base.node_count();
        let live_edges = base.edge_count();
        TenantGraph {
            snap: Snapshot {
                base: Arc::new(base),
                ov: Overlay::default(),
            },
            in_deg,
            live_nodes,
            live_edges,
            version: 0,
            recording: None,
        }
    }

    /// A graph with no nodes.
    pub fn empty() -> Self {
        Self::new(Csr::empty())
    }

    fn check_capacity(&self, extra: usize) -> Result<()> {
        if self.snap.cap() + extra >= u32::MAX as usize {
            return Err(Error::InvalidArgument("too many nodes in tenant".into()));
        }
        Ok(())
    }

    fn record(&mut self, op: impl FnOnce() -> Op) {
        if let Some(ops) = self.recording.as_mut() {
            ops.push(op());
        }
    }

    // ---------------------------------------------------------------- writes

    /// Creates nodes or changes their type (last occurrence in the batch wins).
    pub fn upsert_nodes(&mut self, ids: &[i64], types: &[u8]) -> Result<()> {
        check_len("upsert_nodes", ids.len(), types.len())?;
        self.check_capacity(ids.len())?;
        for (&id, &t) in ids.iter().zip(types) {
            let u = self.ensure_node(id);
            self.set_type(u, t);
        }
        self.record(|| Op::UpsertNodes(ids.to_vec(), types.to_vec()));
        Ok(())
    }

    /// Creates or replaces edges; unknown endpoints are created with type 0.
    pub fn upsert_edges(
        &mut self,
        src: &[i64],
        dst: &[i64],
        w: &[f32],
        etype: &[u8],
    ) -> Result<()> {
        validate_edges(src, dst, w, etype)?;
        self.check_capacity(2 * src.len())?;
        for i in 0..src.len() {
            self.upsert_edge(src[i], dst[i], w[i], etype[i]);
        }
        self.record(|| Op::UpsertEdges(src.to_vec(), dst.to_vec(), w.to_vec(), etype.to_vec()));
        Ok(())
    }

    /// Deletes edges; returns how many existed (missing pairs are ignored).
    pub fn delete_edges(&mut self, src: &[i64], dst: &[i64]) -> Result<usize> {
        check_len("delete_edges", src.len(), dst.len())?;
        let mut n = 0;
        for (&s, &d) in src.iter().zip(dst) {
            n += self.delete_edge(s, d) as usize;
        }
        self.record(|| Op::DeleteEdges(src.to_vec(), dst.to_vec()));
        Ok(n)
    }

    /// Deletes nodes with all their in/out edges; returns how many existed.
    pub fn delete_nodes(&mut self, ids: &[i64]) -> Result<usize> {
        let mut n = 0;
        for &id in ids {
            n += self.delete_node(id) as usize;
        }
        self.record(|| Op::DeleteNodes(ids.to_vec()));
        Ok(n)
    }

    fn ensure_node(&mut self, ext: i64) -> u32 {
        if let Some(u) = self.snap.lookup(ext) {
            return u;
        }
        let u = self.snap.cap() as u32;
        let ov = &mut self.snap.ov;
        ov.new_ext.push(ext);
        ov.new_types.push(0);
        ov.ext_over.insert(ext, Some(u));
        self.in_deg.push(0);
        self.live_nodes += 1;
        u
    }

    fn set_type(&mut self, u: u32, t: u8) {
        let n = self.snap.base.ext_ids.len();
        let ov = &mut self.snap.ov;
        if (u as usize) < n {
            if self.snap.base.node_type[u as usize] == t {
                ov.type_over.remove(&u);
            } else {
                ov.type_over.insert(u, t);
            }
        } else {
            ov.new_types[u as usize - n] = t;
        }
    }

    /// Copies the current row of `u` into the overlay (if not there yet), without dead entries.
    fn materialize(&mut self, u: u32) {
        if !self.snap.ov.rows.contains_key(&u) {
            let row = Row {
                edges: self.snap.row(u).to_vec(),
            };
            self.snap.ov.rows.insert(u, row);
        }
        let ov = &mut self.snap.ov;
        if ov.n_dead != 0 {
            if let Some(row) = ov.rows.get_mut(&u) {
                row.drop_dead(&ov.dead);
            }
        }
    }

    fn upsert_edge(&mut self, s: i64, d: i64, w: f32, t: u8) {
        let su = self.ensure_node(s);
        let du = self.ensure_node(d);
        self.materialize(su);
        let base = &self.snap.base;
        let ov = &mut self.snap.ov;
        let n = base.ext_ids.len();
        let new_ext = &ov.new_ext;
        let ext_of = |x: u32| {
            if (x as usize) < n {
                base.ext_ids[x as usize]
            } else {
                new_ext[x as usize - n]
            }
        };
        let row = &mut ov.rows.get_mut(&su).expect("row materialized above").edges;
        if let Some(pos) = row.iter().position(|e| e.dst == du) {
            row.remove(pos);
        } else {
            self.live_edges += 1;
            self.in_deg[du as usize] += 1;
        }
        // First position whose entry sorts after (w, d): weight desc, ext id asc.
        let lo = row.partition_point(|e| {
            let wm = e.w;
            wm > w || (wm == w && ext_of(e.dst) < d)
        });
        row.insert(lo, Edge::new(du, w, t));
    }

    fn delete_edge(&mut self, s: i64, d: i64) -> bool {
        let (Some(su), Some(du)) = (self.snap.lookup(s), self.snap.lookup(d)) else {
            return false;
        };
        if !self.snap.row(su).iter().any(|e| e.dst == du) {
            return false;
        }
        self.materialize(su);
        let row = self
            .snap
            .ov
            .rows
            .get_mut(&su)
            .expect("row materialized above");
        let pos = row.edges.iter().position(|e| e.dst == du).expect("edge present");
        row.edges.remove(pos);
        self.live_edges -= 1;
        self.in_deg[du as usize] -= 1;
        true
    }

    fn delete_node(&mut self, id: i64) -> bool {
        let Some(x) = self.snap.lookup(id) else {
            return false;
        };
        let mut out_live = 0usize;
        let mut self_loop = false;
        for d in self.snap.row(x).iter().map(|e| e.dst) {
            if self.snap.is_dead(d) {
                continue;
            }
            out_live += 1;
            if d == x {
                self_loop = true;
            } else {
                self.in_deg[d as usize] -= 1;
            }
        }
        self.live_edges -= out_live + self.in_deg[x as usize] as usize - self_loop as usize;
        self.in_deg[x as usize] = 0;
        let ov = &mut self.snap.ov;
        let word = (x >> 6) as usize;
        if ov.dead.len() <= word {
            ov.dead.resize(word + 1, 0);
        }
        ov.dead[word] |= 1u64 << (x & 63);
        ov.n_dead += 1;
        ov.rows.remove(&x);
        ov.type_over.remove(&x);
        ov.ext_over.insert(id, None);
        self.live_nodes -= 1;
        true
    }

    // ---------------------------------------------------------------- state

    /// Whether `id` is a live node.
    pub fn has_node(&self, id: i64) -> bool {
        self.snap.lookup(id).is_some()
    }

    /// Live node count (base + overlay).
    pub fn node_count(&self) -> usize {
        self.live_nodes
    }

    /// Live edge count (edges whose both endpoints are live).
    pub fn edge_count(&self) -> usize {
        self.live_edges
    }

    /// Incremented on every snapshot swap (`finish_rebuild`).
    pub fn snapshot_version(&self) -> u64 {
        self.version
    }

    /// Overlay size: replaced rows + created nodes + tombstones.
    pub fn delta_rows(&self) -> usize {
        let ov = &self.snap.ov;
        ov.rows.len() + ov.new_ext.len() + ov.n_dead
    }

    /// Approximate heap bytes of the snapshot, overlay and bookkeeping.
    pub fn memory_bytes(&self) -> usize {
        let ov = &self.snap.ov;
        std::mem::size_of::<Self>()
            + self.snap.base.memory_bytes()
            + map_bytes(&ov.rows)
            + ov.rows.values().map(Row::bytes).sum::<usize>()
            + vec_bytes(&ov.new_ext)
            + vec_bytes(&ov.new_types)
            + map_bytes(&ov.type_over)
            + map_bytes(&ov.ext_over)
            + vec_bytes(&ov.dead)
            + vec_bytes(&self.in_deg)
    }

    /// Export of the current merged graph: `(src, dst, w, etype, nodes, node_types)`.
    pub fn export(&self) -> Export {
        self.snap.export()
    }

    // ---------------------------------------------------------------- rebuild

    /// Starts a rebuild: freezes a copy of the current view and records later writes.
    pub fn begin_rebuild(&mut self) -> Result<RebuildJob> {
        if self.recording.is_some() {
            return Err(Error::InvalidArgument(
                "a rebuild is already in progress".into(),
            ));
        }
        self.recording = Some(Vec::new());
        Ok(RebuildJob {
            snap: self.snap.clone(),
        })
    }

    /// Swaps in the built snapshot and replays the writes made since `begin_rebuild`.
    pub fn finish_rebuild(&mut self, built: Csr) -> Result<()> {
        let Some(ops) = self.recording.take() else {
            return Err(Error::InvalidArgument("no rebuild in progress".into()));
        };
        let version = self.version + 1;
        *self = TenantGraph::new(built);
        self.version = version;
        for op in ops {
            match op {
                Op::UpsertNodes(i, t) => self.upsert_nodes(&i, &t)?,
                Op::UpsertEdges(s, d, w, t) => self.upsert_edges(&s, &d, &w, &t)?,
                Op::DeleteEdges(s, d) => {
                    self.delete_edges(&s, &d)?;
                }
                Op::DeleteNodes(i) => {
                    self.delete_nodes(&i)?;
                }
            }
        }
        Ok(())
    }

    /// Abandons a rebuild in progress (no-op if none).
    pub fn abort_rebuild(&mut self) {
        self.recording = None;
    }

    /// Whether a rebuild is in progress.
    pub fn rebuild_in_progress(&self) -> bool {
        self.recording.is_some()
    }

    // ---------------------------------------------------------------- queries

    fn live(&self, id: i64) -> Result<u32> {
        self.snap.lookup(id).ok_or(Error::UnknownNode(id))
    }

    /// Q1: the `n` best-scored nodes within `hops` (1 or 2) out-edges of `seed`.
    pub fn topn(
        &self,
        seed: i64,
        hops: u8,
        n: usize,
        edge_types: &EdgeTypeMask,
        node_types: &EdgeTypeMask,
    ) -> Result<(Vec<(i64, f64)>, QueryStats)> {
        let s = self.live(seed)?;
        if !(1..=2).contains(&hops) {
            return Err(Error::InvalidArgument(format!(
                "hops must be 1 or 2, got {hops}"
            )));
        }
        let mut st = QueryStats::default();
        let r = self.snap.topn(s, hops, n, edge_types, node_types, &mut st);
        st.aborted()?;
        Ok((r, st))
    }

    /// Q2: number of distinct nodes at BFS distance 1..`depth`, capped at `limit`.
    pub fn neighborhood_size(
        &self,
        seed: i64,
        depth: u8,
        limit: u64,
        edge_types: &EdgeTypeMask,
        node_types: &EdgeTypeMask,
    ) -> Result<(u64, QueryStats)> {
        let s = self.live(seed)?;
        let mut st = QueryStats::default();
        let r = self
            .snap
            .neighborhood_size(s, depth, limit, edge_types, node_types, &mut st);
        st.aborted()?;
        Ok((r, st))
    }

    /// Q3: lexicographically smallest shortest path with at most `max_depth` edges.
    pub fn path(
        &self,
        src: i64,
        dst: i64,
        max_depth: u8,
        edge_types: &EdgeTypeMask,
    ) -> Result<(Option<Vec<i64>>, QueryStats)> {
        let s = self.live(src)?;
        let d = self.live(dst)?;
        let mut st = QueryStats::default();
        let r = self.snap.path(s, d, max_depth, edge_types, &mut st);
        st.aborted()?;
        Ok((r, st))
    }

    /// Q4: the `n` nodes of highest out-degree at BFS distance 1..`depth`.
    pub fn topdegree(
        &self,
        seed: i64,
        depth: u8,
        n: usize,
        edge_types: &EdgeTypeMask,
        node_types: &EdgeTypeMask,
    ) -> Result<(Vec<(i64, u64)>, QueryStats)> {
        let s = self.live(seed)?;
        let mut st = QueryStats::default();
        let r = self
            .snap
            .topdegree(s, depth, n, edge_types, node_types, &mut st);
        st.aborted()?;
        Ok((r, st))
    }

    /// An estimate of the edges a query will read, known before it runs (the service keeps
    /// cheap queries inline and sends heavy ones to its worker pool by it): with `topn`, Q1 of
    /// `depth` hops; else a traversal of `depth` levels that stops once it has reached `limit`
    /// nodes (Q2; Q3 and Q4 pass `u64::MAX`). Made from the seed's row length, the mean row
    /// length of up to `ESTIMATE_SAMPLE` of its neighbours and the graph's mean out-degree;
    /// capped at the edge count; 0 for an unknown seed (that query fails at once). A few cache
    /// lines per call: cheap beside any query.
    pub fn estimate_work(&self, seed: i64, depth: u8, limit: u64, topn: bool) -> u64 {
        let Ok(s) = self.live(seed) else { return 0 };
        let row = self.snap.row(s);
        let d0 = row.len() as f64;
        let total = self.live_edges as f64;
        if depth <= 1 || row.is_empty() {
            return d0.min(total) as u64;
        }
        let k = row.len().min(ESTIMATE_SAMPLE);
        let sampled: usize = row[..k].iter().map(|e| self.snap.row(e.dst).len()).sum();
        let nb = sampled as f64 / k as f64; // rows at level 1 are the seed's neighbours'
        if topn {
            return (d0 + d0 * nb).min(total) as u64;
        }
        let nodes = self.live_nodes.max(1) as f64;
        let grow = nb.max(total / nodes);
        let (mut frontier, mut reached, mut work) = (d0, 1.0 + d0, d0);
        for _ in 1..depth {
            if reached >= limit as f64 || frontier < 1.0 || work >= total {
                break;
            }
            work += frontier * grow;
            frontier = (frontier * grow).min(nodes - reached).max(0.0);
            reached += frontier;
        }
        work.min(total) as u64
    }

    /// Out-degree of a live node (all edge types, current graph).
    pub fn out_degree(&self, id: i64) -> Result<u64> {
        Ok(self.snap.live_out_degree(self.live(id)?))
    }
}

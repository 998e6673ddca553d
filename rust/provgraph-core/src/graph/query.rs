//! Query algorithms Q1-Q4 (docs/queries.md) over a base+overlay view, using thread-local scratch.

use super::csr::Edge;
use super::overlay::Snapshot;
use super::budget::{budget, Abort, CHECK_ROWS};
use super::scratch::{clear_bits, with_scratch};
use super::{prefetch, EdgeTypeMask, QueryStats};

/// An adjacency row as seen by the BFS kernels (kernels that ignore types never read them).
type Adj<'g> = &'g [Edge];

/// Prefetch batch of the BFS kernels: every `AHEAD` rows, the first cache line of each of the
/// next `AHEAD..2*AHEAD` queued rows is prefetched, so those misses overlap.
const AHEAD: usize = 16;

/// Cache lines of a row the BFS kernels prefetch (the rest stream in behind them).
const ROW_LINES: usize = 4;

/// Prefetches the first `ROW_LINES` cache lines of a row.
#[inline(always)]
fn prefetch_row(r: &[Edge]) {
    let p = r.as_ptr().cast::<u8>();
    let bytes = std::mem::size_of_val(r);
    let mut off = 0;
    while off < bytes && off < ROW_LINES * 64 {
        prefetch(p.wrapping_add(off));
        off += 64;
    }
}

/// The BFS kernels' prefetch, every `AHEAD` rows: the rows `AHEAD..2*AHEAD` queue entries ahead
/// (whose offsets the previous batch prefetched) and the offsets of those `2*AHEAD..3*AHEAD`
/// ahead, so neither waits on a miss of the other and the misses of a batch overlap.
#[inline(always)]
fn ahead<'g>(q: &[u32], head: usize, len: usize, row: &impl Fn(u32) -> Adj<'g>, pre_offsets: &impl Fn(u32)) {
    for &f in &q[(head + AHEAD).min(len)..(head + 2 * AHEAD).min(len)] {
        prefetch_row(row(f));
    }
    for &f in &q[(head + 2 * AHEAD).min(len)..(head + 3 * AHEAD).min(len)] {
        pre_offsets(f);
    }
}

/// The BFS kernels' prefetch at the start of a level (`q[head..end]`), which `ahead` reaches only
/// `AHEAD` rows in: the offsets of its first `2*AHEAD` rows, then those rows' first `AHEAD`, so
/// a small level's rows are not read one dependent miss after another.
#[inline(always)]
fn level_start<'g>(q: &[u32], head: usize, end: usize, row: &impl Fn(u32) -> Adj<'g>, pre_offsets: &impl Fn(u32)) {
    for &f in &q[head..(head + 2 * AHEAD).min(end)] {
        pre_offsets(f);
    }
    for &f in &q[head..(head + AHEAD).min(end)] {
        prefetch_row(row(f));
    }
}

/// Q1 pass 2: the row of the intermediate this many first-hop entries ahead is prefetched.
const Q1_AHEAD: usize = 4;

#[inline(always)]
fn bit_set(bits: &[u64], v: u32) -> bool {
    (bits[(v >> 6) as usize] >> (v & 63)) & 1 == 1
}

/// Sets `v`'s bit when `ok`, without a branch; whether it was clear before (a newly reached node).
#[inline(always)]
fn test_and_set(bits: &mut [u64], v: u32, ok: bool) -> bool {
    let wi = (v >> 6) as usize;
    let old = bits[wi];
    let new = old | ((ok as u64) << (v & 63));
    bits[wi] = new;
    old != new
}

#[inline(always)]
fn set_bit(bits: &mut [u64], v: u32) {
    bits[(v >> 6) as usize] |= 1u64 << (v & 63);
}

/// The visited set of a BFS kernel (`bfs_mark`).
pub(crate) trait Visited {
    /// Marks `v` when `ok`, without a branch; whether it was unmarked before (newly reached).
    fn test_and_set(&mut self, v: u32, ok: bool) -> bool;
    /// Marks `v`.
    fn set(&mut self, v: u32);
    /// The bitset to clear when marks outlive the query (`None`: nothing to clear).
    fn bits(&mut self) -> Option<&mut [u64]>;
}

/// A bitset left all-zero between queries (the kernel clears what it set): small enough for
/// L1, and scanned in id order afterwards by Q4.
impl Visited for &mut [u64] {
    #[inline(always)]
    fn test_and_set(&mut self, v: u32, ok: bool) -> bool {
        test_and_set(self, v, ok)
    }
    #[inline(always)]
    fn set(&mut self, v: u32) {
        set_bit(self, v)
    }
    fn bits(&mut self) -> Option<&mut [u64]> {
        Some(self)
    }
}

/// Generation stamps (`seen[v] == gen` iff visited; the scratch starts a new generation per
/// query), for a caller that needs no set afterwards (Q2). Nothing to clear, and each edge's
/// store goes to its own node's byte: with a bitset, consecutive edges into nodes that share a
/// word (hub destinations often do) wait on each other's read-modify-write of that word.
/// Measured in one process, alternating kernels (Q2 on G1 and on the sparse variant): 15-30%
/// faster than the bitset, and a few percent faster than u16 or u32 stamps (a byte per node is
/// the densest array that needs no read-modify-write).
pub(crate) struct Stamps<'a> {
    pub seen: &'a mut [u8],
    pub gen: u8,
}

impl Visited for Stamps<'_> {
    #[inline(always)]
    fn test_and_set(&mut self, v: u32, ok: bool) -> bool {
        let slot = &mut self.seen[v as usize];
        let old = *slot;
        let new = if ok { self.gen } else { old };
        *slot = new;
        old != new
    }
    #[inline(always)]
    fn set(&mut self, v: u32) {
        self.seen[v as usize] = self.gen;
    }
    fn bits(&mut self) -> Option<&mut [u64]> {
        None
    }
}

/// Sorts the distinct ids of `level` ascending through the all-zero bitset `tmp` (left zero),
/// so rows are then read in address order: O(len + words) instead of a comparison sort.
/// (Q2 / Q4 are set queries: the order inside a BFS level does not change their answers.)
fn sort_level(tmp: &mut [u64], level: &mut [u32]) {
    for &v in level.iter() {
        set_bit(tmp, v);
    }
    let mut i = 0;
    for (wi, w) in tmp.iter_mut().enumerate() {
        let mut x = *w;
        if x == 0 {
            continue;
        }
        *w = 0;
        while x != 0 {
            level[i] = (wi as u32) << 6 | x.trailing_zeros();
            i += 1;
            x &= x - 1;
        }
    }
}

/// Bitset BFS from `seed` over `depth` levels (the shared core of Q2 and Q4).
///
/// Marks every reached node in the visited set `bits` (a bitset, or Q2's generation stamps) and
/// appends it to `q` (`q[0] = seed`; each level is a contiguous run). An edge is followed when
/// `edge_ok(type, dst)`; a newly reached node is counted when `counted(dst)`. Stops after the row
/// in which the count reaches `limit` (so the count may overshoot `limit`). The inner loop is
/// branch-free: the visited mark is written unconditionally and the queue slot written unconditionally, the queue length
/// advancing only for new nodes (`q` has room for every id plus one). With `ET == false`
/// the type slice is ignored (every type passes). Large levels are first sorted by id (rows
/// then come in address order) and rows are touched in batches ahead of use (`AHEAD`).
/// Returns `(queue length, count)`; every set bit belongs to `q[..queue length]`.
///
/// With `QUEUE_LAST == false` (a caller that only counts, Q2) the nodes first reached at the
/// last level are counted but not queued: no queue store and no queue-length dependency per
/// edge on the level that reads the most edges. With a bitset their bits are cleared before
/// returning (one memset of the bitset, or by reading those rows again when that is cheaper), so
/// the invariant holds for the bits left: each belongs to `q[..queue length]` (stamps need no
/// clearing: the next query has another generation).
///
/// Under a thread budget (`budget`) it looks every `CHECK_ROWS` rows, and once at the end, at
/// the nodes reached so far (queued, plus first reached on an unqueued last level) and the
/// deadline; past either it stops at that row and records why in `st.abort`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bfs_mark<'g, const ET: bool, const QUEUE_LAST: bool>(
    bits: &mut impl Visited,
    tmp: &mut [u64],
    q: &mut [u32],
    seed: u32,
    depth: u8,
    limit: u64,
    row: impl Fn(u32) -> Adj<'g>,
    pre_offsets: impl Fn(u32),
    edge_ok: impl Fn(u8, u32) -> bool,
    counted: impl Fn(u32) -> bool,
    st: &mut QueryStats,
) -> (usize, u64) {
    bits.set(seed);
    q[0] = seed;
    let mut qlen = 1usize;
    let mut head = 0usize;
    let mut count = 0u64;
    let (mut rows, mut edges) = (0u64, 0u64);
    // rows q[last_from..head] were read at the last level without queueing what they reached
    let mut last_from: Option<(usize, u64)> = None;
    let mut reached_last = 0u64; // nodes first reached there
    let budget = budget();
    let limited = budget.is_limited();
    'levels: for level in 0..depth {
        let end = qlen;
        if head == end {
            break;
        }
        if (end - head) * 16 >= tmp.len() && end - head >= 64 {
            sort_level(tmp, &mut q[head..end]);
        }
        level_start(q, head, end, &row, &pre_offsets);
        let queue = QUEUE_LAST || level + 1 < depth;
        if !queue {
            last_from = Some((head, edges));
        }
        while head < end {
            if head.is_multiple_of(AHEAD) {
                ahead(q, head, qlen, &row, &pre_offsets);
            }
            let d = row(q[head]);
            head += 1;
            rows += 1;
            edges += d.len() as u64;
            // the branch is per row; each inner loop stays branch-free
            if queue {
                for e in d {
                    let v = e.dst;
                    let fresh = bits.test_and_set(v, edge_ok(if ET { e.et } else { 0 }, v));
                    q[qlen] = v;
                    qlen += fresh as usize;
                    count += (fresh & counted(v)) as u64;
                }
            } else {
                for e in d {
                    let v = e.dst;
                    let fresh = bits.test_and_set(v, edge_ok(if ET { e.et } else { 0 }, v));
                    count += (fresh & counted(v)) as u64;
                    reached_last += fresh as u64;
                }
            }
            if count >= limit {
                break 'levels;
            }
            if limited && rows.is_multiple_of(CHECK_ROWS) {
                if let Some(a) = budget.check(qlen as u64 + reached_last) {
                    st.abort = Some(a);
                    break 'levels;
                }
            }
        }
    }
    if limited && st.abort.is_none() && qlen as u64 + reached_last > budget.max_reached {
        st.abort = Some(Abort::WorkCap(budget.max_reached));
    }
    if let (Some((from, edges_before)), Some(bits)) = (last_from, bits.bits()) {
        // Clear what the last level set: a memset when the bitset is smaller than the edges
        // read there (a word costs less than an edge), else those rows again (now cached).
        if bits.len() <= (edges - edges_before) as usize {
            bits.fill(0);
        } else {
            for &u in &q[from..head] {
                for e in row(u) {
                    bits[(e.dst >> 6) as usize] = 0;
                }
            }
        }
    }
    st.rows_scanned += rows;
    st.edges_scanned += edges;
    (qlen, count)
}

/// Runs `bfs_mark` with the cheapest row access and filters for this snapshot and masks:
/// straight CSR arrays (type checks only when filtered, node-type checks only when filtered)
/// when the overlay is pristine, the general overlay-aware path otherwise.
#[allow(clippy::too_many_arguments)]
fn bfs_dispatch<const QUEUE_LAST: bool>(
    g: &Snapshot,
    bits: &mut impl Visited,
    tmp: &mut [u64],
    q: &mut [u32],
    seed: u32,
    depth: u8,
    limit: u64,
    em: &EdgeTypeMask,
    nm: &EdgeTypeMask,
    st: &mut QueryStats,
) -> (usize, u64) {
    let nt = |v: u32| nm.contains(g.node_type(v));
    let pre = |u: u32| g.prefetch_offsets(u);
    match (g.pristine_base(), em.is_all(), nm.is_all()) {
        (Some(b), true, true) => bfs_mark::<false, QUEUE_LAST>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row(u),
            pre,
            |_, _| true,
            |_| true,
            st,
        ),
        (Some(b), true, false) => bfs_mark::<false, QUEUE_LAST>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row(u),
            pre,
            |_, _| true,
            nt,
            st,
        ),
        (Some(b), false, true) => bfs_mark::<true, QUEUE_LAST>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row(u),
            pre,
            |t, _| em.contains(t),
            |_| true,
            st,
        ),
        (Some(b), false, false) => bfs_mark::<true, QUEUE_LAST>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row(u),
            pre,
            |t, _| em.contains(t),
            nt,
            st,
        ),
        (None, _, _) => {
            let has_dead = g.has_dead();
            let all_nodes = nm.is_all();
            bfs_mark::<true, QUEUE_LAST>(
                bits,
                tmp,
                q,
                seed,
                depth,
                limit,
                |u| g.row(u),
                pre,
                |t, v| em.contains(t) && !(has_dead && g.is_dead(v)),
                |v| all_nodes || nt(v),
                st,
            )
        }
    }
}

/// Up to this n, whether a node is in the current top-n is found by scanning it (a few cache
/// lines already in L1); above, through per-node stamps in the scratch arrays.
const SMALL_N: usize = 32;

/// The exact current top-n of Q1 candidates.
///
/// Only the nodes in the top-n are remembered: a node offered again is either one of them
/// (its entry moves if the new score is better) or is compared with the n-th entry like any
/// new node, so an offer touches no per-node memory when n is small. External ids order ties
/// and the answer: one is read only to break a tie on score, and the answer's are read at the
/// end (prefetched when their node entered the top-n, so those misses overlap).
struct TopN<'a, 'g> {
    g: &'g Snapshot,
    /// Used when n > SMALL_N: `mark[v] == gen` iff v is in the top-n, with score `score[v]`.
    mark: &'a mut [u32],
    score: &'a mut [f64],
    gen: u32,
    n: usize,
    small: bool,
    /// Sorted best first (score desc, external id asc): (score, internal id).
    items: Vec<(f64, u32)>,
    /// Score of the n-th item once n items exist; paths scoring strictly less cannot matter.
    thr: f64,
}

impl TopN<'_, '_> {
    /// `(s1, v1)` ranks before `(s2, v2)`: higher score, then smaller external id.
    #[inline(always)]
    fn better(&self, s1: f64, v1: u32, s2: f64, v2: u32) -> bool {
        s1 > s2 || (s1 == s2 && self.g.ext(v1) < self.g.ext(v2))
    }

    #[inline]
    fn offer(&mut self, v: u32, s: f64) {
        let vi = v as usize;
        let pos = if self.small {
            self.items.iter().position(|it| it.1 == v)
        } else if self.mark[vi] == self.gen {
            let old = self.score[vi];
            Some(self.items.partition_point(|it| self.better(it.0, it.1, old, v)))
        } else {
            None
        };
        match pos {
            Some(i) => {
                if s <= self.items[i].0 {
                    return;
                }
                self.items.remove(i);
            }
            None if self.items.len() == self.n => {
                let last = self.items[self.n - 1];
                if !self.better(s, v, last.0, last.1) {
                    return;
                }
                self.items.pop();
                if !self.small {
                    self.mark[last.1 as usize] = 0;
                }
            }
            None => self.g.prefetch_ext(v),
        }
        let ins = self.items.partition_point(|it| self.better(it.0, it.1, s, v));
        self.items.insert(ins, (s, v));
        if !self.small {
            self.mark[vi] = self.gen;
            self.score[vi] = s;
        }
        if self.items.len() == self.n {
            self.thr = self.items[self.n - 1].0;
        }
    }
}

impl Snapshot {
    /// Q1 on a live seed; `hops` is 1 or 2.
    ///
    /// Rows are sorted by weight descending and weights are at most 1, so once the top-n is
    /// full with n-th score `thr`, a first hop of weight `w1 < thr` and, in an intermediate's
    /// row, every entry after the first with `w1 * w2 < thr` are skipped (score-bound pruning).
    /// Intermediates are visited best first (the bound rises fastest), their rows prefetched a
    /// few ahead.
    pub(crate) fn topn(
        &self,
        seed: u32,
        hops: u8,
        n: usize,
        em: &EdgeTypeMask,
        nm: &EdgeTypeMask,
        st: &mut QueryStats,
    ) -> Vec<(i64, f64)> {
        if n == 0 {
            return Vec::new();
        }
        let all_nodes = nm.is_all();
        let has_dead = self.has_dead();
        let reportable = |v: u32| {
            v != seed
                && !(has_dead && self.is_dead(v))
                && (all_nodes || nm.contains(self.node_type(v)))
        };
        let small = n <= SMALL_N;
        let mut run = |mark: &mut [u32], score: &mut [f64], gen: u32| {
            let mut top = TopN {
                g: self,
                mark,
                score,
                gen,
                n,
                small,
                items: Vec::with_capacity(n.min(64) + 1),
                thr: f64::NEG_INFINITY,
            };
            let srow = self.row(seed);
            st.rows_scanned += 1;
            if hops >= 2 {
                for e in srow.iter().take(2 * Q1_AHEAD) {
                    self.prefetch_offsets(e.dst);
                }
            }
            // Pass 1: one-hop candidates, best weights first.
            for e in srow {
                let w1 = e.w as f64;
                if w1 < top.thr {
                    break;
                }
                st.edges_scanned += 1;
                let u = e.dst;
                if em.contains(e.et) && reportable(u) {
                    top.offer(u, w1);
                }
            }
            // Pass 2: two-hop paths seed -> u -> v; w1 * w2 <= w1 and rows are weight-sorted.
            if hops >= 2 {
                for e in srow.iter().take(Q1_AHEAD) {
                    prefetch(self.row(e.dst).as_ptr());
                }
                for (i, e) in srow.iter().enumerate() {
                    let w1 = e.w as f64;
                    if w1 < top.thr {
                        break;
                    }
                    if let Some(f) = srow.get(i + 2 * Q1_AHEAD) {
                        self.prefetch_offsets(f.dst);
                    }
                    if let Some(f) = srow.get(i + Q1_AHEAD) {
                        prefetch(self.row(f.dst).as_ptr());
                    }
                    let u = e.dst;
                    if !em.contains(e.et) || (has_dead && self.is_dead(u)) {
                        continue;
                    }
                    let r = self.row(u);
                    st.rows_scanned += 1;
                    for f in r {
                        let s = w1 * f.w as f64;
                        if s < top.thr {
                            break;
                        }
                        st.edges_scanned += 1;
                        let v = f.dst;
                        if em.contains(f.et) && reportable(v) {
                            top.offer(v, s);
                        }
                    }
                }
            }
            top.items.iter().map(|&(s, v)| (self.ext(v), s)).collect()
        };
        if small {
            run(&mut [], &mut [], 0)
        } else {
            with_scratch(self.cap(), |sc| run(&mut sc.mark, &mut sc.score, sc.gen))
        }
    }

    /// Q2 on a live seed.
    pub(crate) fn neighborhood_size(
        &self,
        seed: u32,
        depth: u8,
        limit: u64,
        em: &EdgeTypeMask,
        nm: &EdgeTypeMask,
        st: &mut QueryStats,
    ) -> u64 {
        if depth == 0 || limit == 0 {
            return 0;
        }
        with_scratch(self.cap(), |sc| {
            sc.bits_dirty = true; // sort_level's bitset is clear again once the kernel returns
            let words = self.cap().div_ceil(64); // this tenant's part of the thread's bitset
            let mut seen = Stamps { seen: &mut sc.seen[..self.cap()], gen: sc.seen_gen };
            let (tmp, q) = (&mut sc.bits2[..words], &mut sc.bq[..]);
            let (_, count) = bfs_dispatch::<false>(self, &mut seen, tmp, q, seed, depth, limit, em, nm, st);
            sc.bits_dirty = false;
            count.min(limit)
        })
    }

    /// Q3 between two live nodes.
    pub(crate) fn path(
        &self,
        src: u32,
        dst: u32,
        max_depth: u8,
        em: &EdgeTypeMask,
        st: &mut QueryStats,
    ) -> Option<Vec<i64>> {
        if src == dst {
            return Some(vec![self.ext(src)]);
        }
        if max_depth == 0 {
            return None;
        }
        with_scratch(self.cap(), |sc| {
            sc.bits_dirty = true;
            let r = match (self.pristine_base(), em.is_all()) {
                (Some(b), true) => self.path_in::<false>(
                    sc,
                    src,
                    dst,
                    max_depth,
                    |u| b.row(u),
                    |_, _| true,
                    st,
                ),
                (Some(b), false) => self.path_in::<true>(
                    sc,
                    src,
                    dst,
                    max_depth,
                    |u| b.row(u),
                    |t, _| em.contains(t),
                    st,
                ),
                (None, _) => {
                    let has_dead = self.has_dead();
                    self.path_in::<true>(
                        sc,
                        src,
                        dst,
                        max_depth,
                        |u| self.row(u),
                        |t, v| em.contains(t) && !(has_dead && self.is_dead(v)),
                        st,
                    )
                }
            };
            sc.bits_dirty = false;
            r
        })
    }

    /// Q3 body (docs/queries.md reference algorithm) for `src != dst`, `max_depth >= 1`;
    /// `row` / `ok` as in [`bfs_mark`]. Leaves the bitsets clear.
    ///
    /// Forward: bitset BFS keeping the layers contiguous in `bq`; the first row of a layer
    /// `L(D-1)` with a usable edge to `dst` fixes the distance `D` and is the first good node
    /// of that layer, so only the rest of `L(D-1)` is scanned (once) for further edges to `dst`.
    /// Backward: good nodes carry their layer in `level` (layers `L(k)` are contiguous in `bq`).
    /// Forward walk: smallest-id good successor with level `k+1` (levels are stored for good
    /// nodes only).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn path_in<'g, const ET: bool>(
        &self,
        sc: &mut super::scratch::Scratch,
        src: u32,
        dst: u32,
        max_depth: u8,
        row: impl Fn(u32) -> Adj<'g>,
        ok: impl Fn(u8, u32) -> bool,
        st: &mut QueryStats,
    ) -> Option<Vec<i64>> {
        let (bits, good, level, q) = (
            &mut sc.bits[..self.cap().div_ceil(64)],
            &mut sc.bits2[..self.cap().div_ceil(64)],
            &mut sc.level[..],
            &mut sc.bq[..],
        );
        // Any usable edge of `d` into `dst`.
        let hits_dst = |d: &[Edge]| -> bool {
            d.iter().fold(false, |acc, e| {
                let v = e.dst;
                acc | ((v == dst) & ok(if ET { e.et } else { 0 }, v))
            })
        };
        let (mut rows, mut edges) = (0u64, 0u64);
        set_bit(bits, src);
        q[0] = src;
        let mut qlen = 1usize;
        let mut head = 0usize;
        // starts[k] = start of layer L(k) in q.
        let mut starts: Vec<usize> = Vec::with_capacity(max_depth as usize + 2);
        starts.push(0);
        let mut hit: Option<(u8, usize)> = None;
        let budget = budget();
        let limited = budget.is_limited();
        'bfs: for k in 0..max_depth {
            let end = qlen;
            if head == end {
                break;
            }
            starts.push(end);
            let last = k + 1 == max_depth;
            level_start(q, head, end, &row, &|u| self.prefetch_offsets(u));
            while head < end {
                if head.is_multiple_of(AHEAD) {
                    ahead(q, head, qlen, &row, &|u| self.prefetch_offsets(u));
                }
                let d = row(q[head]);
                head += 1;
                rows += 1;
                edges += d.len() as u64;
                let found = if last {
                    hits_dst(d)
                } else {
                    let mut found = false;
                    for e in d {
                        let v = e.dst;
                        let o = ok(if ET { e.et } else { 0 }, v);
                        found |= (v == dst) & o;
                        q[qlen] = v;
                        qlen += test_and_set(bits, v, o) as usize;
                    }
                    found
                };
                if found {
                    hit = Some((k + 1, head - 1));
                    break 'bfs;
                }
                if limited && rows.is_multiple_of(CHECK_ROWS) {
                    if let Some(a) = budget.check(qlen as u64) {
                        st.abort = Some(a);
                        break 'bfs;
                    }
                }
            }
        }
        if limited && st.abort.is_none() && qlen as u64 > budget.max_reached {
            st.abort = Some(Abort::WorkCap(budget.max_reached));
        }
        if st.abort.is_some() {
            hit = None; // the answer is discarded: skip the backward walk
        }
        let mut goods: Vec<u32> = Vec::new();
        let result = hit.map(|(dd, first)| {
            let mut mark_good = |v: u32, k: u8, good: &mut [u64], level: &mut [u8]| {
                set_bit(good, v);
                level[v as usize] = k;
                goods.push(v);
            };
            mark_good(dst, dd, good, level);
            mark_good(q[first], dd - 1, good, level);
            let last_end = starts[dd as usize];
            for &u in &q[first + 1..last_end] {
                let d = row(u);
                rows += 1;
                edges += d.len() as u64;
                if hits_dst(d) {
                    mark_good(u, dd - 1, good, level);
                }
            }
            for k in (0..dd - 1).rev() {
                for &v in &q[starts[k as usize]..starts[k as usize + 1]] {
                    let d = row(v);
                    rows += 1;
                    let mut any = false;
                    for (i, e) in d.iter().enumerate() {
                        let (u, t) = (e.dst, if ET { e.et } else { 0 });
                        if bit_set(good, u) && level[u as usize] == k + 1 && ok(t, u) {
                            edges += i as u64 + 1;
                            any = true;
                            break;
                        }
                    }
                    if any {
                        mark_good(v, k, good, level);
                    } else {
                        edges += d.len() as u64;
                    }
                }
            }
            let mut out = Vec::with_capacity(dd as usize + 1);
            let mut cur = src;
            out.push(self.ext(cur));
            for k in 0..dd {
                let d = row(cur);
                rows += 1;
                edges += d.len() as u64;
                let mut best: Option<(i64, u32)> = None;
                for e in d {
                    let (u, t) = (e.dst, if ET { e.et } else { 0 });
                    if bit_set(good, u) && level[u as usize] == k + 1 && ok(t, u) {
                        let e = self.ext(u);
                        if best.is_none_or(|(be, _)| e < be) {
                            best = Some((e, u));
                        }
                    }
                }
                let (e, u) = best.expect("a good node always has a good successor");
                out.push(e);
                cur = u;
            }
            out
        });
        clear_bits(bits, &q[..qlen]);
        clear_bits(good, &goods);
        st.rows_scanned += rows;
        st.edges_scanned += edges;
        result
    }

    /// Q4 on a live seed.
    pub(crate) fn topdegree(
        &self,
        seed: u32,
        depth: u8,
        n: usize,
        em: &EdgeTypeMask,
        nm: &EdgeTypeMask,
        st: &mut QueryStats,
    ) -> Vec<(i64, u64)> {
        if depth == 0 || n == 0 {
            return Vec::new();
        }
        let all_nodes = nm.is_all();
        let reportable = |v: u32| v != seed && (all_nodes || nm.contains(self.node_type(v)));
        let pristine = self.pristine_base().is_some();
        let mut cands: Vec<(u64, i64)> = with_scratch(self.cap(), |sc| {
            sc.bits_dirty = true;
            let words = self.cap().div_ceil(64); // this tenant's part of the thread's bitsets
            let (bits, tmp, q) = (&mut sc.bits[..words], &mut sc.bits2[..words], &mut sc.bq[..]);
            let (qlen, _) = bfs_dispatch::<true>(
                self,
                &mut &mut *bits,
                tmp,
                q,
                seed,
                depth,
                u64::MAX,
                em,
                &EdgeTypeMask::all(),
                st,
            );
            let mut cands = Vec::new();
            if pristine && qlen > bits.len() {
                // Hub-first numbering: (degree desc, id asc) is internal id order, so the
                // answer is the n smallest reportable marked ids; scan the bitset upwards.
                'scan: for (wi, &w0) in bits.iter().enumerate() {
                    let mut w = w0;
                    while w != 0 {
                        let v = (wi as u32) << 6 | w.trailing_zeros();
                        w &= w - 1;
                        if reportable(v) {
                            cands.push((self.live_out_degree(v), self.ext(v)));
                            if cands.len() == n {
                                break 'scan;
                            }
                        }
                    }
                }
                clear_bits(bits, &q[..qlen]);
            } else {
                clear_bits(bits, &q[..qlen]);
                let found = &mut q[1..qlen];
                if pristine {
                    let mut m = 0;
                    for i in 0..found.len() {
                        if reportable(found[i]) {
                            found[m] = found[i];
                            m += 1;
                        }
                    }
                    let found = &mut found[..m];
                    if found.len() > n {
                        found.select_nth_unstable(n - 1);
                    }
                    let k = found.len().min(n);
                    cands.extend(
                        found[..k]
                            .iter()
                            .map(|&v| (self.live_out_degree(v), self.ext(v))),
                    );
                } else {
                    cands.extend(
                        found
                            .iter()
                            .filter(|&&v| reportable(v))
                            .map(|&v| (self.live_out_degree(v), self.ext(v))),
                    );
                }
            }
            sc.bits_dirty = false;
            cands
        });
        let cmp = |a: &(u64, i64), b: &(u64, i64)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if cands.len() > n {
            cands.select_nth_unstable_by(n - 1, cmp);
            cands.truncate(n);
        }
        cands.sort_unstable_by(cmp);
        cands.into_iter().map(|(d, e)| (e, d)).collect()
    }
}

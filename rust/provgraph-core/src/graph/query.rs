//! Query algorithms Q1-Q4 (docs/queries.md) over a base+overlay view, using thread-local scratch.

use super::overlay::Snapshot;
use super::scratch::{clear_bits, with_scratch};
use super::{EdgeTypeMask, QueryStats};

/// An adjacency row as seen by the BFS kernels: destinations and (when edge types are
/// filtered) their edge types; kernels that ignore types get an empty type slice.
type Adj<'g> = (&'g [u32], &'g [u8]);

/// Row-touch batch of the BFS kernels: every `AHEAD` rows, the first cache line of each of
/// the next `AHEAD..2*AHEAD` queued rows is loaded, so those misses overlap (safe code has no
/// prefetch instruction; a plain load whose value is kept alive does the same job).
const AHEAD: usize = 16;

#[inline(always)]
fn bit_set(bits: &[u64], v: u32) -> bool {
    (bits[(v >> 6) as usize] >> (v & 63)) & 1 == 1
}

#[inline(always)]
fn set_bit(bits: &mut [u64], v: u32) {
    bits[(v >> 6) as usize] |= 1u64 << (v & 63);
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
/// Marks every reached node in `bits` and appends it to `q` (`q[0] = seed`; each level is a
/// contiguous run). An edge is followed when `edge_ok(type, dst)`; a newly reached node is
/// counted when `counted(dst)`. Stops after the row in which the count reaches `limit` (so
/// the count may overshoot `limit`). The inner loop is branch-free: the visited word is
/// OR-ed unconditionally and the queue slot written unconditionally, the queue length
/// advancing only for new nodes (`q` has room for every id plus one). With `ET == false`
/// the type slice is ignored (every type passes). Large levels are first sorted by id (rows
/// then come in address order) and rows are touched in batches ahead of use (`AHEAD`).
/// Returns `(queue length, count)`; every set bit belongs to `q[..queue length]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bfs_mark<'g, const ET: bool>(
    bits: &mut [u64],
    tmp: &mut [u64],
    q: &mut [u32],
    seed: u32,
    depth: u8,
    limit: u64,
    row: impl Fn(u32) -> Adj<'g>,
    edge_ok: impl Fn(u8, u32) -> bool,
    counted: impl Fn(u32) -> bool,
    st: &mut QueryStats,
) -> (usize, u64) {
    set_bit(bits, seed);
    q[0] = seed;
    let mut qlen = 1usize;
    let mut head = 0usize;
    let mut count = 0u64;
    let (mut rows, mut edges) = (0u64, 0u64);
    let mut touch = 0u32;
    'levels: for _ in 0..depth {
        let end = qlen;
        if head == end {
            break;
        }
        if (end - head) * 16 >= tmp.len() && end - head >= 64 {
            sort_level(tmp, &mut q[head..end]);
        }
        while head < end {
            if head.is_multiple_of(AHEAD) {
                // Touch the starts of the rows AHEAD..2*AHEAD entries ahead in one batch, so
                // their cache misses overlap each other and the work on the current rows.
                for &f in q[(head + AHEAD).min(qlen)..(head + 2 * AHEAD).min(qlen)].iter() {
                    touch ^= row(f).0.first().copied().unwrap_or(0);
                }
            }
            let (d, et) = row(q[head]);
            head += 1;
            rows += 1;
            edges += d.len() as u64;
            let mut visit = |v: u32, t: u8| {
                let ok = edge_ok(t, v);
                let wi = (v >> 6) as usize;
                let old = bits[wi];
                let new = old | ((ok as u64) << (v & 63));
                bits[wi] = new;
                let fresh = old != new;
                q[qlen] = v;
                qlen += fresh as usize;
                count += (fresh & counted(v)) as u64;
            };
            if ET {
                for (&v, &t) in d.iter().zip(et) {
                    visit(v, t);
                }
            } else {
                for &v in d {
                    visit(v, 0);
                }
            }
            if count >= limit {
                break 'levels;
            }
        }
    }
    std::hint::black_box(touch);
    st.rows_scanned += rows;
    st.edges_scanned += edges;
    (qlen, count)
}

/// Runs `bfs_mark` with the cheapest row access and filters for this snapshot and masks:
/// straight CSR arrays (type checks only when filtered, node-type checks only when filtered)
/// when the overlay is pristine, the general overlay-aware path otherwise.
#[allow(clippy::too_many_arguments)]
fn bfs_dispatch(
    g: &Snapshot,
    bits: &mut [u64],
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
    match (g.pristine_base(), em.is_all(), nm.is_all()) {
        (Some(b), true, true) => bfs_mark::<false>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| (b.row_dst(u), &[][..]),
            |_, _| true,
            |_| true,
            st,
        ),
        (Some(b), true, false) => bfs_mark::<false>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| (b.row_dst(u), &[][..]),
            |_, _| true,
            nt,
            st,
        ),
        (Some(b), false, true) => bfs_mark::<true>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row_dst_et(u),
            |t, _| em.contains(t),
            |_| true,
            st,
        ),
        (Some(b), false, false) => bfs_mark::<true>(
            bits,
            tmp,
            q,
            seed,
            depth,
            limit,
            |u| b.row_dst_et(u),
            |t, _| em.contains(t),
            nt,
            st,
        ),
        (None, _, _) => {
            let has_dead = g.has_dead();
            let all_nodes = nm.is_all();
            bfs_mark::<true>(
                bits,
                tmp,
                q,
                seed,
                depth,
                limit,
                |u| {
                    let r = g.row(u);
                    (r.dst, r.et)
                },
                |t, v| em.contains(t) && !(has_dead && g.is_dead(v)),
                |v| all_nodes || nt(v),
                st,
            )
        }
    }
}

/// `(score, ext)` ordering of Q1 results: higher score first, then smaller external id.
#[inline(always)]
fn better(s1: f64, e1: i64, s2: f64, e2: i64) -> bool {
    s1 > s2 || (s1 == s2 && e1 < e2)
}

/// The exact current top-n of Q1 candidates, plus each candidate's best score so far.
struct TopN<'a> {
    mark: &'a mut [u32],
    in_top: &'a mut [u32],
    score: &'a mut [f64],
    gen: u32,
    n: usize,
    /// Sorted best first: (score, ext id, internal id).
    items: Vec<(f64, i64, u32)>,
    /// Score of the n-th item once n items exist; paths scoring strictly less cannot matter.
    thr: f64,
}

impl TopN<'_> {
    #[inline]
    fn offer(&mut self, v: u32, ext: i64, s: f64) {
        let vi = v as usize;
        let seen = self.mark[vi] == self.gen;
        if seen && s <= self.score[vi] {
            return;
        }
        let old = self.score[vi];
        self.mark[vi] = self.gen;
        self.score[vi] = s;
        if seen && self.in_top[vi] == self.gen {
            let pos = self.items.partition_point(|e| better(e.0, e.1, old, ext));
            self.items.remove(pos);
        } else if self.items.len() == self.n {
            let last = self.items[self.n - 1];
            if !better(s, ext, last.0, last.1) {
                return;
            }
            self.items.pop();
            self.in_top[last.2 as usize] = 0;
        }
        let ins = self.items.partition_point(|e| better(e.0, e.1, s, ext));
        self.items.insert(ins, (s, ext, v));
        self.in_top[vi] = self.gen;
        if self.items.len() == self.n {
            self.thr = self.items[self.n - 1].0;
        }
    }
}

impl Snapshot {
    /// Q1 on a live seed; `hops` is 1 or 2.
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
        with_scratch(self.cap(), |sc| {
            let mut top = TopN {
                mark: &mut sc.mark,
                in_top: &mut sc.aux,
                score: &mut sc.score,
                gen: sc.gen,
                n,
                items: Vec::with_capacity(n.min(64) + 1),
                thr: f64::NEG_INFINITY,
            };
            let srow = self.row(seed);
            st.rows_scanned += 1;
            // Pass 1: one-hop candidates, best weights first.
            for i in 0..srow.len() {
                let w1 = srow.w[i] as f64;
                if w1 < top.thr {
                    break;
                }
                st.edges_scanned += 1;
                let u = srow.dst[i];
                if em.contains(srow.et[i]) && reportable(u) {
                    top.offer(u, self.ext(u), w1);
                }
            }
            // Pass 2: two-hop paths seed -> u -> v; w1 * w2 <= w1 and rows are weight-sorted.
            if hops >= 2 {
                for i in 0..srow.len() {
                    let w1 = srow.w[i] as f64;
                    if w1 < top.thr {
                        break;
                    }
                    let u = srow.dst[i];
                    if !em.contains(srow.et[i]) || (has_dead && self.is_dead(u)) {
                        continue;
                    }
                    let r = self.row(u);
                    st.rows_scanned += 1;
                    for j in 0..r.len() {
                        let s = w1 * r.w[j] as f64;
                        if s < top.thr {
                            break;
                        }
                        st.edges_scanned += 1;
                        let v = r.dst[j];
                        if em.contains(r.et[j]) && reportable(v) {
                            top.offer(v, self.ext(v), s);
                        }
                    }
                }
            }
            top.items.iter().map(|&(s, e, _)| (e, s)).collect()
        })
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
            sc.bits_dirty = true;
            let (bits, tmp, q) = (&mut sc.bits[..], &mut sc.bits2[..], &mut sc.bq[..]);
            let (qlen, count) = bfs_dispatch(self, bits, tmp, q, seed, depth, limit, em, nm, st);
            clear_bits(bits, &q[..qlen]);
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
                    |u| (b.row_dst(u), &[][..]),
                    |_, _| true,
                    st,
                ),
                (Some(b), false) => self.path_in::<true>(
                    sc,
                    src,
                    dst,
                    max_depth,
                    |u| b.row_dst_et(u),
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
                        |u| {
                            let r = self.row(u);
                            (r.dst, r.et)
                        },
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
            &mut sc.bits[..],
            &mut sc.bits2[..],
            &mut sc.level[..],
            &mut sc.bq[..],
        );
        // Any usable edge of `(d, et)` into `dst`.
        let hits_dst = |d: &[u32], et: &[u8]| -> bool {
            if ET {
                d.iter()
                    .zip(et)
                    .fold(false, |acc, (&v, &t)| acc | ((v == dst) & ok(t, v)))
            } else {
                d.iter()
                    .fold(false, |acc, &v| acc | ((v == dst) & ok(0, v)))
            }
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
        let mut touch = 0u32;
        'bfs: for k in 0..max_depth {
            let end = qlen;
            if head == end {
                break;
            }
            starts.push(end);
            let last = k + 1 == max_depth;
            while head < end {
                if head.is_multiple_of(AHEAD) {
                    for &f in q[(head + AHEAD).min(qlen)..(head + 2 * AHEAD).min(qlen)].iter() {
                        touch ^= row(f).0.first().copied().unwrap_or(0);
                    }
                }
                let (d, et) = row(q[head]);
                head += 1;
                rows += 1;
                edges += d.len() as u64;
                let found = if last {
                    hits_dst(d, et)
                } else {
                    let mut found = false;
                    let mut visit = |v: u32, t: u8| {
                        let o = ok(t, v);
                        found |= (v == dst) & o;
                        let wi = (v >> 6) as usize;
                        let old = bits[wi];
                        let new = old | ((o as u64) << (v & 63));
                        bits[wi] = new;
                        q[qlen] = v;
                        qlen += (old != new) as usize;
                    };
                    if ET {
                        for (&v, &t) in d.iter().zip(et) {
                            visit(v, t);
                        }
                    } else {
                        for &v in d {
                            visit(v, 0);
                        }
                    }
                    found
                };
                if found {
                    hit = Some((k + 1, head - 1));
                    break 'bfs;
                }
            }
        }
        std::hint::black_box(touch);
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
                let (d, et) = row(u);
                rows += 1;
                edges += d.len() as u64;
                if hits_dst(d, et) {
                    mark_good(u, dd - 1, good, level);
                }
            }
            for k in (0..dd - 1).rev() {
                for &v in &q[starts[k as usize]..starts[k as usize + 1]] {
                    let (d, et) = row(v);
                    rows += 1;
                    let mut any = false;
                    for (i, &u) in d.iter().enumerate() {
                        let t = if ET { et[i] } else { 0 };
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
                let (d, et) = row(cur);
                rows += 1;
                edges += d.len() as u64;
                let mut best: Option<(i64, u32)> = None;
                for (i, &u) in d.iter().enumerate() {
                    let t = if ET { et[i] } else { 0 };
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
            let (bits, tmp, q) = (&mut sc.bits[..], &mut sc.bits2[..], &mut sc.bq[..]);
            let (qlen, _) = bfs_dispatch(
                self,
                bits,
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

//! Query algorithms Q1-Q4 (docs/queries.md) over a base+overlay view, using thread-local scratch.

use super::overlay::Snapshot;
use super::scratch::with_scratch;
use super::{EdgeTypeMask, QueryStats};

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
        let all_nodes = nm.is_all();
        let has_dead = self.has_dead();
        with_scratch(self.cap(), |sc| {
            let gen = sc.gen;
            let (mark, queue) = (&mut sc.mark, &mut sc.queue);
            mark[seed as usize] = gen;
            queue.push(seed);
            let mut count = 0u64;
            let mut head = 0usize;
            for _ in 0..depth {
                let end = queue.len();
                if head == end {
                    break;
                }
                while head < end {
                    let u = queue[head];
                    head += 1;
                    let r = self.row(u);
                    st.rows_scanned += 1;
                    st.edges_scanned += r.len() as u64;
                    for i in 0..r.len() {
                        let v = r.dst[i];
                        if mark[v as usize] == gen
                            || !em.contains(r.et[i])
                            || (has_dead && self.is_dead(v))
                        {
                            continue;
                        }
                        mark[v as usize] = gen;
                        queue.push(v);
                        if all_nodes || nm.contains(self.node_type(v)) {
                            count += 1;
                            if count >= limit {
                                return limit;
                            }
                        }
                    }
                }
            }
            count
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
        let has_dead = self.has_dead();
        let usable = |et: u8, v: u32| em.contains(et) && !(has_dead && self.is_dead(v));
        with_scratch(self.cap(), |sc| {
            let gen = sc.gen;
            let (mark, good, level, queue) =
                (&mut sc.mark, &mut sc.aux, &mut sc.level, &mut sc.queue);
            // BFS layers L0..L(D-1) stored contiguously in `queue`; starts[k] = start of L_k.
            mark[src as usize] = gen;
            level[src as usize] = 0;
            queue.push(src);
            let mut starts: Vec<usize> = vec![0];
            let mut found: Option<u8> = None;
            let mut head = 0usize;
            'bfs: for k in 0..max_depth {
                let end = queue.len();
                if head == end {
                    break;
                }
                starts.push(end);
                while head < end {
                    let u = queue[head];
                    head += 1;
                    let r = self.row(u);
                    st.rows_scanned += 1;
                    for i in 0..r.len() {
                        st.edges_scanned += 1;
                        let v = r.dst[i];
                        if mark[v as usize] == gen || !usable(r.et[i], v) {
                            continue;
                        }
                        mark[v as usize] = gen;
                        level[v as usize] = k + 1;
                        if v == dst {
                            found = Some(k + 1);
                            break 'bfs;
                        }
                        queue.push(v);
                    }
                }
            }
            let d = found?;
            // good[D] = {dst}; good[k] = {v in L_k : v -> u with u in good[k+1]}.
            good[dst as usize] = gen;
            for k in (0..d).rev() {
                let layer = &queue[starts[k as usize]..starts[k as usize + 1]];
                for &v in layer {
                    let r = self.row(v);
                    st.rows_scanned += 1;
                    for i in 0..r.len() {
                        st.edges_scanned += 1;
                        let u = r.dst[i];
                        if good[u as usize] == gen
                            && mark[u as usize] == gen
                            && level[u as usize] == k + 1
                            && usable(r.et[i], u)
                        {
                            good[v as usize] = gen;
                            break;
                        }
                    }
                }
            }
            // Walk forward choosing the smallest-id good successor of the next layer.
            let mut out = Vec::with_capacity(d as usize + 1);
            let mut cur = src;
            out.push(self.ext(cur));
            for k in 0..d {
                let r = self.row(cur);
                st.rows_scanned += 1;
                let mut best: Option<(i64, u32)> = None;
                for i in 0..r.len() {
                    st.edges_scanned += 1;
                    let u = r.dst[i];
                    if good[u as usize] == gen
                        && mark[u as usize] == gen
                        && level[u as usize] == k + 1
                        && usable(r.et[i], u)
                    {
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
            Some(out)
        })
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
        let has_dead = self.has_dead();
        let mut cands: Vec<(u64, i64)> = with_scratch(self.cap(), |sc| {
            let gen = sc.gen;
            let (mark, queue) = (&mut sc.mark, &mut sc.queue);
            mark[seed as usize] = gen;
            queue.push(seed);
            let mut cands = Vec::new();
            let mut head = 0usize;
            for _ in 0..depth {
                let end = queue.len();
                if head == end {
                    break;
                }
                while head < end {
                    let u = queue[head];
                    head += 1;
                    let r = self.row(u);
                    st.rows_scanned += 1;
                    st.edges_scanned += r.len() as u64;
                    for i in 0..r.len() {
                        let v = r.dst[i];
                        if mark[v as usize] == gen
                            || !em.contains(r.et[i])
                            || (has_dead && self.is_dead(v))
                        {
                            continue;
                        }
                        mark[v as usize] = gen;
                        queue.push(v);
                        if all_nodes || nm.contains(self.node_type(v)) {
                            cands.push((self.live_out_degree(v), self.ext(v)));
                        }
                    }
                }
            }
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

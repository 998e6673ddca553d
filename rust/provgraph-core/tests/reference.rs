//! Randomized differential tests of Q1-Q4 and writes against a brute-force reference model.

use std::collections::{BTreeMap, VecDeque};

use provgraph_core::graph::{Csr, EdgeTypeMask, TenantGraph};
use provgraph_core::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Brute-force model: node -> type, (src, dst) -> (w, etype).
#[derive(Clone, Default, Debug)]
struct Model {
    nodes: BTreeMap<i64, u8>,
    edges: BTreeMap<(i64, i64), (f32, u8)>,
}

fn allowed(types: &Option<Vec<u8>>, t: u8) -> bool {
    types.as_ref().is_none_or(|v| v.contains(&t))
}

fn mask(types: &Option<Vec<u8>>) -> EdgeTypeMask {
    match types {
        None => EdgeTypeMask::all(),
        Some(v) => EdgeTypeMask::from_types(v),
    }
}

impl Model {
    fn upsert_nodes(&mut self, ids: &[i64], types: &[u8]) {
        for (&i, &t) in ids.iter().zip(types) {
            self.nodes.insert(i, t);
        }
    }
    fn upsert_edges(&mut self, s: &[i64], d: &[i64], w: &[f32], t: &[u8]) {
        for i in 0..s.len() {
            self.nodes.entry(s[i]).or_insert(0);
            self.nodes.entry(d[i]).or_insert(0);
            self.edges.insert((s[i], d[i]), (w[i], t[i]));
        }
    }
    fn delete_edges(&mut self, s: &[i64], d: &[i64]) -> usize {
        s.iter()
            .zip(d)
            .filter(|(a, b)| self.edges.remove(&(**a, **b)).is_some())
            .count()
    }
    fn delete_nodes(&mut self, ids: &[i64]) -> usize {
        let mut n = 0;
        for id in ids {
            if self.nodes.remove(id).is_some() {
                n += 1;
                self.edges.retain(|&(a, b), _| a != *id && b != *id);
            }
        }
        n
    }
    fn out(&self, u: i64) -> Vec<(i64, f32, u8)> {
        self.edges
            .range((u, i64::MIN)..=(u, i64::MAX))
            .map(|(&(_, d), &(w, t))| (d, w, t))
            .collect()
    }
    fn out_degree(&self, u: i64) -> u64 {
        self.out(u).len() as u64
    }

    /// Q1 by exhaustive path enumeration.
    fn topn(
        &self,
        seed: i64,
        hops: u8,
        n: usize,
        et: &Option<Vec<u8>>,
        nt: &Option<Vec<u8>>,
    ) -> Vec<(i64, f64)> {
        let mut best: BTreeMap<i64, f64> = BTreeMap::new();
        let mut offer = |v: i64, s: f64| {
            if v != seed && allowed(nt, self.nodes[&v]) {
                let e = best.entry(v).or_insert(s);
                if s > *e {
                    *e = s;
                }
            }
        };
        for (u, w1, t1) in self.out(seed) {
            if !allowed(et, t1) {
                continue;
            }
            offer(u, w1 as f64);
            if hops >= 2 {
                for (v, w2, t2) in self.out(u) {
                    if allowed(et, t2) {
                        offer(v, (w1 as f64) * (w2 as f64));
                    }
                }
            }
        }
        let mut v: Vec<(i64, f64)> = best.into_iter().collect();
        v.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    fn bfs(&self, seed: i64, depth: u8, et: &Option<Vec<u8>>) -> BTreeMap<i64, u8> {
        let mut dist = BTreeMap::new();
        dist.insert(seed, 0u8);
        let mut q = VecDeque::from([seed]);
        while let Some(u) = q.pop_front() {
            let du = dist[&u];
            if du == depth {
                continue;
            }
            for (v, _, t) in self.out(u) {
                if allowed(et, t) && !dist.contains_key(&v) {
                    dist.insert(v, du + 1);
                    q.push_back(v);
                }
            }
        }
        dist
    }

    fn neighborhood(
        &self,
        seed: i64,
        depth: u8,
        limit: u64,
        et: &Option<Vec<u8>>,
        nt: &Option<Vec<u8>>,
    ) -> u64 {
        let c = self
            .bfs(seed, depth, et)
            .iter()
            .filter(|(&v, &d)| d >= 1 && allowed(nt, self.nodes[&v]))
            .count() as u64;
        c.min(limit)
    }

    /// Q3: BFS distance, then DFS over sorted neighbours for a walk of exactly that length;
    /// the first one found is the lexicographically smallest.
    fn path(&self, src: i64, dst: i64, max_depth: u8, et: &Option<Vec<u8>>) -> Option<Vec<i64>> {
        let d = *self.bfs(src, max_depth, et).get(&dst)?;
        fn dfs(
            m: &Model,
            cur: i64,
            dst: i64,
            left: u8,
            et: &Option<Vec<u8>>,
            acc: &mut Vec<i64>,
        ) -> bool {
            if left == 0 {
                return cur == dst;
            }
            let mut nb: Vec<i64> = m
                .out(cur)
                .into_iter()
                .filter(|x| allowed(et, x.2))
                .map(|x| x.0)
                .collect();
            nb.sort();
            for v in nb {
                acc.push(v);
                if dfs(m, v, dst, left - 1, et, acc) {
                    return true;
                }
                acc.pop();
            }
            false
        }
        let mut acc = vec![src];
        assert!(dfs(self, src, dst, d, et, &mut acc));
        Some(acc)
    }

    fn topdegree(
        &self,
        seed: i64,
        depth: u8,
        n: usize,
        et: &Option<Vec<u8>>,
        nt: &Option<Vec<u8>>,
    ) -> Vec<(i64, u64)> {
        let mut v: Vec<(i64, u64)> = self
            .bfs(seed, depth, et)
            .into_iter()
            .filter(|&(v, d)| d >= 1 && allowed(nt, self.nodes[&v]))
            .map(|(v, _)| (v, self.out_degree(v)))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    fn to_csr(&self) -> Csr {
        let (mut s, mut d, mut w, mut t) = (vec![], vec![], vec![], vec![]);
        for (&(a, b), &(x, y)) in &self.edges {
            s.push(a);
            d.push(b);
            w.push(x);
            t.push(y);
        }
        let nodes: Vec<i64> = self.nodes.keys().copied().collect();
        let types: Vec<u8> = self.nodes.values().copied().collect();
        Csr::from_edges(&s, &d, &w, &t, &nodes, &types).unwrap()
    }
}

const WEIGHTS: [f32; 7] = [1.0, 0.5, 0.5, 0.25, 0.75, 0.1, 0.3];

fn rand_weight(rng: &mut StdRng) -> f32 {
    if rng.gen_bool(0.6) {
        WEIGHTS[rng.gen_range(0..WEIGHTS.len())]
    } else {
        rng.gen_range(0.001f32..=1.0)
    }
}

fn rand_types(rng: &mut StdRng) -> Option<Vec<u8>> {
    if rng.gen_bool(0.5) {
        None
    } else {
        Some((0..4u8).filter(|_| rng.gen_bool(0.5)).collect())
    }
}

/// External ids: a small id space with negative values so that deletes and re-creates collide.
fn rand_id(rng: &mut StdRng, space: i64) -> i64 {
    rng.gen_range(0..space) * 37 - 500
}

fn random_model(rng: &mut StdRng) -> Model {
    let nn = rng.gen_range(1..=60i64);
    let mut m = Model::default();
    for _ in 0..nn {
        m.nodes.insert(rand_id(rng, nn * 2), rng.gen_range(0..4));
    }
    let ids: Vec<i64> = m.nodes.keys().copied().collect();
    let ne = rng.gen_range(0..=(ids.len() * 4));
    for _ in 0..ne {
        let s = ids[rng.gen_range(0..ids.len())];
        let d = ids[rng.gen_range(0..ids.len())];
        m.edges
            .insert((s, d), (rand_weight(rng), rng.gen_range(0..4)));
    }
    m
}

fn check_all(g: &TenantGraph, m: &Model, rng: &mut StdRng, ctx: &str) {
    assert_eq!(g.node_count(), m.nodes.len(), "{ctx}: node_count");
    assert_eq!(g.edge_count(), m.edges.len(), "{ctx}: edge_count");
    // export equals the model
    let (s, d, w, t, nodes, types) = g.export();
    let ex_nodes: BTreeMap<i64, u8> = nodes.into_iter().zip(types).collect();
    assert_eq!(ex_nodes, m.nodes, "{ctx}: exported nodes");
    let ex_edges: BTreeMap<(i64, i64), (f32, u8)> =
        (0..s.len()).map(|i| ((s[i], d[i]), (w[i], t[i]))).collect();
    assert_eq!(ex_edges.len(), s.len(), "{ctx}: exported duplicate edge");
    assert_eq!(ex_edges, m.edges, "{ctx}: exported edges");

    let ids: Vec<i64> = m.nodes.keys().copied().collect();
    for &id in &ids {
        assert!(g.has_node(id));
        assert_eq!(
            g.out_degree(id).unwrap(),
            m.out_degree(id),
            "{ctx}: out_degree {id}"
        );
    }
    if ids.is_empty() {
        return;
    }
    for _ in 0..8 {
        let seed = ids[rng.gen_range(0..ids.len())];
        let et = rand_types(rng);
        let nt = rand_types(rng);
        let (em, nm) = (mask(&et), mask(&nt));
        let hops = rng.gen_range(1..=2u8);
        let n = [0usize, 1, 2, 3, 5, 10, 100][rng.gen_range(0..7)];
        let (got, _) = g.topn(seed, hops, n, &em, &nm).unwrap();
        assert_eq!(
            got,
            m.topn(seed, hops, n, &et, &nt),
            "{ctx}: topn seed {seed} hops {hops} n {n} et {et:?} nt {nt:?}"
        );

        let depth = rng.gen_range(0..=4u8);
        let limit = [0u64, 1, 3, 10, 50_000][rng.gen_range(0..5)];
        let (got, _) = g.neighborhood_size(seed, depth, limit, &em, &nm).unwrap();
        assert_eq!(
            got,
            m.neighborhood(seed, depth, limit, &et, &nt),
            "{ctx}: neighborhood seed {seed}"
        );

        let dst = ids[rng.gen_range(0..ids.len())];
        let md = rng.gen_range(0..=5u8);
        let (got, _) = g.path(seed, dst, md, &em).unwrap();
        assert_eq!(
            got,
            m.path(seed, dst, md, &et),
            "{ctx}: path {seed}->{dst} max {md} et {et:?}"
        );

        let (got, _) = g.topdegree(seed, depth, n, &em, &nm).unwrap();
        assert_eq!(
            got,
            m.topdegree(seed, depth, n, &et, &nt),
            "{ctx}: topdegree seed {seed}"
        );
    }
    // an id that is not a node
    let missing = (-10_000..).find(|x| !m.nodes.contains_key(x)).unwrap();
    let all = EdgeTypeMask::all();
    assert_eq!(
        g.topn(missing, 2, 10, &all, &all).unwrap_err(),
        Error::UnknownNode(missing)
    );
    assert!(!g.has_node(missing));
}

/// One random write applied to both the graph and the model.
fn random_write(g: &mut TenantGraph, m: &mut Model, rng: &mut StdRng, space: i64) {
    let k = rng.gen_range(1..=4);
    match rng.gen_range(0..10) {
        0 | 1 => {
            let ids: Vec<i64> = (0..k).map(|_| rand_id(rng, space)).collect();
            let ts: Vec<u8> = (0..k).map(|_| rng.gen_range(0..4)).collect();
            g.upsert_nodes(&ids, &ts).unwrap();
            m.upsert_nodes(&ids, &ts);
        }
        2..=5 => {
            let s: Vec<i64> = (0..k).map(|_| rand_id(rng, space)).collect();
            let d: Vec<i64> = (0..k).map(|_| rand_id(rng, space)).collect();
            let w: Vec<f32> = (0..k).map(|_| rand_weight(rng)).collect();
            let t: Vec<u8> = (0..k).map(|_| rng.gen_range(0..4)).collect();
            g.upsert_edges(&s, &d, &w, &t).unwrap();
            m.upsert_edges(&s, &d, &w, &t);
        }
        6 | 7 => {
            // mostly existing edges
            let ex: Vec<(i64, i64)> = m.edges.keys().copied().collect();
            let (mut s, mut d) = (vec![], vec![]);
            for _ in 0..k {
                if !ex.is_empty() && rng.gen_bool(0.8) {
                    let e = ex[rng.gen_range(0..ex.len())];
                    s.push(e.0);
                    d.push(e.1);
                } else {
                    s.push(rand_id(rng, space));
                    d.push(rand_id(rng, space));
                }
            }
            let a = g.delete_edges(&s, &d).unwrap();
            assert_eq!(a, m.delete_edges(&s, &d));
        }
        _ => {
            let ids: Vec<i64> = (0..rng.gen_range(1..=2))
                .map(|_| rand_id(rng, space))
                .collect();
            let a = g.delete_nodes(&ids).unwrap();
            assert_eq!(a, m.delete_nodes(&ids));
        }
    }
}

#[test]
fn fresh_csr_matches_reference() {
    let mut rng = StdRng::seed_from_u64(1);
    for case in 0..300 {
        let m = random_model(&mut rng);
        let g = TenantGraph::new(m.to_csr());
        check_all(&g, &m, &mut rng, &format!("fresh case {case}"));
    }
}

#[test]
fn writes_are_visible_immediately() {
    let mut rng = StdRng::seed_from_u64(2);
    for case in 0..150 {
        let mut m = if rng.gen_bool(0.2) {
            Model::default()
        } else {
            random_model(&mut rng)
        };
        let mut g = TenantGraph::new(m.to_csr());
        let space = rng.gen_range(4..80);
        for step in 0..30 {
            random_write(&mut g, &mut m, &mut rng, space);
            if step % 3 == 0 {
                check_all(
                    &g,
                    &m,
                    &mut rng,
                    &format!("overlay case {case} step {step}"),
                );
            }
        }
        check_all(&g, &m, &mut rng, &format!("overlay case {case} end"));
    }
}

#[test]
fn rebuild_with_concurrent_writes() {
    let mut rng = StdRng::seed_from_u64(3);
    for case in 0..150 {
        let mut m = random_model(&mut rng);
        let mut g = TenantGraph::new(m.to_csr());
        let space = rng.gen_range(4..80);
        for round in 0..3 {
            for _ in 0..rng.gen_range(0..15) {
                random_write(&mut g, &mut m, &mut rng, space);
            }
            let v = g.snapshot_version();
            let job = g.begin_rebuild().unwrap();
            assert!(matches!(g.begin_rebuild(), Err(Error::InvalidArgument(_))));
            for _ in 0..rng.gen_range(0..10) {
                random_write(&mut g, &mut m, &mut rng, space);
            }
            check_all(
                &g,
                &m,
                &mut rng,
                &format!("rebuild case {case} round {round} during"),
            );
            let built = job.build().unwrap();
            for _ in 0..rng.gen_range(0..5) {
                random_write(&mut g, &mut m, &mut rng, space);
            }
            g.finish_rebuild(built).unwrap();
            assert_eq!(g.snapshot_version(), v + 1);
            check_all(
                &g,
                &m,
                &mut rng,
                &format!("rebuild case {case} round {round} after"),
            );
        }
        // a fully clean rebuild leaves no overlay
        let job = g.begin_rebuild().unwrap();
        g.finish_rebuild(job.build().unwrap()).unwrap();
        assert_eq!(g.delta_rows(), 0);
        check_all(&g, &m, &mut rng, &format!("rebuild case {case} clean"));
    }
}

#[test]
fn abort_rebuild_keeps_state() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut m = random_model(&mut rng);
    let mut g = TenantGraph::new(m.to_csr());
    let _job = g.begin_rebuild().unwrap();
    random_write(&mut g, &mut m, &mut rng, 40);
    g.abort_rebuild();
    assert!(matches!(
        g.finish_rebuild(Csr::empty()),
        Err(Error::InvalidArgument(_))
    ));
    check_all(&g, &m, &mut rng, "after abort");
    assert!(g.begin_rebuild().is_ok());
}

#[test]
fn topn_ties_and_paths_through_seed() {
    // 1 -> 2 (1.0), 1 -> 3 (0.5), 2 -> 1 (1.0), 2 -> 4 (0.5), 3 -> 4 (1.0), 3 -> 5 (1.0)
    let m = {
        let mut m = Model::default();
        m.upsert_edges(
            &[1, 1, 2, 2, 3, 3],
            &[2, 3, 1, 4, 4, 5],
            &[1.0, 0.5, 1.0, 0.5, 1.0, 1.0],
            &[0; 6],
        );
        m
    };
    let g = TenantGraph::new(m.to_csr());
    let all = EdgeTypeMask::all();
    let (r, st) = g.topn(1, 2, 10, &all, &all).unwrap();
    assert_eq!(r, vec![(2, 1.0), (3, 0.5), (4, 0.5), (5, 0.5)]);
    assert!(st.rows_scanned >= 1);
    let (r, _) = g.topn(1, 2, 2, &all, &all).unwrap();
    assert_eq!(r, vec![(2, 1.0), (3, 0.5)]);
    let (r, _) = g.topn(1, 1, 10, &all, &all).unwrap();
    assert_eq!(r, vec![(2, 1.0), (3, 0.5)]);
    assert!(matches!(
        g.topn(1, 3, 10, &all, &all),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        g.topn(1, 0, 10, &all, &all),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(g.path(1, 5, 4, &all).unwrap().0, Some(vec![1, 3, 5]));
    assert_eq!(g.path(1, 1, 0, &all).unwrap().0, Some(vec![1]));
    assert_eq!(g.path(1, 5, 1, &all).unwrap().0, None);
    assert_eq!(g.path(1, 99, 4, &all).unwrap_err(), Error::UnknownNode(99));
}

#[test]
fn unknown_seed_errors() {
    let g = TenantGraph::empty();
    let all = EdgeTypeMask::all();
    assert_eq!(
        g.topn(7, 2, 10, &all, &all).unwrap_err(),
        Error::UnknownNode(7)
    );
    assert_eq!(
        g.neighborhood_size(7, 3, 10, &all, &all).unwrap_err(),
        Error::UnknownNode(7)
    );
    assert_eq!(g.path(7, 7, 3, &all).unwrap_err(), Error::UnknownNode(7));
    assert_eq!(
        g.topdegree(7, 2, 10, &all, &all).unwrap_err(),
        Error::UnknownNode(7)
    );
    assert_eq!(g.out_degree(7).unwrap_err(), Error::UnknownNode(7));
}

#[test]
fn bad_batches_change_nothing() {
    let mut g = TenantGraph::empty();
    g.upsert_edges(&[1], &[2], &[0.5], &[1]).unwrap();
    let before = g.export();
    for bad in [0.0f32, 1.5, f32::NAN, -1.0] {
        let e = g
            .upsert_edges(&[3, 1], &[4, 2], &[0.5, bad], &[0, 0])
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
    }
    assert!(g.upsert_edges(&[3], &[4, 5], &[0.5], &[0]).is_err());
    assert!(g.upsert_nodes(&[3, 4], &[0]).is_err());
    assert!(g.delete_edges(&[1], &[]).is_err());
    assert_eq!(g.export(), before);
    assert_eq!((g.node_count(), g.edge_count()), (2, 1));
}

#[test]
fn duplicate_edges_last_wins() {
    let mut g = TenantGraph::empty();
    g.upsert_edges(&[1, 1, 1], &[2, 2, 3], &[0.2, 0.9, 0.4], &[1, 2, 3])
        .unwrap();
    let (s, d, w, t, _, _) = g.export();
    let mut e: Vec<_> = (0..s.len()).map(|i| (s[i], d[i], w[i], t[i])).collect();
    e.sort_by_key(|x| (x.0, x.1));
    assert_eq!(e, vec![(1, 2, 0.9, 2), (1, 3, 0.4, 3)]);
    g.upsert_edges(&[1], &[2], &[0.1], &[5]).unwrap();
    assert_eq!(g.edge_count(), 2);
    let all = EdgeTypeMask::all();
    assert_eq!(
        g.topn(1, 1, 10, &all, &all).unwrap().0,
        vec![(3, 0.4f32 as f64), (2, 0.1f32 as f64)]
    );
}

#[test]
fn recreated_node_does_not_regain_in_edges() {
    let c = Csr::from_edges(
        &[1, 2, 3],
        &[3, 3, 1],
        &[1.0, 0.5, 0.5],
        &[0, 0, 0],
        &[],
        &[],
    )
    .unwrap();
    let mut g = TenantGraph::new(c);
    let all = EdgeTypeMask::all();
    assert_eq!(g.delete_nodes(&[3, 3, 42]).unwrap(), 1);
    assert_eq!((g.node_count(), g.edge_count()), (2, 0));
    assert_eq!(g.out_degree(1).unwrap(), 0);
    g.upsert_nodes(&[3], &[7]).unwrap();
    assert_eq!((g.node_count(), g.edge_count()), (3, 0));
    assert_eq!(g.topn(1, 2, 10, &all, &all).unwrap().0, vec![]);
    assert_eq!(g.out_degree(3).unwrap(), 0);
    assert_eq!(g.path(1, 3, 4, &all).unwrap().0, None);
    // a new edge into the re-created node works
    g.upsert_edges(&[2], &[3], &[0.25], &[0]).unwrap();
    assert_eq!(g.edge_count(), 1);
    assert_eq!(g.path(2, 3, 4, &all).unwrap().0, Some(vec![2, 3]));
    assert_eq!(g.neighborhood_size(1, 3, 100, &all, &all).unwrap().0, 0);
}

#[test]
fn tenant_graph_is_send_sync_and_job_is_send() {
    fn ss<T: Send + Sync>() {}
    fn s<T: Send>() {}
    ss::<TenantGraph>();
    s::<provgraph_core::graph::RebuildJob>();
}

#[test]
fn concurrent_queries_from_threads() {
    let mut rng = StdRng::seed_from_u64(5);
    let m = random_model(&mut rng);
    let mut g = TenantGraph::new(m.to_csr());
    let mut m2 = m.clone();
    random_write(&mut g, &mut m2, &mut rng, 60);
    let ids: Vec<i64> = m2.nodes.keys().copied().collect();
    let all = EdgeTypeMask::all();
    let g = &g;
    let m2 = &m2;
    std::thread::scope(|sc| {
        for t in 0..4 {
            let ids = ids.clone();
            sc.spawn(move || {
                for (i, &seed) in ids.iter().enumerate().skip(t) {
                    if i % 2 == 0 {
                        assert_eq!(
                            g.topn(seed, 2, 5, &all, &all).unwrap().0,
                            m2.topn(seed, 2, 5, &None, &None)
                        );
                    } else {
                        assert_eq!(
                            g.topdegree(seed, 2, 5, &all, &all).unwrap().0,
                            m2.topdegree(seed, 2, 5, &None, &None)
                        );
                    }
                }
            });
        }
    });
}

/// A model with a few thousand nodes and hub-skewed out-degrees, so BFS levels are large
/// (level sorting, batched row touches, multi-word bitsets, both Q4 selection paths).
fn large_model(rng: &mut StdRng) -> Model {
    let nn = rng.gen_range(300..3000usize);
    let mut m = Model::default();
    while m.nodes.len() < nn {
        m.nodes.insert(rand_id(rng, 4000), rng.gen_range(0..4));
    }
    let ids: Vec<i64> = m.nodes.keys().copied().collect();
    let avg = rng.gen_range(1..8usize);
    for _ in 0..ids.len() * avg {
        // squaring skews sources (and some destinations) towards a few hubs
        let x: f64 = rng.gen();
        let s = ids[((x * x) * ids.len() as f64) as usize];
        let d = if rng.gen_bool(0.3) {
            let y: f64 = rng.gen();
            ids[((y * y) * ids.len() as f64) as usize]
        } else {
            ids[rng.gen_range(0..ids.len())]
        };
        m.edges
            .insert((s, d), (rand_weight(rng), rng.gen_range(0..4)));
    }
    m
}

#[test]
fn large_graphs_match_reference() {
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..12 {
        let mut m = large_model(&mut rng);
        let mut g = TenantGraph::new(m.to_csr());
        check_all(&g, &m, &mut rng, &format!("large case {case} fresh"));
        // deeper BFS and limits that stop mid-level, with and without filters
        let ids: Vec<i64> = m.nodes.keys().copied().collect();
        for _ in 0..20 {
            let seed = ids[rng.gen_range(0..ids.len())];
            let (et, nt) = (rand_types(&mut rng), rand_types(&mut rng));
            let (em, nm) = (mask(&et), mask(&nt));
            let depth = rng.gen_range(1..=6u8);
            let limit = [1u64, 50, 500, 50_000][rng.gen_range(0..4)];
            let (got, _) = g.neighborhood_size(seed, depth, limit, &em, &nm).unwrap();
            assert_eq!(
                got,
                m.neighborhood(seed, depth, limit, &et, &nt),
                "large {case}"
            );
            // Q1 on hub rows: the small-n scan and the large-n stamps of the top-n, pruning
            let hops = rng.gen_range(1..=2u8);
            let n = [1usize, 10, 32, 33, 2000][rng.gen_range(0..5)];
            let (got, _) = g.topn(seed, hops, n, &em, &nm).unwrap();
            assert_eq!(got, m.topn(seed, hops, n, &et, &nt), "large {case} topn n {n}");
            let n = [1usize, 10, 2000][rng.gen_range(0..3)];
            let (got, _) = g.topdegree(seed, depth, n, &em, &nm).unwrap();
            assert_eq!(got, m.topdegree(seed, depth, n, &et, &nt), "large {case}");
            let dst = ids[rng.gen_range(0..ids.len())];
            let md = rng.gen_range(1..=6u8);
            let (got, _) = g.path(seed, dst, md, &em).unwrap();
            assert_eq!(got, m.path(seed, dst, md, &et), "large {case} path");
        }
        // overlay: writes (incl. node deletes) on top of the snapshot
        for _ in 0..rng.gen_range(1..40) {
            random_write(&mut g, &mut m, &mut rng, 4000);
        }
        check_all(&g, &m, &mut rng, &format!("large case {case} overlay"));
    }
}

//! Query budgets (`graph::budget`): the work cap is deterministic and exact at its boundary, a
//! passed deadline stops a long traversal, a thread without a budget is never limited; and the
//! work estimate the service schedules by.

use std::time::Instant;

use provgraph_core::graph::budget::{set_budget, Budget};
use provgraph_core::graph::spec::{answer, Fast};
use provgraph_core::graph::{Csr, EdgeTypeMask, TenantGraph};
use provgraph_core::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` nodes 0..n, each with 8 out-edges to random nodes, plus 0 -> 1 so node 0 reaches far.
fn random_graph(n: i64, seed: u64) -> TenantGraph {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut s, mut d, mut w, mut t) = (vec![], vec![], vec![], vec![]);
    for u in 0..n {
        for _ in 0..8 {
            s.push(u);
            d.push(rng.gen_range(0..n));
            w.push(0.5f32);
            t.push(0u8);
        }
    }
    s.push(0);
    d.push(1);
    w.push(1.0);
    t.push(1);
    let mut pairs: Vec<(i64, i64, f32, u8)> = (0..s.len()).map(|i| (s[i], d[i], w[i], t[i])).collect();
    pairs.sort_by_key(|p| (p.0, p.1));
    pairs.dedup_by_key(|p| (p.0, p.1));
    let s: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    let d: Vec<i64> = pairs.iter().map(|p| p.1).collect();
    let w: Vec<f32> = pairs.iter().map(|p| p.2).collect();
    let t: Vec<u8> = pairs.iter().map(|p| p.3).collect();
    TenantGraph::new(Csr::from_edges(&s, &d, &w, &t, &[], &[]).unwrap())
}

fn all() -> EdgeTypeMask {
    EdgeTypeMask::all()
}

fn cap(n: u64) -> Budget {
    Budget { max_reached: n, deadline: None }
}

#[test]
fn work_cap_is_exact_and_deterministic_on_both_read_paths() {
    let mut g = random_graph(3000, 7);
    for pristine in [true, false] {
        if !pristine {
            // an overlay row: the general (overlay-aware) traversal
            g.upsert_edges(&[5], &[6], &[0.25], &[2]).unwrap();
        }
        set_budget(Budget::NONE);
        let (count, _) = g.neighborhood_size(0, 4, u64::MAX, &all(), &all()).unwrap();
        assert!(count > 300, "a traversal long enough to cross several checks ({count})");
        let reached = count + 1; // the seed too
        set_budget(cap(reached));
        assert_eq!(g.neighborhood_size(0, 4, u64::MAX, &all(), &all()).unwrap().0, count);
        for _ in 0..8 {
            set_budget(cap(reached - 1));
            assert_eq!(g.neighborhood_size(0, 4, u64::MAX, &all(), &all()), Err(Error::WorkCap(reached - 1)));
        }
        // a limit that stops the traversal early keeps it under the cap
        set_budget(cap(60));
        assert_eq!(g.neighborhood_size(0, 4, 10, &all(), &all()).unwrap().0, 10);
        // Q4 and Q3 traverse under the same cap
        assert_eq!(g.topdegree(0, 4, 5, &all(), &all()).map(|_| ()), Err(Error::WorkCap(60)));
        set_budget(cap(20));
        let far = (0..3000).find(|&v| {
            set_budget(Budget::NONE);
            g.path(0, v, 8, &all()).unwrap().0.is_some_and(|p| p.len() > 4)
        });
        let far = far.expect("a node four hops away");
        set_budget(cap(20));
        assert_eq!(g.path(0, far, 8, &all()).map(|_| ()), Err(Error::WorkCap(20)));
        set_budget(Budget::NONE);
        assert!(g.path(0, far, 8, &all()).unwrap().0.is_some());
    }
}

#[test]
fn a_passed_deadline_stops_a_long_traversal_and_a_short_one_finishes() {
    let g = random_graph(5000, 11);
    set_budget(Budget { max_reached: u64::MAX, deadline: Some(Instant::now()) });
    assert_eq!(g.neighborhood_size(0, 8, u64::MAX, &all(), &all()), Err(Error::Deadline));
    assert_eq!(g.topdegree(0, 4, 3, &all(), &all()).map(|_| ()), Err(Error::Deadline));
    // fewer rows than one check interval: answered
    assert!(g.neighborhood_size(0, 1, u64::MAX, &all(), &all()).is_ok());
    // the fast path passes the budget error on instead of declining
    let body = br#"{"query":"neighborhood","seed":0,"depth":8,"limit":10000000}"#;
    assert_eq!(answer(&g, body, u64::MAX), Err(Error::Deadline));
    set_budget(Budget::NONE);
    assert!(matches!(answer(&g, body, u64::MAX), Ok(Some(Fast::Answer("neighborhood", _)))));
}

#[test]
fn estimate_is_exact_for_two_hops_from_a_small_row_and_bounded_by_the_graph() {
    // 1 -> {2, 3}; 2 -> {4, 5, 6}; 3 -> {4}
    let g = TenantGraph::new(
        Csr::from_edges(&[1, 1, 2, 2, 2, 3], &[2, 3, 4, 5, 6, 4], &[0.5; 6], &[0; 6], &[], &[]).unwrap(),
    );
    assert_eq!(g.estimate_work(99, 2, u64::MAX, true), 0, "unknown seed");
    assert_eq!(g.estimate_work(1, 1, u64::MAX, true), 2);
    assert_eq!(g.estimate_work(1, 2, u64::MAX, true), 2 + 3 + 1);
    assert_eq!(g.estimate_work(1, 8, u64::MAX, false), 6, "capped at the edge count");
    assert_eq!(g.estimate_work(4, 3, u64::MAX, false), 0, "no out-edges");

    let big = random_graph(20_000, 3);
    let shallow = big.estimate_work(0, 2, u64::MAX, false);
    let deep = big.estimate_work(0, 6, u64::MAX, false);
    assert!(shallow < deep, "{shallow} < {deep}");
    assert!(deep <= big.edge_count() as u64);
    assert!(big.estimate_work(0, 6, 50, false) < deep, "a small limit stops the estimate early");
    // the fast path leaves a query over max_work unrun, with its estimate
    let body = br#"{"query":"neighborhood","seed":0,"depth":6}"#;
    let fast = answer(&big, body, 1000).unwrap();
    let want = big.estimate_work(0, 6, 50_000, false);
    assert_eq!(fast, Some(Fast::Heavy("neighborhood", want)));
    assert!(matches!(answer(&big, body, want).unwrap(), Some(Fast::Answer(..))));
}

//! RFC 8785 canonicalization and hashing throughput (timings, so not a test):
//! `cargo run --release -p provgraph-core --example canonical_bench`.
use provgraph_core::canonical::{canonical_hash, canonicalize, canonicalize_into, canonicalize_json, parse_strict};
use serde_json::{json, Value};

/// Throughput on a policy-input-sized object.
fn bench_policy_input() {
    let text = br#"{"subject":{"id":"user:alice","roles":["analyst","approver"],"tenant":"acme","clearance":3},
        "action":"read","resource":{"type":"node","id":4815162342,"labels":["pii","finance"],"owner":"team:risk"},
        "context":{"ip":"10.1.2.3","time":"2026-11-26T06:25:15Z","mfa":true,"score":0.87},
        "hops":2,"limit":50,"explain":false,"request_id":"req-0f3a9c","purpose":"fraud-review"}"#;
    let value = parse_strict(text).unwrap();
    let len = canonicalize(&value).len();
    let time = |name: &str, f: &mut dyn FnMut() -> usize| {
        let n = 300_000;
        let mut best = f64::MAX;
        let mut sink = 0usize;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                sink = sink.wrapping_add(f());
            }
            best = best.min(t.elapsed().as_secs_f64() / n as f64);
        }
        println!(
            "{name:40} {:7.3} us/op {:10.0} /s  ({sink})",
            best * 1e6,
            1.0 / best
        );
    };
    println!("canonical bytes: {len}");
    let mut buf = Vec::with_capacity(512);
    time("canonicalize_into (reused buffer)", &mut || {
        buf.clear();
        canonicalize_into(std::hint::black_box(&value), &mut buf);
        buf.len()
    });
    time("canonical_hash(&Value)", &mut || {
        canonical_hash(std::hint::black_box(&value))[0] as usize
    });
    time("canonicalize_json(text)", &mut || {
        canonicalize_json(std::hint::black_box(text)).unwrap().len()
    });
}

/// The decision-cache key shape (~200 canonical bytes).
fn bench_decision_key() {
    let keys: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"actor": {"id": format!("user:{}", i * 7919 % 1_000_003), "roles": ["analyst", "cleared"]},
                   "resource": {"id": format!("r{i}"), "attributes": {"classification": "internal",
                                "owner": format!("team-{}", i % 50), "score": i as f64 / 7.0}},
                   "context": {"purpose": "analysis", "ts": 1_700_000_000 + i}})
        })
        .collect();
    let len: usize = keys.iter().map(|k| canonicalize(k).len()).sum::<usize>() / keys.len();
    println!("mean canonical bytes: {len}");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut sink = 0u8;
        for _ in 0..300 {
            for k in &keys {
                sink ^= canonical_hash(std::hint::black_box(k))[0];
            }
        }
        let per = t.elapsed().as_secs_f64() / (300.0 * keys.len() as f64);
        println!(
            "canonical_hash(&Value) {:7.3} us/key {:10.0} keys/s ({sink})",
            per * 1e6,
            1.0 / per
        );
    }
}

fn main() {
    bench_policy_input();
    bench_decision_key();
}

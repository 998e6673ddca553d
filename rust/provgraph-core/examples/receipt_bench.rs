//! Receipt signing throughput on one thread: `cargo run -p provgraph-core --release --example receipt_bench [N]`.
//!
//! Signs N (default 10,000) realistic receipts (~1.1 KB canonical, the fields of API.md) with
//! `sign_batch` one by one (batch size 1) and in batches of 256, then verifies the chain.
//! Reported: receipts/s and µs per receipt, best of 3 runs, by on-CPU time of the thread
//! (`/proc/thread-self/schedstat`, so other processes on a shared machine do not count) and
//! by wall-clock time.
use std::collections::HashMap;
use std::time::Instant;

use provgraph_core::canonical::parse_strict;
use provgraph_core::receipt::{hex32, sign_batch, sign_iter, uuid7, verify_chain, SigningKey, GENESIS};
use serde_json::{json, Map, Value};

fn receipt(i: u64) -> Map<String, Value> {
    let h = |x: u64| hex32(blake3::hash(&x.to_le_bytes()).as_bytes());
    let v = json!({
        "receipt_id": uuid7(),
        "tenant_id": "tenant-0042",
        "executed_at": "2025-06-01T12:34:56.123456Z",
        "issued_at": "2025-06-01T12:34:56.130001Z",
        "actor": {"id": format!("svc-ingest-{}", i % 17), "roles": ["writer", "analyst"]},
        "action": "graph.write",
        "resource": {"type": "node", "id": format!("customer/{i:08}")},
        "policy": {"bundle": "prod-default", "revision": "2025-05-30T08:00:00Z#41", "decision_id": uuid7(), "decision": "allow"},
        "preflight_id": uuid7(),
        "request_hash": h(i),
        "result_hash": h(i + 1_000_000),
        "approvals": [
            {"actor": "alice@example.com", "at": "2025-06-01T12:30:00.000001Z", "receipt_id": uuid7()},
            {"actor": "bob@example.com", "at": "2025-06-01T12:31:10.500000Z", "receipt_id": uuid7()},
        ],
        "evidence": [
            {"hash": h(i + 2_000_000), "size": 18_234 + i},
            {"hash": h(i + 3_000_000), "size": 912},
        ],
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// On-CPU nanoseconds of this thread (Linux), or None elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// (wall seconds, CPU seconds) of `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t, c) = (Instant::now(), cpu_ns());
    f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = match (c, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => wall,
    };
    (wall, cpu)
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(10_000, |s| s.parse().unwrap());
    let key = SigningKey::generate();
    let inputs: Vec<Map<String, Value>> = (0..n as u64).map(receipt).collect();
    let inputs_bytes: Vec<Vec<u8>> = inputs.iter().map(|m| serde_json::to_vec(m).unwrap()).collect();

    let run = |batch: usize, from_bytes: bool| -> ((f64, f64), Vec<Vec<u8>>) {
        let mut best = (f64::INFINITY, f64::INFINITY);
        let mut out = Vec::new();
        for _ in 0..3 {
            let maps = if from_bytes { Vec::new() } else { inputs.clone() };
            let mut maps = maps.into_iter();
            let mut jsons = Vec::with_capacity(n);
            let (wall, cpu) = timed(|| {
                let (mut head, mut next) = (GENESIS, 1u64);
                for start in (0..n).step_by(batch) {
                    let end = (start + batch).min(n);
                    let (signed, h) = if from_bytes {
                        // What the Python binding does: parse each receipt and sign it right away.
                        let maps = inputs_bytes[start..end].iter().map(|b| match parse_strict(b) {
                            Ok(Value::Object(m)) => Ok(m),
                            _ => unreachable!(),
                        });
                        sign_iter(&key, head, next, end - start, maps).unwrap()
                    } else {
                        sign_batch(&key, head, next, maps.by_ref().take(end - start).collect()).unwrap()
                    };
                    head = h;
                    next += signed.len() as u64;
                    jsons.extend(signed.into_iter().map(|s| s.json));
                }
            });
            best = (best.0.min(wall), best.1.min(cpu));
            out = jsons;
        }
        (best, out)
    };

    let (_, sample) = run(256, false);
    let avg = sample.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    println!("{n} receipts, average canonical size {avg:.0} bytes (signature included)");
    println!("{:<46} {:>22} {:>22}", "", "CPU time", "wall clock");
    let report = |label: &str, (wall, cpu): (f64, f64)| {
        let nf = n as f64;
        println!(
            "{label:<46} {:>7.0}/s {:>6.2} µs/r   {:>7.0}/s {:>6.2} µs/r",
            nf / cpu,
            cpu * 1e6 / nf,
            nf / wall,
            wall * 1e6 / nf
        );
    };
    for (batch, label) in [(1, "sign_batch, batch size 1 (one by one)"), (256, "sign_batch, batches of 256")] {
        report(label, run(batch, false).0);
    }
    report("parse JSON bytes + sign_batch, batches of 256", run(256, true).0);

    let keys: HashMap<String, [u8; 32]> = [(key.key_id(), key.public_key())].into();
    let refs: Vec<&[u8]> = sample.iter().map(Vec::as_slice).collect();
    let mut r = None;
    let times = timed(|| r = Some(verify_chain(&refs, &keys)));
    assert!(r.as_ref().unwrap().ok, "{r:?}");
    report("verify_chain", times);

    // Where the time goes, per receipt (CPU µs): Ed25519, BLAKE3 and canonicalization alone.
    let msg = &sample[0];
    let reps = 5_000;
    let per = |f: &dyn Fn()| timed(|| (0..reps).for_each(|_| f())).1 * 1e6 / reps as f64;
    let (b, e) = (msg.as_slice(), b"".as_slice());
    println!(
        "  Ed25519 sign of {} bytes: {:.2} µs",
        msg.len(),
        per(&|| {
            std::hint::black_box(key.sign(std::hint::black_box(b)));
        })
    );
    println!(
        "  Ed25519 sign of 0 bytes: {:.2} µs",
        per(&|| {
            std::hint::black_box(key.sign(std::hint::black_box(e)));
        })
    );
    println!(
        "  BLAKE3 of {} bytes: {:.2} µs",
        msg.len(),
        per(&|| {
            std::hint::black_box(blake3::hash(std::hint::black_box(b)));
        })
    );
    let v = Value::Object(inputs[0].clone());
    println!(
        "  canonicalize one receipt: {:.2} µs",
        per(&|| {
            std::hint::black_box(provgraph_core::canonical::canonicalize(std::hint::black_box(&v)));
        })
    );
}

//! Micro-benchmark of the policy core on the example bundle
//! (`python/provgraph/examples/bundles/authz`):
//! `cargo run --release -p provgraph-core --example policy_bench [policy.rego]`.
//!
//! Prints p50/p99 of a full cache-miss evaluation of `provgraph/authz/decision` over varied
//! inputs shaped like `/v1/tenants/{t}/decide`'s, a breakdown of where that time goes, and the
//! decision cache's hit path.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provgraph_core::policy::{CacheKey, CompiledBundle, DecisionCache};

fn pct(mut v: Vec<u64>, p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
}

/// Time `f(i)` for `n` rounds (after `n / 10` warm-up rounds); prints p50/p99 in µs.
fn time<F: FnMut(usize)>(name: &str, n: usize, mut f: F) {
    for i in 0..n / 10 {
        f(i);
    }
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        f(i);
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    println!(
        "{name:<34} p50 {:>8.2} us  p99 {:>8.2} us",
        pct(lat.clone(), 0.5),
        pct(lat, 0.99)
    );
}

/// Deterministic xorshift, so that runs compare on the same inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Inputs like `python -m provgraph.bench decide` builds (roles × actions × restricted/purpose).
fn inputs(n: usize) -> Vec<String> {
    const ROLES: &[&[&str]] = &[
        &["analyst"],
        &["viewer"],
        &["operator"],
        &["analyst", "cleared"],
        &["security"],
    ];
    const ACTIONS: &[(&str, &str)] = &[
        ("graph.read", "graph"),
        ("graph.query", "graph"),
        ("graph.write", "graph"),
        ("export.create", "export"),
        ("graph.delete", "graph"),
        ("key.rotate", "key"),
        ("deploy", "service"),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let (action, rtype) = ACTIONS[rng.next(ACTIONS.len())];
            let class = if rng.next(5) == 0 { "restricted" } else { "internal" };
            let purpose = if rng.next(10) == 0 { "legal-hold" } else { "analysis" };
            serde_json::json!({
                "tenant_id": "t1",
                "actor": {"id": format!("user:{}", i % 20), "roles": ROLES[i % ROLES.len()]},
                "action": action,
                "resource": {"type": rtype, "id": format!("r{}", rng.next(50)),
                             "attributes": {"classification": class, "owner": format!("team-{}", rng.next(5))}},
                "context": {"purpose": purpose},
            })
            .to_string()
        })
        .collect()
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../python/provgraph/examples/bundles/authz");
    let rego_path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("provgraph/authz/policy.rego"));
    let rego = std::fs::read_to_string(&rego_path).expect("policy.rego");
    let data = std::fs::read_to_string(dir.join("provgraph/authz/data.json")).expect("data.json");
    let data = format!(r#"{{"provgraph": {{"authz": {data}}}}}"#);
    let modules = [("provgraph/authz/policy.rego".to_string(), rego)];
    let b = CompiledBundle::compile(&modules, &data).unwrap();
    let xs = inputs(2000);
    let path = "provgraph/authz/decision";
    println!(
        "{}",
        b.eval_json(path, Some(&xs[0]), true).unwrap().unwrap()
    );
    let n = 20_000;

    time("miss: eval_json decision (bytecode VM)", n, |i| {
        b.eval_json(path, Some(&xs[i % xs.len()]), true).unwrap();
    });
    time("miss: eval_json decision (interpreter)", n, |i| {
        b.eval_json(path, Some(&xs[i % xs.len()]), false).unwrap();
    });
    time("  parse input (regorus)", n, |i| {
        std::hint::black_box(regorus::Value::from_json_str(&xs[i % xs.len()]).unwrap());
    });
    time("  eval_json trivial rule", n, |i| {
        b.eval_json("provgraph/authz/allow", Some(&xs[i % xs.len()]), false)
            .unwrap();
    });

    // The same through regorus directly: where the time goes.
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    engine.set_strict_builtin_errors(false);
    for (p, r) in &modules {
        engine.add_policy(p.clone(), r.clone()).unwrap();
    }
    engine
        .add_data(regorus::Value::from_json_str(&data).unwrap())
        .unwrap();
    engine.eval_query("true".into(), false).unwrap();
    let parsed: Vec<regorus::Value> = xs
        .iter()
        .map(|x| regorus::Value::from_json_str(x).unwrap())
        .collect();
    time("  regorus set_input+eval_rule", n, |i| {
        engine.set_input(parsed[i % parsed.len()].clone());
        std::hint::black_box(
            engine
                .eval_rule("data.provgraph.authz.decision".into())
                .unwrap(),
        );
    });
    let out = engine
        .eval_rule("data.provgraph.authz.decision".into())
        .unwrap();
    time("  serialize result", n, |_| {
        std::hint::black_box(serde_json::to_string(&out).unwrap());
    });
    time("  engine clone", n / 10, |_| {
        std::hint::black_box(engine.clone());
    });

    let c = DecisionCache::new(100_000);
    let keys: Vec<CacheKey> = (0..10_000u32)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_le_bytes());
            CacheKey {
                tenant: "acme".into(),
                action: "read".into(),
                resource_type: "doc".into(),
                digest: d,
            }
        })
        .collect();
    let v: Arc<[u8]> = Arc::from(&b"{\"allow\":true}"[..]);
    for k in &keys {
        c.insert(k.clone(), 7, v.clone(), Duration::from_secs(60));
    }
    time("cache get (hit)", 100_000, |i| {
        let k = &keys[i % keys.len()];
        std::hint::black_box(c.get_parts(&k.tenant, &k.action, &k.resource_type, &k.digest, 7));
    });
}

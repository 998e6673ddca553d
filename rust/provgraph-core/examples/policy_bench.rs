//! Micro-benchmark of the policy core: `cargo run --release -p provgraph-core --example policy_bench`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use provgraph_core::policy::{CacheKey, CompiledBundle, DecisionCache};

fn pct(mut v: Vec<u64>, p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
}

fn time<F: FnMut()>(name: &str, n: usize, mut f: F) {
    for _ in 0..n / 10 {
        f();
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    println!(
        "{name:<28} p50 {:>8.2} us  p99 {:>8.2} us",
        pct(lat.clone(), 0.5),
        pct(lat, 0.99)
    );
}

const AUTHZ: &str = r#"package provgraph.authz

default allow := false

allow if {
    some role in input.actor.roles
    input.action in data.roles[role]
}

allow if {
    input.resource.attributes.owner == input.actor.id
    input.action in {"read", "update"}
}

reasons contains sprintf("role %s grants %s", [role, input.action]) if {
    some role in input.actor.roles
    input.action in data.roles[role]
}

reasons contains "owner" if input.resource.attributes.owner == input.actor.id

obligations contains {"type": "dual_control", "approvers": 2} if input.action in data.hazardous

decision := {"allow": allow, "reasons": reasons, "obligations": obligations}

trivial := 1
"#;

fn main() {
    let mut roles = serde_json::Map::new();
    for i in 0..20 {
        let acts: Vec<String> = (0..=(i % 5)).map(|j| format!("act{j}")).collect();
        roles.insert(format!("role{i}"), serde_json::json!(acts));
    }
    let data = serde_json::json!({"roles": roles, "hazardous": ["act3", "act4"]}).to_string();
    let b = CompiledBundle::compile(&[("authz/policy.rego".into(), AUTHZ.into())], &data).unwrap();
    let input = serde_json::json!({"tenant_id": "acme", "actor": {"id": "user:al", "roles": ["role3", "role7"]},
        "action": "act2", "resource": {"type": "doc", "id": "d1", "attributes": {"owner": "user:zed"}},
        "context": {}})
    .to_string();
    println!(
        "{:?}",
        b.eval_json("provgraph/authz/decision", Some(&input))
            .unwrap()
    );
    time("parse input", 20000, || {
        std::hint::black_box(regorus::Value::from_json_str(&input).unwrap());
    });
    time("eval trivial", 20000, || {
        b.eval_json("provgraph/authz/trivial", Some(&input))
            .unwrap();
    });
    time("eval allow", 20000, || {
        b.eval_json("provgraph/authz/allow", Some(&input)).unwrap();
    });
    time("eval reasons", 20000, || {
        b.eval_json("provgraph/authz/reasons", Some(&input))
            .unwrap();
    });
    time("eval obligations", 20000, || {
        b.eval_json("provgraph/authz/obligations", Some(&input))
            .unwrap();
    });
    time("eval decision", 20000, || {
        b.eval_json("provgraph/authz/decision", Some(&input))
            .unwrap();
    });
    time("eval decision/allow (query)", 20000, || {
        b.eval_json("provgraph/authz/decision/allow", Some(&input))
            .unwrap();
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
    let mut i = 0;
    time("cache get (hit)", 100_000, || {
        let k = &keys[i % keys.len()];
        i += 1;
        std::hint::black_box(c.get_parts(&k.tenant, &k.action, &k.resource_type, &k.digest, 7));
    });
}

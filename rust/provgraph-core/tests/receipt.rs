//! Signed receipts: signing, the chain, and every way verification must fail.
use std::collections::HashMap;

use provgraph_core::canonical::{canonicalize, canonicalize_json, parse_strict};
use provgraph_core::receipt::{
    hex32, key_id_of, sign_batch, uuid7, verify_chain, verify_chain_from, verify_receipt, ChainReport, Signed,
    SigningKey, GENESIS,
};
use provgraph_core::Error;
use serde_json::{json, Map, Value};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A receipt with the fields of API.md, minus the issuer's (seq, prev_hash, signer, signature).
fn receipt(tenant: &str, i: u64) -> Map<String, Value> {
    let v = json!({
        "receipt_id": uuid7(),
        "tenant_id": tenant,
        "executed_at": "2025-01-02T03:04:05.123456Z",
        "issued_at": "2025-01-02T03:04:05.234567Z",
        "actor": {"id": format!("user-{i}"), "roles": ["analyst", "writer"]},
        "action": "graph.write",
        "resource": {"type": "node", "id": format!("n{i}")},
        "policy": {"bundle": "default", "revision": "r42", "decision_id": uuid7(), "decision": "allow"},
        "preflight_id": uuid7(),
        "request_hash": hex32(blake3::hash(&i.to_le_bytes()).as_bytes()),
        "result_hash": hex32(blake3::hash(&(i + 1).to_le_bytes()).as_bytes()),
        "approvals": [{"actor": "approver-1", "at": "2025-01-02T03:04:00.000001Z", "receipt_id": uuid7()}],
        "evidence": [{"hash": hex32(blake3::hash(b"e").as_bytes()), "size": 1234 + i}],
        "note": "Grüße ✓ \u{1F600}",
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn chain(key: &SigningKey, tenant: &str, n: u64) -> (Vec<Signed>, [u8; 32]) {
    sign_batch(key, GENESIS, 1, (1..=n).map(|i| receipt(tenant, i)).collect()).unwrap()
}

fn refs(signed: &[Vec<u8>]) -> Vec<&[u8]> {
    signed.iter().map(Vec::as_slice).collect()
}

fn jsons(signed: &[Signed]) -> Vec<Vec<u8>> {
    signed.iter().map(|s| s.json.clone()).collect()
}

fn keys_of(ks: &[&SigningKey]) -> HashMap<String, [u8; 32]> {
    ks.iter().map(|k| (k.key_id(), k.public_key())).collect()
}

fn fails_at(report: &ChainReport, seq: u64, reason_prefix: &str) {
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_seq, Some(seq), "{report:?}");
    assert_eq!(report.checked, seq - 1, "{report:?}");
    let reason = report.reason.as_deref().unwrap();
    assert!(reason.starts_with(reason_prefix), "expected {reason_prefix:?}, got {reason:?}");
}

fn edit(json: &[u8], f: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let Value::Object(mut m) = parse_strict(json).unwrap() else { panic!() };
    f(&mut m);
    canonicalize(&Value::Object(m))
}

#[test]
fn rfc8032_test_vector_1() {
    let seed: [u8; 32] = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").try_into().unwrap();
    let key = SigningKey::from_seed(&seed);
    assert_eq!(key.seed(), seed);
    assert_eq!(key.public_key().to_vec(), unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
    let sig = key.sign(b"");
    assert_eq!(
        sig.to_vec(),
        unhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
    );
}

#[test]
fn key_id_is_blake3_prefix_and_keys_are_fresh() {
    let key = SigningKey::generate();
    let expect = hex32(blake3::hash(&key.public_key()).as_bytes())[..16].to_string();
    assert_eq!(key.key_id(), expect);
    assert_eq!(key_id_of(&key.public_key()), expect);
    assert_eq!(SigningKey::from_seed(&key.seed()).public_key(), key.public_key());
    assert_ne!(SigningKey::generate().public_key(), key.public_key());
    assert!(!format!("{key:?}").contains(&hex32(&key.seed())));
}

#[test]
fn round_trip() {
    let key = SigningKey::generate();
    let input = receipt("t1", 1);
    let rid = input["receipt_id"].as_str().unwrap().to_string();
    let (signed, head) = sign_batch(&key, GENESIS, 1, vec![input.clone()]).unwrap();
    assert_eq!(signed.len(), 1);
    let s = &signed[0];
    assert_eq!((s.seq, s.receipt_id.as_str(), head), (1, rid.as_str(), s.signed_hash));
    // The stored form is canonical and holds exactly the input plus the issuer's fields.
    assert_eq!(canonicalize_json(&s.json).unwrap(), s.json);
    let Value::Object(full) = parse_strict(&s.json).unwrap() else { panic!() };
    assert_eq!(full["seq"], json!(1));
    assert_eq!(full["prev_hash"], json!("0".repeat(64)));
    assert_eq!(full["signer"], json!({"key_id": key.key_id(), "alg": "Ed25519"}));
    for (k, v) in &input {
        assert_eq!(&full[k], v);
    }
    assert_eq!(full.len(), input.len() + 4);
    // The recipe by hand: drop signature, canonicalize, BLAKE3 and Ed25519.
    let mut rest = full.clone();
    rest.remove("signature");
    let signed_bytes = canonicalize(&Value::Object(rest));
    assert_eq!(*blake3::hash(&signed_bytes).as_bytes(), s.signed_hash);
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD.decode(full["signature"].as_str().unwrap()).unwrap();
    assert_eq!(sig, key.sign(&signed_bytes).to_vec());
    assert_eq!(verify_receipt(&s.json, &key.public_key()).unwrap(), s.signed_hash);
    // Any serialization of the same object verifies (a third party may re-serialize).
    let pretty = serde_json::to_vec_pretty(&Value::Object(full)).unwrap();
    assert_eq!(verify_receipt(&pretty, &key.public_key()).unwrap(), s.signed_hash);
}

#[test]
fn chain_of_1000_in_uneven_batches() {
    let key = SigningKey::generate();
    let (mut all, mut head, mut next) = (Vec::new(), GENESIS, 1u64);
    for size in [1usize, 7, 256, 3, 500, 233] {
        let (signed, h) =
            sign_batch(&key, head, next, (0..size).map(|i| receipt("t1", next + i as u64)).collect()).unwrap();
        for (j, s) in signed.iter().enumerate() {
            assert_eq!(s.seq, next + j as u64);
        }
        next += size as u64;
        head = h;
        all.extend(signed);
    }
    assert_eq!(all.len(), 1000);
    let report = verify_chain(&refs(&jsons(&all)), &keys_of(&[&key]));
    assert_eq!(report, ChainReport { ok: true, checked: 1000, first_bad_seq: None, reason: None, head });
    // Empty batch: nothing signed, head unchanged.
    assert_eq!(sign_batch(&key, head, next, vec![]).unwrap(), (vec![], head));
    // A page in the middle verifies from the previous page's head.
    let js = jsons(&all);
    let seg = verify_chain_from(&refs(&js[500..600]), &keys_of(&[&key]), 501, all[499].signed_hash);
    assert!(seg.ok && seg.checked == 100 && seg.head == all[599].signed_hash, "{seg:?}");
}

#[test]
fn tampering_any_field_fails_at_its_seq() {
    let key = SigningKey::generate();
    let keys = keys_of(&[&key]);
    let (signed, _) = chain(&key, "t1", 12);
    let base = jsons(&signed);
    let Value::Object(fields) = parse_strict(&base[6]).unwrap() else { panic!() };
    for name in fields.keys() {
        let mut js = base.clone();
        js[6] = edit(&base[6], |m| {
            let v = m.get_mut(name).unwrap();
            match v {
                Value::String(s) if name == "signature" => {
                    // Still valid base64 of 64 bytes, different signature.
                    let c = if s.starts_with('A') { "B" } else { "A" };
                    s.replace_range(0..1, c);
                }
                Value::String(s) => s.push('x'),
                Value::Number(n) => *v = json!(n.as_u64().unwrap() + 1),
                Value::Array(a) => a.push(json!(null)),
                Value::Object(o) if name == "signer" => {
                    o.insert("key_id".into(), json!("0000000000000000"));
                }
                Value::Object(o) => {
                    o.insert("extra".into(), json!(1));
                }
                _ => unreachable!(),
            }
        });
        let expect = match name.as_str() {
            "signer" => "unknown key_id",
            _ => "signature mismatch",
        };
        fails_at(&verify_chain(&refs(&js), &keys), 7, expect);
        if name != "signer" {
            let err = verify_receipt(&js[6], &key.public_key()).unwrap_err();
            assert_eq!(err, Error::InvalidReceipt("signature mismatch".into()), "{name}");
        }
    }
    // A nested value, an added top-level field, a removed field.
    for tampered in [
        edit(&base[6], |m| m["actor"]["roles"][0] = json!("admin")),
        edit(&base[6], |m| {
            m.insert("zzz".into(), json!(true));
        }),
        edit(&base[6], |m| {
            m.remove("approvals");
        }),
    ] {
        let mut js = base.clone();
        js[6] = tampered;
        fails_at(&verify_chain(&refs(&js), &keys), 7, "signature mismatch");
    }
    // signer.alg
    let mut js = base.clone();
    js[6] = edit(&base[6], |m| m["signer"]["alg"] = json!("Ed448"));
    fails_at(&verify_chain(&refs(&js), &keys), 7, "unsupported signer.alg");
    // A byte flip in the raw text that breaks the JSON.
    let mut js = base.clone();
    js[6].pop();
    fails_at(&verify_chain(&refs(&js), &keys), 7, "bad JSON");
    // Untouched chain still fine.
    assert!(verify_chain(&refs(&base), &keys).ok);
}

#[test]
fn verify_receipt_errors_name_the_failure() {
    let key = SigningKey::generate();
    let pk = key.public_key();
    let (signed, _) = chain(&key, "t1", 1);
    let j = &signed[0].json;
    let msg = |r: provgraph_core::Result<[u8; 32]>| match r.unwrap_err() {
        Error::InvalidReceipt(m) => m,
        e => panic!("{e:?}"),
    };
    assert!(msg(verify_receipt(b"{not json", &pk)).starts_with("bad JSON"));
    assert!(msg(verify_receipt(b"[1]", &pk)).starts_with("bad JSON"));
    assert_eq!(
        msg(verify_receipt(
            &edit(j, |m| {
                m.remove("signature");
            }),
            &pk
        )),
        "missing signature"
    );
    assert!(msg(verify_receipt(&edit(j, |m| m["signature"] = json!("!!!")), &pk)).starts_with("bad signature: base64"));
    assert!(
        msg(verify_receipt(&edit(j, |m| m["signature"] = json!("AAAA")), &pk)).starts_with("bad signature: 3 bytes")
    );
    // Unpadded base64 is rejected (the contract is standard base64 with padding).
    let unpadded = edit(j, |m| {
        let s = m["signature"].as_str().unwrap().trim_end_matches('=').to_string();
        m["signature"] = json!(s);
    });
    assert!(msg(verify_receipt(&unpadded, &pk)).starts_with("bad signature: base64"));
    let other = SigningKey::generate();
    assert_eq!(msg(verify_receipt(j, &other.public_key())), "signature mismatch");
}

#[test]
fn reordering_and_gap_report_the_missing_seq() {
    let key = SigningKey::generate();
    let keys = keys_of(&[&key]);
    let base = jsons(&chain(&key, "t1", 10).0);
    let mut swapped = base.clone();
    swapped.swap(4, 5);
    let r = verify_chain(&refs(&swapped), &keys);
    fails_at(&r, 5, "seq mismatch: expected 5, got 6");
    let mut gap = base.clone();
    gap.remove(4);
    fails_at(&verify_chain(&refs(&gap), &keys), 5, "seq mismatch: expected 5, got 6");
    // Missing first receipt.
    fails_at(&verify_chain(&refs(&base[1..]), &keys), 1, "seq mismatch: expected 1, got 2");
    // Duplicate.
    let mut dup = base.clone();
    dup.insert(3, base[3].clone());
    fails_at(&verify_chain(&refs(&dup), &keys), 5, "seq mismatch: expected 5, got 4");
}

#[test]
fn wrong_prev_hash_fails_even_when_validly_signed() {
    let key = SigningKey::generate();
    let keys = keys_of(&[&key]);
    let (signed, _) = chain(&key, "t1", 10);
    let mut js = jsons(&signed[..5]);
    // Continue seq 6 from a wrong head (e.g. a fork), signed with the right key.
    let wrong = *blake3::hash(b"fork").as_bytes();
    let (fork, _) = sign_batch(&key, wrong, 6, (6..=10).map(|i| receipt("t1", i)).collect()).unwrap();
    js.extend(jsons(&fork));
    let r = verify_chain(&refs(&js), &keys);
    fails_at(&r, 6, "prev_hash mismatch");
    assert_eq!(r.head, signed[4].signed_hash);
    // A first receipt whose prev_hash is not 64 zeros.
    let mut js = jsons(&signed);
    js[0] = edit(&js[0], |m| m["prev_hash"] = json!("1".repeat(64)));
    fails_at(&verify_chain(&refs(&js), &keys), 1, "signature mismatch");
}

#[test]
fn wrong_or_unknown_key() {
    let key = SigningKey::generate();
    let other = SigningKey::generate();
    let base = jsons(&chain(&key, "t1", 3).0);
    // The key id maps to someone else's public key.
    let mut wrong = HashMap::new();
    wrong.insert(key.key_id(), other.public_key());
    fails_at(&verify_chain(&refs(&base), &wrong), 1, "signature mismatch");
    fails_at(&verify_chain(&refs(&base), &keys_of(&[&other])), 1, "unknown key_id");
    fails_at(&verify_chain(&refs(&base), &HashMap::new()), 1, "unknown key_id");
    // A receipt signed by an unknown key in the middle.
    let (mid, _) = chain(&key, "t1", 2);
    let (_, h2) = (mid.clone(), mid[1].signed_hash);
    let (rogue, _) = sign_batch(&other, h2, 3, vec![receipt("t1", 3)]).unwrap();
    let mut js = jsons(&mid);
    js.extend(jsons(&rogue));
    fails_at(&verify_chain(&refs(&js), &keys_of(&[&key])), 3, "unknown key_id");
    assert!(verify_chain(&refs(&js), &keys_of(&[&key, &other])).ok);
}

#[test]
fn tenant_must_not_change() {
    let key = SigningKey::generate();
    let (a, head) = chain(&key, "t1", 3);
    let (b, _) = sign_batch(&key, head, 4, vec![receipt("t2", 4)]).unwrap();
    let mut js = jsons(&a);
    js.extend(jsons(&b));
    fails_at(&verify_chain(&refs(&js), &keys_of(&[&key])), 4, "tenant_id mismatch");
}

#[test]
fn key_rotation_continues_the_chain() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    assert_ne!(old.key_id(), new.key_id());
    let (first, head) = chain(&old, "t1", 5);
    let (second, head2) = sign_batch(&new, head, 6, (6..=10).map(|i| receipt("t1", i)).collect()).unwrap();
    let mut js = jsons(&first);
    js.extend(jsons(&second));
    let r = verify_chain(&refs(&js), &keys_of(&[&old, &new]));
    assert!(r.ok && r.checked == 10 && r.head == head2, "{r:?}");
    fails_at(&verify_chain(&refs(&js), &keys_of(&[&old])), 6, "unknown key_id");
    fails_at(&verify_chain(&refs(&js), &keys_of(&[&new])), 1, "unknown key_id");
    for (s, k) in first.iter().map(|s| (s, &old)).chain(second.iter().map(|s| (s, &new))) {
        assert_eq!(verify_receipt(&s.json, &k.public_key()).unwrap(), s.signed_hash);
    }
}

#[test]
fn sign_batch_rejects_bad_input() {
    let key = SigningKey::generate();
    let err = |prev: [u8; 32], next: u64, r: Vec<Map<String, Value>>| match sign_batch(&key, prev, next, r) {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("{other:?}"),
    };
    let mut no_id = receipt("t", 1);
    no_id.remove("receipt_id");
    assert!(err(GENESIS, 1, vec![receipt("t", 1), no_id]).contains("receipt 1: receipt lacks \"receipt_id\""));
    let mut no_tenant = receipt("t", 1);
    no_tenant.remove("tenant_id");
    assert!(err(GENESIS, 1, vec![no_tenant]).contains("tenant_id"));
    let mut num_id = receipt("t", 1);
    num_id.insert("receipt_id".into(), json!(5));
    assert!(err(GENESIS, 1, vec![num_id]).contains("non-empty string"));
    for f in ["seq", "prev_hash", "signer", "signature"] {
        let mut r = receipt("t", 1);
        r.insert(f.into(), json!(1));
        assert!(err(GENESIS, 1, vec![r]).contains("set by the issuer"), "{f}");
    }
    assert!(err(GENESIS, 0, vec![]).contains("next_seq"));
    assert!(err([1; 32], 1, vec![]).contains("zero bytes for seq 1"));
    assert!(err(GENESIS, 2, vec![]).contains("only valid for seq 1"));
    assert!(err([1; 32], 1 << 53, vec![receipt("t", 1), receipt("t", 2)]).contains("2^53"));
}

#[test]
fn uuid7_is_time_ordered_v7() {
    let ids: Vec<String> = (0..1000).map(|_| uuid7()).collect();
    for id in &ids {
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(id.to_lowercase(), *id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
}

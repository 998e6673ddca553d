//! The /decide fast path for a cached decision: the raw request body in, the response and the
//! decision-log entry out, as the JSON the Python path writes, in one call.
//!
//! Only a valid body whose decision is in the cache is answered. Anything else (a body the
//! strict parser or the request checks refuse, a miss, a stale entry) gives `None`, and the
//! caller runs its full path, which owns every error answer and every evaluation.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::cache::DecisionCache;
use crate::canonical::{canonical_hash, parse_strict};

/// Who asks, and under which activation epoch of the decision bundle.
pub struct Asker<'a> {
    pub tenant: &'a str,
    pub actor: &'a str,
    pub roles: &'a [String],
    pub epoch: u64,
}

/// What the answer names: the active revision, the rule's path, this decision's id and time.
pub struct Answer<'a> {
    pub bundle: &'a str,
    pub revision: &'a str,
    pub path: &'a str,
    pub decision_id: &'a str,
    pub timestamp: &'a str,
}

/// `{action, resource: {type, id?, attributes?}, context?}` checked as `parse_decision_request`
/// checks it: (action, type, the cache key's JSON). Takes the parts out of `body`, uncopied.
fn request(body: Value, actor: &str, roles: &[String]) -> Option<(String, String, Value)> {
    let Value::Object(mut body) = body else {
        return None;
    };
    let action = match body.remove("action") {
        Some(Value::String(a)) if !a.is_empty() => a,
        _ => return None,
    };
    let Some(Value::Object(mut resource)) = body.remove("resource") else {
        return None;
    };
    let rtype = match resource.remove("type") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => return None,
    };
    let id = match resource.remove("id") {
        None | Some(Value::Null) => Value::Null,
        Some(s @ Value::String(_)) => s,
        Some(_) => return None,
    };
    let object = |v: Option<Value>| match v {
        None => Some(Value::Object(Map::new())),
        Some(m @ Value::Object(_)) => Some(m),
        Some(_) => None,
    };
    let attributes = object(resource.remove("attributes"))?;
    let context = object(body.remove("context"))?;
    let key = json!({"actor": {"id": actor, "roles": roles},
                     "resource": {"id": id, "attributes": attributes}, "context": context});
    Some((action, rtype, key))
}

fn string(s: &str, out: &mut Vec<u8>) -> Option<()> {
    serde_json::to_writer(&mut *out, s).ok()
}

/// (response, log entry) for a cached decision of `body`, or `None` (see the module doc).
pub fn answer(
    cache: &DecisionCache,
    body: &[u8],
    who: &Asker<'_>,
    ans: &Answer<'_>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (action, rtype, key) = request(parse_strict(body).ok()?, who.actor, who.roles)?;
    let digest = canonical_hash(&key);
    let cached = cache.probe_parts(who.tenant, &action, &rtype, &digest, who.epoch)?;
    // The cached value is the Python path's `orjson.dumps({"allow", "reasons", "obligations"})`:
    // its parts are spliced as they are, the bytes that path would write again.
    let parts: BTreeMap<&str, &RawValue> = serde_json::from_slice(&cached).ok()?;
    let (allow, reasons, obligations) = (
        parts.get("allow")?,
        parts.get("reasons")?,
        parts.get("obligations")?,
    );
    let verdict: &[u8] = match allow.get() {
        "true" => b"allow",
        "false" => b"deny",
        _ => return None,
    };
    let mut response = Vec::with_capacity(160 + cached.len());
    response.extend_from_slice(b"{\"decision\":\"");
    response.extend_from_slice(verdict);
    response.extend_from_slice(b"\",\"reasons\":");
    response.extend_from_slice(reasons.get().as_bytes());
    response.extend_from_slice(b",\"obligations\":");
    response.extend_from_slice(obligations.get().as_bytes());
    response.extend_from_slice(b",\"bundle\":");
    string(ans.bundle, &mut response)?;
    response.extend_from_slice(b",\"revision\":");
    string(ans.revision, &mut response)?;
    response.extend_from_slice(b",\"decision_id\":");
    string(ans.decision_id, &mut response)?;
    response.extend_from_slice(b",\"cached\":true}");

    let mut entry = Vec::with_capacity(320 + cached.len());
    for (i, (name, value)) in [
        ("decision_id", ans.decision_id),
        ("path", ans.path),
        ("bundle", ans.bundle),
        ("revision", ans.revision),
    ]
    .into_iter()
    .enumerate()
    {
        entry.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
        entry.extend_from_slice(name.as_bytes());
        entry.extend_from_slice(b"\":");
        string(value, &mut entry)?;
    }
    entry.extend_from_slice(b",\"input_hash\":\"");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest {
        entry.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
    entry.push(b'"');
    for (name, value) in [
        ("tenant_id", who.tenant),
        ("actor", who.actor),
        ("action", &action),
        ("resource_type", &rtype),
    ] {
        entry.extend_from_slice(b",\"");
        entry.extend_from_slice(name.as_bytes());
        entry.extend_from_slice(b"\":");
        string(value, &mut entry)?;
    }
    entry.extend_from_slice(b",\"result\":");
    entry.extend_from_slice(&cached);
    entry.extend_from_slice(b",\"cached\":true,\"timestamp\":");
    string(ans.timestamp, &mut entry)?;
    entry.extend_from_slice(b",\"eval_ns\":0}");
    Some((response, entry))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::policy::CacheKey;

    const WHO: Asker<'static> = Asker {
        tenant: "t1",
        actor: "user:a",
        roles: &[],
        epoch: 3,
    };
    const ANS: Answer<'static> = Answer {
        bundle: "authz",
        revision: "r1",
        path: "p/q",
        decision_id: "id-1",
        timestamp: "2026-01-01T00:00:00.000000Z",
    };

    fn cache_with(body: &str, decision: &str) -> DecisionCache {
        let cache = DecisionCache::new(100);
        let (action, rtype, key) =
            request(serde_json::from_str(body).unwrap(), WHO.actor, WHO.roles).unwrap();
        let key = CacheKey {
            tenant: WHO.tenant.into(),
            action,
            resource_type: rtype,
            digest: canonical_hash(&key),
        };
        cache.insert(
            key,
            WHO.epoch,
            Arc::from(decision.as_bytes()),
            Duration::from_secs(60),
        );
        cache
    }

    #[test]
    fn a_hit_is_spliced_into_both_documents() {
        let body = r#"{"action":"read","resource":{"type":"doc","id":"d1","attributes":{"b":1,"a":[2.5]}},"context":{}}"#;
        let decision = r#"{"allow":true,"reasons":["ok"],"obligations":[{"z":1,"a":2}]}"#;
        let cache = cache_with(body, decision);
        // member order and spacing of the body do not matter: the key is canonical
        let reordered = r#"{ "context": {}, "resource": {"attributes": {"a": [2.5], "b": 1}, "id": "d1", "type": "doc"}, "action": "read" }"#;
        let (response, entry) = answer(&cache, reordered.as_bytes(), &WHO, &ANS).unwrap();
        assert_eq!(
            String::from_utf8(response).unwrap(),
            r#"{"decision":"allow","reasons":["ok"],"obligations":[{"z":1,"a":2}],"bundle":"authz","revision":"r1","decision_id":"id-1","cached":true}"#
        );
        let entry: Value = serde_json::from_slice(&entry).unwrap();
        assert_eq!(
            entry["result"],
            serde_json::from_str::<Value>(decision).unwrap()
        );
        assert_eq!(
            (entry["action"].as_str(), entry["resource_type"].as_str()),
            (Some("read"), Some("doc"))
        );
        assert_eq!(entry["input_hash"].as_str().unwrap().len(), 64);
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn misses_and_odd_bodies_are_left_to_the_caller_uncounted() {
        let body = r#"{"action":"read","resource":{"type":"doc"}}"#;
        let cache = cache_with(body, r#"{"allow":false,"reasons":[],"obligations":[]}"#);
        assert!(answer(&cache, body.as_bytes(), &WHO, &ANS).is_some());
        for odd in [
            r#"{"action":"write","resource":{"type":"doc"}}"#,
            r#"{"action":"","resource":{"type":"doc"}}"#,
            r#"{"action":"read","resource":{"type":"doc","id":7}}"#,
            r#"{"action":"read","resource":{"type":"doc","attributes":null}}"#,
            r#"{"action":"read","resource":{"type":"doc"},"context":[]}"#,
            r#"{"action":"read","action":"read","resource":{"type":"doc"}}"#,
            r#"{"action":"read","resource":{"type":"doc"}} x"#,
            "[]",
        ] {
            assert!(
                answer(&cache, odd.as_bytes(), &WHO, &ANS).is_none(),
                "{odd}"
            );
        }
        let stale = Asker { epoch: 4, ..WHO };
        assert!(answer(&cache, body.as_bytes(), &stale, &ANS).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.stale), (1, 0, 0));
    }
}

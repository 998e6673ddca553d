//! The query fast path: a well-formed Q1 (topn) or Q2 (neighborhood) spec, as the JSON body of
//! /graph/query, answered as the exact JSON bytes the Python path writes, in one call.
//!
//! Only the plain cases are taken: anything unusual (another query kind, `explain`, an unknown
//! key, a value of the wrong type or out of range, an unknown seed, malformed JSON) gives `None`,
//! and the caller runs its full path, which owns every error answer. So this code never has to
//! agree with the Python path on an error, only on an answer.

use std::io::Write;

use serde_json::{Map, Value};

use super::{EdgeTypeMask, TenantGraph};
use crate::error::{Error, Result};

/// What the fast path gives for a plain spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fast {
    /// The query kind (a metric label) and the response body.
    Answer(&'static str, Vec<u8>),
    /// Not run: the kind and its work estimate (`TenantGraph::estimate_work`), over the caller's
    /// `max_work`; the caller runs it elsewhere (the service's worker pool).
    Heavy(&'static str, u64),
}

/// A query error the fast path passes on rather than leaving to the caller: a budget limit
/// (`graph::budget`), which running the query again on the full path would only hit again.
fn passed_on(e: Error) -> Result<Option<Fast>> {
    match e {
        Error::WorkCap(_) | Error::Deadline => Err(e),
        _ => Ok(None),
    }
}

const TOPN_KEYS: [&str; 7] = [
    "query",
    "seed",
    "hops",
    "n",
    "edge_types",
    "node_types",
    "explain",
];
const NEIGHBORHOOD_KEYS: [&str; 7] = [
    "query",
    "seed",
    "depth",
    "limit",
    "edge_types",
    "node_types",
    "explain",
];

/// An integer field in `[lo, hi]`, `default` when absent; `None` for anything else.
fn int(
    spec: &Map<String, Value>,
    name: &str,
    default: Option<i64>,
    lo: i64,
    hi: i64,
) -> Option<i64> {
    let v = match spec.get(name) {
        None => default?,
        Some(Value::Number(n)) => n.as_i64()?,
        Some(_) => return None,
    };
    (lo..=hi).contains(&v).then_some(v)
}

/// A type filter: absent or null is every type, else a list of integers in 0..=255.
fn types(spec: &Map<String, Value>, name: &str) -> Option<EdgeTypeMask> {
    match spec.get(name) {
        None | Some(Value::Null) => Some(EdgeTypeMask::all()),
        Some(Value::Array(items)) => {
            let mut codes = Vec::with_capacity(items.len());
            for item in items {
                let t = item.as_u64().filter(|&t| t <= 255)?;
                codes.push(t as u8);
            }
            Some(EdgeTypeMask::from_types(&codes))
        }
        Some(_) => None,
    }
}

/// Answer `body` on `g` when it is a plain topn or neighborhood spec (see the module doc), or
/// leave a neighborhood unrun as `Fast::Heavy` when its work estimate is over `max_work`
/// (`u64::MAX`: never; a topn always runs).
/// `Ok(None)` for anything else; `Err` only for a budget limit the query ran into.
pub fn answer(g: &TenantGraph, body: &[u8], max_work: u64) -> Result<Option<Fast>> {
    Ok(plain(body).map(|p| run(g, p, max_work)).transpose()?.flatten())
}

/// A parsed plain spec.
struct Plain {
    kind: &'static str,
    seed: i64,
    depth: u8,
    count: u64, // n of topn, limit of neighborhood
    em: EdgeTypeMask,
    nm: EdgeTypeMask,
}

fn plain(body: &[u8]) -> Option<Plain> {
    let spec: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let kind = spec.get("query")?.as_str()?;
    let known: &[&str] = match kind {
        "topn" => &TOPN_KEYS,
        "neighborhood" => &NEIGHBORHOOD_KEYS,
        _ => return None,
    };
    if spec.keys().any(|k| !known.contains(&k.as_str())) {
        return None;
    }
    match spec.get("explain") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return None,
    }
    let (em, nm) = (types(&spec, "edge_types")?, types(&spec, "node_types")?);
    let seed = int(&spec, "seed", None, i64::MIN, i64::MAX)?;
    Some(if kind == "topn" {
        let depth = int(&spec, "hops", Some(2), 1, 2)? as u8;
        let count = int(&spec, "n", Some(10), 0, 10_000)? as u64;
        Plain { kind: "topn", seed, depth, count, em, nm }
    } else {
        let depth = int(&spec, "depth", Some(3), 1, 8)? as u8;
        let count = int(&spec, "limit", Some(50_000), 0, 10_000_000)? as u64;
        Plain { kind: "neighborhood", seed, depth, count, em, nm }
    })
}

fn run(g: &TenantGraph, p: Plain, max_work: u64) -> Result<Option<Fast>> {
    let Plain { kind, seed, depth, count, em, nm } = p;
    let topn = kind == "topn";
    // Q1 always runs here: two hops, pruned by score bound (17 edges read at the median on G1,
    // where its two-hop estimate is ~1,000), so an estimate would only send cheap queries away.
    if max_work != u64::MAX && !topn {
        let work = g.estimate_work(seed, depth, count, false);
        if work > max_work {
            return Ok(Some(Fast::Heavy(kind, work)));
        }
    }
    let mut out = Vec::with_capacity(256);
    if topn {
        let rows = match g.topn(seed, depth, count as usize, &em, &nm) {
            Ok((rows, _)) => rows,
            Err(e) => return passed_on(e),
        };
        out.extend_from_slice(b"{\"results\":[");
        for (i, (node, score)) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if write!(out, "{{\"node\":{node},\"score\":").is_err() {
                return Ok(None);
            }
            // serde_json writes a finite f64 the shortest way that reads back exactly (ryu), as
            // orjson does; a non-finite score (none is produced today) would be null in both.
            if serde_json::to_writer(&mut out, score).is_err() {
                return Ok(None);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    } else {
        let reached = match g.neighborhood_size(seed, depth, count, &em, &nm) {
            Ok((n, _)) => n,
            Err(e) => return passed_on(e),
        };
        out.extend_from_slice(format!("{{\"count\":{reached}}}").as_bytes());
    }
    Ok(Some(Fast::Answer(kind, out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Csr;

    fn graph() -> TenantGraph {
        let csr = Csr::from_edges(
            &[1, 1, 2, 3],
            &[2, 3, 4, 4],
            &[0.5, 0.25, 1.0, 0.75],
            &[0, 1, 0, 2],
            &[],
            &[],
        )
        .unwrap();
        TenantGraph::new(csr)
    }

    fn text(body: &str) -> Option<String> {
        match answer(&graph(), body.as_bytes(), u64::MAX).unwrap() {
            Some(Fast::Answer(_, b)) => Some(String::from_utf8(b).unwrap()),
            Some(Fast::Heavy(..)) => panic!("no max_work, nothing is heavy"),
            None => None,
        }
    }

    #[test]
    fn answers_plain_specs_like_the_core_calls() {
        let g = graph();
        let (rows, _) = g
            .topn(1, 2, 10, &EdgeTypeMask::all(), &EdgeTypeMask::all())
            .unwrap();
        let want: Vec<String> = rows
            .iter()
            .map(|(v, s)| {
                format!(
                    "{{\"node\":{v},\"score\":{}}}",
                    serde_json::to_string(s).unwrap()
                )
            })
            .collect();
        assert_eq!(
            text(r#"{"query":"topn","seed":1}"#).unwrap(),
            format!("{{\"results\":[{}]}}", want.join(","))
        );
        let (count, _) = g
            .neighborhood_size(1, 3, 50_000, &EdgeTypeMask::all(), &EdgeTypeMask::all())
            .unwrap();
        assert_eq!(
            text(r#"{"query":"neighborhood","seed":1,"explain":false}"#).unwrap(),
            format!("{{\"count\":{count}}}")
        );
        assert_eq!(
            text(r#"{"query":"topn","seed":1,"n":0,"edge_types":[]}"#).unwrap(),
            r#"{"results":[]}"#
        );
    }

    #[test]
    fn leaves_everything_unusual_to_the_caller() {
        for body in [
            "",
            "[]",
            "{",
            r#"{"query":"path","src":1,"dst":4}"#,
            r#"{"query":"topn"}"#,
            r#"{"query":"topn","seed":99}"#,
            r#"{"query":"topn","seed":1.0}"#,
            r#"{"query":"topn","seed":18446744073709551615}"#,
            r#"{"query":"topn","seed":1,"hops":3}"#,
            r#"{"query":"topn","seed":1,"n":10001}"#,
            r#"{"query":"topn","seed":1,"explain":true}"#,
            r#"{"query":"topn","seed":1,"explain":null}"#,
            r#"{"query":"topn","seed":1,"engine":"lmdb"}"#,
            r#"{"query":"topn","seed":1,"edge_types":[256]}"#,
            r#"{"query":"topn","seed":1,"edge_types":[true]}"#,
            r#"{"query":"topn","seed":1,"node_types":"0"}"#,
            r#"{"query":"neighborhood","seed":1,"depth":0}"#,
            r#"{"query":"neighborhood","seed":1,"limit":-1}"#,
        ] {
            assert_eq!(text(body), None, "{body}");
        }
    }
}

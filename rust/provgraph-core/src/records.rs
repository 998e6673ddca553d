//! Compact stored records (flag `records.storage`, docs/storage.md "Compact records"): the
//! preflights and the decision log entries the service stores, in a form that leaves out what
//! the row's key or another field already says, stores repeated values once per tenant in a
//! dictionary and ids, hashes and times as raw bytes and varints.
//!
//! * **Dictionary** ([`RecordDict`]): one per tenant, append-only, ids from 1. Every value is a
//!   JSON text (a string with its quotes, an object, ...). An id is given to a value the first
//!   time a record uses it, in memory; the caller stores the entry with the first record that
//!   commits using it: every encode returns the entries it used that are not known to be stored
//!   yet (`fresh`), the caller writes them in the record's transaction and, once committed, marks
//!   them stored ([`RecordDict::stored`]). A record that did not commit leaves its entries
//!   unmarked, so the next record that uses them writes them again. Every stored record therefore
//!   references stored entries only, and an id never names two values while the process lives;
//!   after a restart the dictionary is what the table holds.
//! * **Forms**: first byte 1 (never `{`, so JSON rows and compact ones share a table). A record
//!   the form cannot hold exactly (another member, an unusual value) gets no form (`None`) and
//!   the caller stores its JSON; encode returns a form only once decoding it gave back the same
//!   JSON value.
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::receipt::codec::{parse_time, parse_uuid, push_hex, push_time, push_uuid, put_varint, unhex, unzigzag, zigzag};

/// First byte of a compact record (either kind).
pub const FORM: u8 = 1;

fn corrupt(msg: &str) -> Error {
    Error::InvalidArgument(format!("compact record: {msg}"))
}

/// A tenant's dictionary of repeated record values.
#[derive(Default)]
pub struct RecordDict {
    ids: FxHashMap<Vec<u8>, u32>,
    values: Vec<Vec<u8>>, // id i at i - 1
    stored: Vec<bool>,
}

impl RecordDict {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a stored entry (loading the table). Ids may have gaps (entries given out before a
    /// restart but never stored): a gap stays empty, new entries take ids after the last.
    pub fn load(&mut self, id: u32, value: Vec<u8>) -> Result<()> {
        let i = id.checked_sub(1).ok_or_else(|| corrupt("entry id 0"))? as usize;
        if self.values.len() <= i {
            self.values.resize(i + 1, Vec::new());
            self.stored.resize(i + 1, false);
        }
        if self.stored[i] {
            return Err(corrupt("entry id stored twice"));
        }
        self.ids.insert(value.clone(), id);
        self.values[i] = value;
        self.stored[i] = true;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of entry `id`.
    pub fn value(&self, id: u32) -> Result<&[u8]> {
        let i = id.checked_sub(1).ok_or_else(|| corrupt("entry id 0"))? as usize;
        match self.values.get(i) {
            Some(v) if self.stored[i] || !v.is_empty() => Ok(v),
            _ => Err(corrupt(&format!("dictionary entry {id} is missing"))),
        }
    }

    /// Mark entries stored (their record committed).
    pub fn stored(&mut self, ids: &[u32]) {
        for &id in ids {
            if let Some(s) = (id as usize).checked_sub(1).and_then(|i| self.stored.get_mut(i)) {
                *s = true;
            }
        }
    }

    fn id_of(&mut self, value: &[u8], fresh: &mut Vec<u32>) -> u32 {
        let id = match self.ids.get(value) {
            Some(&id) => id,
            None => {
                self.values.push(value.to_vec());
                self.stored.push(false);
                let id = self.values.len() as u32;
                self.ids.insert(value.to_vec(), id);
                id
            }
        };
        if !self.stored[id as usize - 1] && !fresh.contains(&id) {
            fresh.push(id);
        }
        id
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| corrupt("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()? as usize;
        self.take(n)
    }

    fn entry<'d>(&mut self, dict: &'d RecordDict) -> Result<&'d [u8]> {
        let id = u32::try_from(self.varint()?).map_err(|_| corrupt("entry id"))?;
        dict.value(id)
    }

    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

fn put_bytes(data: &[u8], out: &mut Vec<u8>) {
    put_varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

type Members<'a> = BTreeMap<String, &'a RawValue>;

/// The members of a JSON object, each as its text.
fn members(text: &[u8]) -> Option<Members<'_>> {
    serde_json::from_slice(text).ok()
}

fn raw(r: &RawValue) -> &[u8] {
    r.get().as_bytes()
}

fn string(r: &RawValue) -> Option<String> {
    r.get().starts_with('"').then(|| serde_json::from_str(r.get()).ok()).flatten()
}

/// A JSON number written with a fraction or exponent (what Python's float gives).
fn float(r: &RawValue) -> Option<f64> {
    let t = r.get();
    (t.contains(['.', 'e', 'E'])).then(|| t.parse::<f64>().ok().filter(|v| v.is_finite())).flatten()
}

fn uint(r: &RawValue) -> Option<u64> {
    let t = r.get();
    (t.bytes().all(|c| c.is_ascii_digit()) && (t == "0" || !t.starts_with('0'))).then(|| t.parse().ok()).flatten()
}

fn pair(a: &RawValue, b: &RawValue) -> Vec<u8> {
    format!("[{},{}]", a.get(), b.get()).into_bytes()
}

fn split_pair(text: &[u8]) -> Result<(&str, &str)> {
    match serde_json::from_slice::<Vec<&RawValue>>(text) {
        Ok(v) if v.len() == 2 => Ok((v[0].get(), v[1].get())),
        _ => Err(corrupt("pair entry")),
    }
}

fn has_exactly(m: &Members<'_>, names: &[&str]) -> bool {
    m.len() == names.len() && names.iter().all(|n| m.contains_key(*n))
}

/// `"name":` (after a comma unless first).
fn member(name: &str, first: bool, out: &mut Vec<u8>) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn push_f64(v: f64, out: &mut Vec<u8>) -> Result<()> {
    let n = serde_json::Number::from_f64(v).ok_or_else(|| corrupt("not a finite number"))?;
    serde_json::to_writer(&mut *out, &n).map_err(|e| corrupt(&e.to_string()))
}

fn push_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// Microseconds of a float time, truncated (the base the stored deltas count from).
fn micros(t: f64) -> Option<i64> {
    let us = (t * 1e6).floor();
    (us.is_finite() && us.abs() < 9e15).then_some(us as i64)
}

/// `decoded` holds the same JSON value as `text` (byte-equal, or equal once parsed: a float may
/// be written differently, and a nested object's members in another order).
fn same(decoded: &[u8], text: &[u8]) -> bool {
    decoded == text
        || matches!((serde_json::from_slice::<Value>(decoded), serde_json::from_slice::<Value>(text)),
                    (Ok(a), Ok(b)) if a == b)
}

// ---- preflights -------------------------------------------------------------------------------

const PF: [&str; 17] = [
    "preflight_id", "tenant_id", "actor", "action", "resource", "request_hash", "decision", "reasons", "obligations",
    "policy", "created_at", "expires_ts", "expires_at", "status", "approvals", "rejection", "execution",
];
const STATUS: [&str; 3] = ["pending", "executed", "rejected"];

fn preflight_fields(m: &Members<'_>, preflight_id: &str, dict: &mut RecordDict, fresh: &mut Vec<u32>) -> Option<Vec<u8>> {
    let idem = match m.len() {
        17 => None,
        18 => Some(string(m.get("idempotency_row")?)?),
        _ => return None,
    };
    if !PF.iter().all(|n| m.contains_key(*n)) || string(m["preflight_id"])? != preflight_id {
        return None;
    }
    let decision = string(m["decision"])?;
    let status = STATUS.iter().position(|s| Some(*s) == string(m["status"]).as_deref())?;
    let policy = members(m["policy"].get().as_bytes())?;
    if !has_exactly(&policy, &["bundle", "revision", "decision_id", "decision"])
        || string(policy["decision"]).as_deref() != Some(decision.as_str())
    {
        return None;
    }
    let allow = match decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return None,
    };
    string(m["tenant_id"])?;
    string(m["action"])?;
    let created = float(m["created_at"])?;
    let expires = float(m["expires_ts"])?;
    let expires_at = parse_time(&string(m["expires_at"])?)?;
    let request_hash = unhex::<32>(string(m["request_hash"])?.as_bytes())?;
    let decision_id = parse_uuid(&string(policy["decision_id"])?)?;
    let resource = members(m["resource"].get().as_bytes())?;
    let approvals = m["approvals"].get();
    if !approvals.starts_with('[') {
        return None;
    }
    let (rejection, execution) = (m["rejection"].get(), m["execution"].get());
    let simple = has_exactly(&resource, &["type", "id"])
        && string(resource["type"]).is_some()
        && string(resource["id"]).is_some();
    let idem = match idem {
        Some(h) if h.len() % 2 == 0 => {
            Some(h.as_bytes().chunks_exact(2).map(|p| unhex::<1>(p).map(|b| b[0])).collect::<Option<Vec<u8>>>()?)
        }
        Some(_) => return None,
        None => None,
    };
    let flags = u8::from(allow)
        | (status as u8) << 1
        | u8::from(approvals != "[]") << 3
        | u8::from(rejection != "null") << 4
        | u8::from(execution != "null") << 5
        | u8::from(idem.is_some()) << 6
        | u8::from(simple) << 7;
    let mut out = vec![FORM, flags];
    let mut entry = |v: &[u8], out: &mut Vec<u8>| put_varint(u64::from(dict.id_of(v, fresh)), out);
    entry(raw(m["tenant_id"]), &mut out);
    entry(raw(m["actor"]), &mut out);
    entry(raw(m["action"]), &mut out);
    if simple {
        entry(raw(resource["type"]), &mut out);
        put_bytes(string(resource["id"])?.as_bytes(), &mut out);
    } else {
        put_bytes(m["resource"].get().as_bytes(), &mut out);
    }
    out.extend_from_slice(&request_hash);
    entry(&pair(m["reasons"], m["obligations"]), &mut out);
    entry(&pair(policy["bundle"], policy["revision"]), &mut out);
    out.extend_from_slice(&decision_id);
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(&expires.to_le_bytes());
    put_varint(zigzag(expires_at - micros(expires)?), &mut out);
    if approvals != "[]" {
        put_bytes(approvals.as_bytes(), &mut out);
    }
    if rejection != "null" {
        put_bytes(rejection.as_bytes(), &mut out);
    }
    if execution != "null" {
        let e = members(execution.as_bytes())?;
        if !has_exactly(&e, &["receipt_id", "executed_at", "result"]) {
            return None;
        }
        out.extend_from_slice(&parse_uuid(&string(e["receipt_id"])?)?);
        put_varint(zigzag(parse_time(&string(e["executed_at"])?)? - micros(created)?), &mut out);
        let result = members(e["result"].get().as_bytes());
        let field = |name: &str| result.as_ref().filter(|r| has_exactly(r, &[name])).map(|r| r[name]);
        let digest = field("payload_hash").and_then(string).and_then(|d| unhex::<32>(d.as_bytes()));
        match (digest, field("written").and_then(uint)) {
            (Some(d), _) => {
                out.push(1);
                out.extend_from_slice(&d);
            }
            (None, Some(n)) => {
                out.push(2);
                put_varint(n, &mut out);
            }
            _ => {
                out.push(0);
                put_bytes(e["result"].get().as_bytes(), &mut out);
            }
        }
    }
    if let Some(idem) = idem {
        put_bytes(&idem, &mut out);
    }
    Some(out)
}

/// The compact form of a stored preflight (its JSON) whose id is `preflight_id`, with the ids of
/// the entries it uses that are not stored yet; None where the form cannot hold it exactly.
pub fn encode_preflight(json_text: &[u8], preflight_id: &str, dict: &mut RecordDict) -> Option<(Vec<u8>, Vec<u32>)> {
    let m = members(json_text)?;
    let mut fresh = Vec::new();
    let form = preflight_fields(&m, preflight_id, dict, &mut fresh)?;
    let back = decode_preflight(&form, preflight_id, dict).ok()?;
    same(&back, json_text).then_some((form, fresh))
}

/// A compact preflight -> its JSON (members in the order the service writes them).
pub fn decode_preflight(form: &[u8], preflight_id: &str, dict: &RecordDict) -> Result<Vec<u8>> {
    let mut r = Reader { buf: form, pos: 0 };
    if r.byte()? != FORM {
        return Err(corrupt("not a compact preflight"));
    }
    let flags = r.byte()?;
    let mut out = Vec::with_capacity(900);
    out.push(b'{');
    member("preflight_id", true, &mut out);
    push_str(preflight_id, &mut out);
    for name in ["tenant_id", "actor", "action"] {
        member(name, false, &mut out);
        out.extend_from_slice(r.entry(dict)?);
    }
    member("resource", false, &mut out);
    if flags & 0x80 != 0 {
        out.extend_from_slice(b"{\"type\":");
        out.extend_from_slice(r.entry(dict)?);
        out.extend_from_slice(b",\"id\":");
        push_str(std::str::from_utf8(r.bytes()?).map_err(|_| corrupt("resource id"))?, &mut out);
        out.push(b'}');
    } else {
        out.extend_from_slice(r.bytes()?);
    }
    member("request_hash", false, &mut out);
    out.push(b'"');
    push_hex(r.take(32)?, &mut out);
    out.push(b'"');
    let decision: &[u8] = if flags & 1 != 0 { b"\"allow\"" } else { b"\"deny\"" };
    member("decision", false, &mut out);
    out.extend_from_slice(decision);
    let (reasons, obligations) = split_pair(r.entry(dict)?)?;
    member("reasons", false, &mut out);
    out.extend_from_slice(reasons.as_bytes());
    member("obligations", false, &mut out);
    out.extend_from_slice(obligations.as_bytes());
    let (bundle, revision) = split_pair(r.entry(dict)?)?;
    member("policy", false, &mut out);
    out.extend_from_slice(b"{\"bundle\":");
    out.extend_from_slice(bundle.as_bytes());
    out.extend_from_slice(b",\"revision\":");
    out.extend_from_slice(revision.as_bytes());
    out.extend_from_slice(b",\"decision_id\":\"");
    push_uuid(r.take(16)?, &mut out);
    out.extend_from_slice(b"\",\"decision\":");
    out.extend_from_slice(decision);
    out.push(b'}');
    let (created, expires) = (r.f64()?, r.f64()?);
    member("created_at", false, &mut out);
    push_f64(created, &mut out)?;
    member("expires_ts", false, &mut out);
    push_f64(expires, &mut out)?;
    member("expires_at", false, &mut out);
    out.push(b'"');
    push_time(micros(expires).ok_or_else(|| corrupt("expires_ts"))? + unzigzag(r.varint()?), &mut out);
    out.push(b'"');
    member("status", false, &mut out);
    push_str(STATUS.get(usize::from(flags >> 1 & 3)).ok_or_else(|| corrupt("status"))?, &mut out);
    member("approvals", false, &mut out);
    if flags & 0x08 != 0 {
        out.extend_from_slice(r.bytes()?);
    } else {
        out.extend_from_slice(b"[]");
    }
    member("rejection", false, &mut out);
    if flags & 0x10 != 0 {
        out.extend_from_slice(r.bytes()?);
    } else {
        out.extend_from_slice(b"null");
    }
    member("execution", false, &mut out);
    if flags & 0x20 != 0 {
        out.extend_from_slice(b"{\"receipt_id\":\"");
        push_uuid(r.take(16)?, &mut out);
        out.extend_from_slice(b"\",\"executed_at\":\"");
        push_time(micros(created).ok_or_else(|| corrupt("created_at"))? + unzigzag(r.varint()?), &mut out);
        out.extend_from_slice(b"\",\"result\":");
        match r.byte()? {
            1 => {
                out.extend_from_slice(b"{\"payload_hash\":\"");
                push_hex(r.take(32)?, &mut out);
                out.extend_from_slice(b"\"}");
            }
            2 => {
                out.extend_from_slice(b"{\"written\":");
                out.extend_from_slice(r.varint()?.to_string().as_bytes());
                out.push(b'}');
            }
            0 => out.extend_from_slice(r.bytes()?),
            _ => return Err(corrupt("result tag")),
        }
        out.push(b'}');
    } else {
        out.extend_from_slice(b"null");
    }
    if flags & 0x40 != 0 {
        member("idempotency_row", false, &mut out);
        out.push(b'"');
        push_hex(r.bytes()?, &mut out);
        out.push(b'"');
    }
    out.push(b'}');
    if r.pos != form.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

// ---- decision log entries -----------------------------------------------------------------------

const ENTRY: [&str; 13] = [
    "decision_id", "path", "bundle", "revision", "input_hash", "tenant_id", "actor", "action", "resource_type",
    "result", "cached", "timestamp", "eval_ns",
];
const ENTRY_STRINGS: [&str; 5] = ["path", "tenant_id", "actor", "action", "resource_type"];

fn entry_fields(m: &Members<'_>, key_us: i64, dict: &mut RecordDict, fresh: &mut Vec<u32>) -> Option<Vec<u8>> {
    if !has_exactly(m, &ENTRY) || !ENTRY_STRINGS.iter().all(|n| string(m[*n]).is_some()) {
        return None;
    }
    let decision_id = parse_uuid(&string(m["decision_id"])?)?;
    let digest = unhex::<32>(string(m["input_hash"])?.as_bytes())?;
    let at = parse_time(&string(m["timestamp"])?)?;
    let cached = match m["cached"].get() {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    let eval_ns = uint(m["eval_ns"])?;
    let mut out = vec![FORM, u8::from(cached)];
    out.extend_from_slice(&decision_id);
    let bundle = pair(m["bundle"], m["revision"]);
    let values = [
        raw(m["path"]),
        &bundle,
        raw(m["tenant_id"]),
        raw(m["actor"]),
        raw(m["action"]),
        raw(m["resource_type"]),
        raw(m["result"]),
    ];
    for v in values {
        put_varint(u64::from(dict.id_of(v, fresh)), &mut out);
    }
    out.extend_from_slice(&digest);
    put_varint(zigzag(at - key_us), &mut out);
    put_varint(eval_ns, &mut out);
    Some(out)
}

/// The compact form of a decision log entry (its JSON) stored under a key of time `key_us`, with
/// the ids of the entries it uses that are not stored yet; None where the form cannot hold it.
pub fn encode_entry(json_text: &[u8], key_us: i64, dict: &mut RecordDict) -> Option<(Vec<u8>, Vec<u32>)> {
    let m = members(json_text)?;
    let mut fresh = Vec::new();
    let form = entry_fields(&m, key_us, dict, &mut fresh)?;
    let back = decode_entry(&form, key_us, dict).ok()?;
    same(&back, json_text).then_some((form, fresh))
}

/// A compact decision log entry -> its JSON.
pub fn decode_entry(form: &[u8], key_us: i64, dict: &RecordDict) -> Result<Vec<u8>> {
    let mut r = Reader { buf: form, pos: 0 };
    if r.byte()? != FORM {
        return Err(corrupt("not a compact decision log entry"));
    }
    let cached = r.byte()? & 1 != 0;
    let mut out = Vec::with_capacity(480);
    out.extend_from_slice(b"{\"decision_id\":\"");
    push_uuid(r.take(16)?, &mut out);
    out.push(b'"');
    member("path", false, &mut out);
    out.extend_from_slice(r.entry(dict)?);
    let (bundle, revision) = split_pair(r.entry(dict)?)?;
    member("bundle", false, &mut out);
    out.extend_from_slice(bundle.as_bytes());
    member("revision", false, &mut out);
    out.extend_from_slice(revision.as_bytes());
    let strings: Vec<&[u8]> = (0..5).map(|_| r.entry(dict)).collect::<Result<_>>()?;
    member("input_hash", false, &mut out);
    out.push(b'"');
    push_hex(r.take(32)?, &mut out);
    out.push(b'"');
    for (name, value) in ["tenant_id", "actor", "action", "resource_type", "result"].iter().zip(strings) {
        member(name, false, &mut out);
        out.extend_from_slice(value);
    }
    member("cached", false, &mut out);
    out.extend_from_slice(if cached { b"true" } else { b"false" });
    member("timestamp", false, &mut out);
    out.push(b'"');
    push_time(key_us + unzigzag(r.varint()?), &mut out);
    out.push(b'"');
    member("eval_ns", false, &mut out);
    out.extend_from_slice(r.varint()?.to_string().as_bytes());
    out.push(b'}');
    if r.pos != form.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PFJ: &str = r#"{"preflight_id":"01a252c6-0a8f-72e6-9785-7e6ca35c56c5","tenant_id":"t1","actor":{"id":"user:olga","roles":["operator"]},"action":"deploy","resource":{"type":"service","id":"svc-52"},"request_hash":"1db65bfe9c298f676047d1bdb6e02e1cda611c9dd8bfaf4a775be399afad321e","decision":"allow","reasons":["role operator grants deploy on service"],"obligations":[],"policy":{"bundle":"authz","revision":"2026-11-26.1","decision_id":"01a252c6-0a8f-72e6-9785-7e6bf29418ce","decision":"allow"},"created_at":1796685040.2717326,"expires_ts":1796685940.2717326,"expires_at":"2026-12-07T23:25:40.271733Z","status":"executed","approvals":[],"rejection":null,"execution":{"receipt_id":"01a252c6-0a90-735e-a809-13017428ef61","executed_at":"2026-12-07T23:10:40.274920Z","result":{"payload_hash":"cf2a74bb6fff30fdf9730f7fccc4836d45b1789c19f351f42f1429df1d340ae4"}}}"#;
    const ID: &str = "01a252c6-0a8f-72e6-9785-7e6ca35c56c5";

    #[test]
    fn a_preflight_round_trips_and_shares_entries() {
        let mut d = RecordDict::new();
        let (form, fresh) = encode_preflight(PFJ.as_bytes(), ID, &mut d).unwrap();
        assert!(form.len() < 150, "{}", form.len());
        assert_eq!(fresh.len(), 6);
        assert_eq!(decode_preflight(&form, ID, &d).unwrap(), PFJ.as_bytes());
        // unstored entries are fresh again for the next record; stored ones are not
        let (_, again) = encode_preflight(PFJ.as_bytes(), ID, &mut d).unwrap();
        assert_eq!(again, fresh);
        d.stored(&fresh);
        assert!(encode_preflight(PFJ.as_bytes(), ID, &mut d).unwrap().1.is_empty());
        // a dictionary loaded from its stored entries decodes the form alone
        let mut loaded = RecordDict::new();
        for id in fresh {
            loaded.load(id, d.value(id).unwrap().to_vec()).unwrap();
        }
        assert_eq!(decode_preflight(&form, ID, &loaded).unwrap(), PFJ.as_bytes());
    }

    #[test]
    fn unusual_preflights_get_no_form() {
        let mut d = RecordDict::new();
        for (from, to) in [
            (r#""status":"executed""#, r#""status":"archived""#),
            (r#""created_at":1796685040.2717326"#, r#""created_at":1796685040"#),
            (r#""request_hash":"1d"#, r#""request_hash":"1D"#),
            (r#""rejection":null"#, r#""rejection":null,"future":1"#),
            (r#""decision":"allow","reasons""#, r#""decision":"deny","reasons""#),
        ] {
            let text = PFJ.replacen(from, to, 1);
            assert_ne!(text, PFJ);
            assert!(encode_preflight(text.as_bytes(), ID, &mut d).is_none(), "{to}");
        }
        assert!(encode_preflight(PFJ.as_bytes(), "01a252c6-0a8f-72e6-9785-7e6ca35c56c6", &mut d).is_none());
    }

    #[test]
    fn an_entry_round_trips_after_a_gap() {
        let e = r#"{"decision_id":"01a252c6-0a8f-72e6-9785-7e6bf29418ce","path":"provgraph/authz/decision","bundle":"authz","revision":"2026-11-26.1","input_hash":"f2df281405587ae817618faba52a34cb509c40734dc18dd8c4d3e098246cc15f","tenant_id":"t1","actor":"user:olga","action":"deploy","resource_type":"service","result":{"allow":true,"reasons":["role operator grants deploy on service"],"obligations":[]},"cached":true,"timestamp":"2026-12-07T23:10:40.271729Z","eval_ns":0}"#;
        let key_us = 1_796_685_040_271_800;
        let mut d = RecordDict::new();
        d.load(3, b"\"kept\"".to_vec()).unwrap(); // ids 1 and 2 were given out, never stored
        let (form, fresh) = encode_entry(e.as_bytes(), key_us, &mut d).unwrap();
        assert!(form.len() < 70, "{}", form.len());
        assert_eq!(fresh, (4..11).collect::<Vec<u32>>());
        assert!(d.value(1).is_err() && d.value(3).is_ok());
        assert_eq!(decode_entry(&form, key_us, &d).unwrap(), e.as_bytes());
        assert!(decode_entry(&form[..form.len() - 1], key_us, &d).is_err());
        assert!(d.value(40).is_err());
    }
}

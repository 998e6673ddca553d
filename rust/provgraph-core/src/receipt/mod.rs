//! Signed receipts: Ed25519 signatures over RFC 8785 bytes, linked in a per-tenant BLAKE3 chain.
//!
//! # Format (the public contract of `API.md`, "Actions and receipts")
//!
//! A receipt is a JSON object. The issuer adds four fields to the caller's object:
//!
//! * `seq`: 1, 2, … per tenant;
//! * `prev_hash`: lowercase hex of BLAKE3 of the previous receipt's *signed bytes* in the
//!   same tenant (`seq − 1`), or 64 zeros for `seq` 1;
//! * `signer`: `{"key_id": <hex(blake3(public key))[..16]>, "alg": "Ed25519"}`;
//! * `signature`: standard base64 (RFC 4648 §4, with `=` padding) of the 64-byte Ed25519
//!   (RFC 8032, pure) signature over the signed bytes.
//!
//! The *signed bytes* are the RFC 8785 canonical JSON of the object without `signature`.
//! The stored / served receipt is the canonical JSON of the whole object, `signature` included.
//!
//! # Verification recipe (any Ed25519 + BLAKE3 + RFC 8785 library)
//!
//! 1. Parse the receipt; remove `signature`; serialize the rest with RFC 8785 → signed bytes.
//! 2. Base64-decode `signature` (64 bytes) and verify it over the signed bytes with the
//!    public key whose key id is `signer.key_id`.
//! 3. For a chain of one tenant in `seq` order: `seq` is 1, 2, … without gaps, every
//!    `tenant_id` is the same, and each `prev_hash` equals `hex(blake3(signed bytes))` of the
//!    previous receipt (64 zeros for the first).
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use crate::canonical::{canonicalize_into, cmp_utf16, parse_strict, write_string};
use crate::error::{Error, Result};

mod chain;
pub mod codec;
pub mod pack;
mod keys;

pub use chain::{verify_chain, verify_chain_from, ChainReport};
pub use keys::{key_id_of, SigningKey};

/// The `signer.alg` of every receipt.
pub const ALG: &str = "Ed25519";

/// The `prev_hash` of the first receipt of a tenant (as raw bytes: 32 zeros).
pub const GENESIS: [u8; 32] = [0; 32];

/// Largest `seq`: JCS numbers are doubles, so integers stay exact only up to 2^53.
pub const MAX_SEQ: u64 = 1 << 53;

/// Fields the issuer sets; a receipt handed to [`sign_batch`] must not carry them.
const ISSUER_FIELDS: [&str; 4] = ["seq", "prev_hash", "signer", "signature"];

/// Lowercase hex of a 32-byte digest.
pub fn hex32(hash: &[u8; 32]) -> String {
    keys::hex(hash)
}

/// One signed receipt as produced by [`sign_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Its position in the tenant's chain.
    pub seq: u64,
    /// The receipt's `receipt_id`.
    pub receipt_id: String,
    /// BLAKE3 of the signed bytes (the next receipt's `prev_hash`).
    pub signed_hash: [u8; 32],
    /// RFC 8785 canonical JSON of the full receipt, `signature` included.
    pub json: Vec<u8>,
}

fn required_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(Error::InvalidArgument(format!("receipt field {field:?} must be a non-empty string"))),
        None => Err(Error::InvalidArgument(format!("receipt lacks {field:?}"))),
    }
}

/// Write the canonical bytes of the object `map` to `out` and return the offset at which a
/// top-level `"signature"` member would start (`map` must not contain `signature` and must
/// contain a member sorting after it, e.g. `signer`).
fn write_signed_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> usize {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // BTreeMap order is UTF-8 byte order; JCS wants UTF-16 code-unit order.
    members.sort_by(|a, b| cmp_utf16(a.0, b.0));
    let mut sig_at = None;
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if sig_at.is_none() && cmp_utf16(name, "signature").is_gt() {
            sig_at = Some(out.len());
        }
        write_string(name, out);
        out.push(b':');
        canonicalize_into(value, out);
    }
    out.push(b'}');
    sig_at.expect("`signer` sorts after `signature`")
}

/// Sign `receipts` in order as the continuation of a chain whose head (BLAKE3 of the last
/// receipt's signed bytes) is `prev_hash` and whose next `seq` is `next_seq`.
///
/// Each receipt must carry `receipt_id` and `tenant_id` (non-empty strings) and must not
/// carry `seq`, `prev_hash`, `signer` or `signature`. For `next_seq == 1` the caller passes
/// [`GENESIS`] (32 zero bytes) as `prev_hash`, and only then. Returns the signed receipts and
/// the new chain head (`prev_hash` unchanged for an empty batch). On an error nothing is
/// returned (the batch is all or nothing).
pub fn sign_batch(
    key: &SigningKey,
    prev_hash: [u8; 32],
    next_seq: u64,
    receipts: Vec<Map<String, Value>>,
) -> Result<(Vec<Signed>, [u8; 32])> {
    let n = receipts.len();
    sign_iter(key, prev_hash, next_seq, n, receipts.into_iter().map(Ok))
}

/// [`sign_batch`] over `n` receipts produced lazily (e.g. parsed one at a time, so each
/// receipt is parsed, signed and dropped while its memory is still in cache).
pub fn sign_iter(
    key: &SigningKey,
    prev_hash: [u8; 32],
    next_seq: u64,
    n: usize,
    receipts: impl Iterator<Item = Result<Map<String, Value>>>,
) -> Result<(Vec<Signed>, [u8; 32])> {
    if next_seq == 0 {
        return Err(Error::InvalidArgument("next_seq must be >= 1".into()));
    }
    if (next_seq == 1) != (prev_hash == GENESIS) {
        return Err(Error::InvalidArgument(if next_seq == 1 {
            "prev_hash must be 32 zero bytes for seq 1".into()
        } else {
            format!("prev_hash of 32 zero bytes is only valid for seq 1, got next_seq {next_seq}")
        }));
    }
    if next_seq.saturating_add(n as u64) > MAX_SEQ + 1 {
        return Err(Error::InvalidArgument(format!("seq would exceed 2^53 ({next_seq} + {n})")));
    }
    let signer = {
        let mut s = Map::new();
        s.insert("alg".into(), Value::String(ALG.into()));
        s.insert("key_id".into(), Value::String(key.key_id_str().into()));
        Value::Object(s)
    };
    let mut out = Vec::with_capacity(n);
    let mut head = prev_hash;
    let mut buf = Vec::with_capacity(2048);
    for (i, map) in receipts.enumerate() {
        let at = |e: Error| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("receipt {i}: {m}")),
            other => other,
        };
        let mut map = map.map_err(at)?;
        let receipt_id = required_str(&map, "receipt_id").map_err(at)?.to_owned();
        required_str(&map, "tenant_id").map_err(at)?;
        if let Some(f) = ISSUER_FIELDS.iter().find(|f| map.contains_key(**f)) {
            return Err(Error::InvalidArgument(format!("receipt {i}: {f:?} is set by the issuer")));
        }
        let seq = next_seq + i as u64;
        map.insert("seq".into(), Value::from(seq));
        map.insert("prev_hash".into(), Value::String(hex32(&head)));
        map.insert("signer".into(), signer.clone());
        buf.clear();
        let sig_at = write_signed_object(&map, &mut buf);
        drop(map);
        let signed_hash = *blake3::hash(&buf).as_bytes();
        let signature = key.sign(&buf);
        let mut json = Vec::with_capacity(buf.len() + 104);
        json.extend_from_slice(&buf[..sig_at]);
        json.extend_from_slice(b"\"signature\":\"");
        let b64_at = json.len();
        json.resize(b64_at + 88, 0);
        let written = B64.encode_slice(signature, &mut json[b64_at..]).expect("88 bytes hold 64 in base64");
        debug_assert_eq!(written, 88);
        json.extend_from_slice(b"\",");
        json.extend_from_slice(&buf[sig_at..]);
        out.push(Signed { seq, receipt_id, signed_hash, json });
        head = signed_hash;
    }
    if out.len() != n {
        return Err(Error::InvalidArgument(format!("expected {n} receipts, got {}", out.len())));
    }
    Ok((out, head))
}

/// A parsed receipt: the fields the chain check needs and its signed bytes.
pub(crate) struct Parsed {
    pub seq: Option<u64>,
    pub tenant_id: Option<String>,
    pub prev_hash: Option<String>,
    pub signed_hash: [u8; 32],
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidReceipt(msg.into())
}

/// Parse `receipt_json`, check `signer.alg` and the signature (with the key `key_for` returns
/// for `signer.key_id`), and return the chain fields.
pub(crate) fn check_receipt<'k>(
    receipt_json: &[u8],
    key_for: impl FnOnce(Option<&str>) -> Result<&'k [u8; 32]>,
) -> Result<Parsed> {
    let value = parse_strict(receipt_json).map_err(|e| bad(format!("bad JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(bad("bad JSON: not an object"));
    };
    let sig_b64 = match map.remove("signature") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("bad signature: not a string")),
        None => return Err(bad("missing signature")),
    };
    let sig_bytes = B64.decode(sig_b64.as_bytes()).map_err(|e| bad(format!("bad signature: base64: {e}")))?;
    let sig_arr: [u8; 64] = sig_bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("bad signature: {} bytes, expected 64", sig_bytes.len())))?;
    let (key_id, alg) = match map.get("signer") {
        Some(Value::Object(s)) => (s.get("key_id").and_then(Value::as_str), s.get("alg").and_then(Value::as_str)),
        _ => (None, None),
    };
    if alg != Some(ALG) {
        return Err(bad(format!("unsupported signer.alg {alg:?}, expected \"Ed25519\"")));
    }
    let public_key = key_for(key_id)?;
    let verifying = VerifyingKey::from_bytes(public_key).map_err(|_| bad("public key is not a valid Ed25519 point"))?;
    let seq = map.get("seq").and_then(Value::as_u64);
    let tenant_id = map.get("tenant_id").and_then(Value::as_str).map(str::to_owned);
    let prev_hash = map.get("prev_hash").and_then(Value::as_str).map(str::to_owned);
    let value = Value::Object(map);
    crate::canonical::with_scratch(|buf| {
        canonicalize_into(&value, buf);
        verifying.verify_strict(buf, &Signature::from_bytes(&sig_arr)).map_err(|_| bad("signature mismatch"))?;
        Ok(Parsed { seq, tenant_id, prev_hash, signed_hash: *blake3::hash(buf).as_bytes() })
    })
}

/// Verify one receipt's signature with `public_key` and return the BLAKE3 of its signed bytes.
///
/// Errors ([`Error::InvalidReceipt`]) name what failed: `bad JSON`, `missing signature`,
/// `bad signature` (not a string, bad base64, not 64 bytes), `unsupported signer.alg`,
/// `signature mismatch`. The key id is not checked here (the caller chose the key).
pub fn verify_receipt(receipt_json: &[u8], public_key: &[u8; 32]) -> Result<[u8; 32]> {
    check_receipt(receipt_json, |_| Ok(public_key)).map(|p| p.signed_hash)
}

/// A fresh UUIDv7 (time-ordered, RFC 9562) as a lowercase hyphenated string.
pub fn uuid7() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

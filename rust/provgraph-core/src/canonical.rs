//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.
//!
//! * Objects: members sorted by the UTF-16 code units of their names (not by UTF-8 bytes
//!   or code points: U+E000..U+FFFF sort *after* the astral planes), no whitespace.
//! * Strings (§3.2.2.2): only `"`, `\` and the controls below U+0020 are escaped; `\b \f \n
//!   \r \t` use the short forms, the other controls `\u00xx` in lowercase hex; everything
//!   else, U+2028/U+2029 and U+007F included, is written as literal UTF-8.
//! * Numbers (§3.2.2.3): IEEE-754 doubles printed as ECMAScript `Number.prototype.toString`
//!   (shortest round-trip digits, exponent form at >= 1e21 and < 1e-6, `-0` as `0`), done by
//!   `ryu-js`. JCS has no integers: a `u64`/`i64` held by a `serde_json::Value` beyond
//!   +/-2^53 is first rounded to the nearest double (ties to even), exactly what an
//!   ECMAScript `JSON.parse` would have done, so `18446744073709551615` becomes
//!   `18446744073709552000`. Integers of magnitude <= 2^53 print as themselves.
//!   NaN and the infinities cannot occur in a `serde_json::Value`; [`write_f64`] rejects them.
//!
//! [`canonicalize_json`] parses JSON text first and, as RFC 8785 §3.1 asks, rejects
//! duplicate member names (plain `serde_json` keeps the last one silently), lone surrogate
//! escapes (`serde_json` refuses them) and numbers outside the double range (`1e400`).
//! Nesting is limited to serde_json's recursion limit of 128 levels.
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// 2^53: every integer of at most this magnitude is an exact double.
const MAX_EXACT_INT: u64 = 1 << 53;

/// The canonical (RFC 8785) bytes of `value`.
pub fn canonicalize(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    canonicalize_into(value, &mut out);
    out
}

/// Append the canonical (RFC 8785) bytes of `value` to `out`.
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonicalize_into(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

/// Parse JSON text (duplicate names rejected) and return its canonical bytes.
pub fn canonicalize_json(bytes: &[u8]) -> Result<Vec<u8>> {
    Ok(canonicalize(&parse_strict(bytes)?))
}

/// BLAKE3 of the canonical bytes of `value`.
///
/// The canonical bytes are written into a per-thread scratch buffer (kept between calls
/// unless it grew past 64 KiB) and hashed in one `blake3::hash` call, which for the
/// ~200-byte decision-cache keys beats streaming `Hasher::update`s.
pub fn canonical_hash(value: &Value) -> [u8; 32] {
    with_scratch(|out| {
        canonicalize_into(value, out);
        *blake3::hash(out).as_bytes()
    })
}

/// Scratch buffers above this capacity are dropped instead of being kept for the next call.
const KEEP_SCRATCH_BYTES: usize = 1 << 16;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` on an empty per-thread byte buffer (re-entrant: a nested call gets a fresh one).
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(std::cell::Cell::take);
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= KEEP_SCRATCH_BYTES {
        SCRATCH.with(|c| c.set(buf));
    }
    r
}

/// Parse JSON text into a `Value`, rejecting duplicate member names (RFC 8785 §3.1 /
/// I-JSON), invalid UTF-8, lone surrogate escapes, out-of-range numbers and trailing data.
pub fn parse_strict(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| Error::InvalidJson(e.to_string()))
}

/// Order two member names by their UTF-16 code units (RFC 8785 §3.2.3).
///
/// UTF-8 byte order equals code point order; it differs from UTF-16 order only where a
/// supplementary-plane character (surrogate pair 0xD800..0xDFFF) meets one of U+E000..U+FFFF,
/// so the first differing bytes decide, with that one case flipped.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let Some(i) = ab.iter().zip(bb).position(|(x, y)| x != y) else {
        return ab.len().cmp(&bb.len());
    };
    let (x, y) = (ab[i], bb[i]);
    // Byte order is UTF-16 order except where one character is in U+E000..U+FFFF (lead byte
    // 0xEE/0xEF) and the other is supplementary (lead byte 0xF0..0xF4): there the
    // supplementary one (surrogate pair, 0xD800..) comes first. Bytes >= 0xEE are lead bytes
    // (continuation bytes are 0x80..0xBF), so `i` then starts a character in both strings;
    // when `i` is inside a character the common lead byte puts both in the same class.
    if x >= 0xEE && y >= 0xEE && (x >= 0xF0) != (y >= 0xF0) {
        return if x >= 0xF0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    x.cmp(&y)
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    // Without serde_json's `preserve_order` the map is a BTreeMap iterated in UTF-8 byte
    // order, which is already UTF-16 order unless an astral name meets one in U+E000..U+FFFF.
    // Members are written in map order while checking that adjacent names ascend (which also
    // keeps this right should a dependency turn `preserve_order` on); on the rare disorder
    // the partial output is dropped and the members are written sorted.
    let start = out.len();
    out.push(b'{');
    let mut prev: Option<&str> = None;
    for (k, v) in map {
        if let Some(p) = prev {
            if cmp_utf16(p, k) != Ordering::Less {
                out.truncate(start);
                return write_object_sorted(map, out);
            }
            out.push(b',');
        }
        prev = Some(k);
        write_string(k, out);
        out.push(b':');
        canonicalize_into(v, out);
    }
    out.push(b'}');
}

#[cold]
fn write_object_sorted(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|x, y| cmp_utf16(x.0, y.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        canonicalize_into(v, out);
    }
    out.push(b'}');
}

/// Append `s` as a JSON string escaped per RFC 8785 §3.2.2.2.
///
/// Runs of bytes needing no escape are found eight at a time (SWAR test for `"`, `\\` and
/// bytes below 0x20) and copied with one `extend_from_slice` each.
#[inline]
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    loop {
        let i = find_escape(bytes, run);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        write_escape(b, out);
        run = i + 1;
    }
    out.push(b'"');
}

#[inline(always)]
fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the eight bytes of `w` is below 0x20, `"` or `\\` (exact: the classic
/// "has zero byte"/"has byte less than n" tests can only err in lanes above a true hit).
#[inline(always)]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let lt = w.wrapping_sub(ONES * 0x20);
    let q = w ^ (ONES * b'"' as u64);
    let bs = w ^ (ONES * b'\\' as u64);
    // In the lowest hit lane `w < 0x80`, so the shared `& !w` keeps it.
    ((lt | (q.wrapping_sub(ONES) & !q) | (bs.wrapping_sub(ONES) & !bs)) & !w & HIGH) != 0
}

/// Index of the first byte at or after `i` that needs an escape, or `bytes.len()`.
#[inline(always)]
fn find_escape(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if word_needs_escape(w) {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !byte_needs_escape(bytes[i]) {
        i += 1;
    }
    i
}

#[cold]
fn write_escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0C => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => 0,
    };
    if short != 0 {
        out.extend_from_slice(&[b'\\', short]);
    } else {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xF) as usize],
        ]);
    }
}

/// Append a `serde_json::Number` as its IEEE-754 double in ECMAScript form.
pub fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write_u64(u, false, out);
    } else if let Some(i) = n.as_i64() {
        write_u64(i.unsigned_abs(), i < 0, out);
    } else {
        // Without `arbitrary_precision` every Number is u64, i64 or a finite f64.
        let f = n.as_f64().unwrap_or(0.0);
        write_finite(f, out);
    }
}

/// Append an integer: exact below 2^53, otherwise its nearest double (JCS has no integers).
pub fn write_i64(i: i64, out: &mut Vec<u8>) {
    write_u64(i.unsigned_abs(), i < 0, out);
}

fn write_u64(mag: u64, negative: bool, out: &mut Vec<u8>) {
    if mag <= MAX_EXACT_INT {
        if negative && mag != 0 {
            out.push(b'-');
        }
        let mut buf = [0u8; 20];
        let mut pos = buf.len();
        let mut m = mag;
        loop {
            pos -= 1;
            buf[pos] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        out.extend_from_slice(&buf[pos..]);
    } else {
        // `as` rounds to nearest, ties to even: the double a JSON parser would produce.
        let f = mag as f64;
        write_finite(if negative { -f } else { f }, out);
    }
}

/// Append `f` in ECMAScript `Number.prototype.toString` form; NaN and +/-Infinity are
/// not representable in JSON and are rejected.
pub fn write_f64(f: f64, out: &mut Vec<u8>) -> Result<()> {
    if !f.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "{f} is not representable in JSON (RFC 8785)"
        )));
    }
    write_finite(f, out);
    Ok(())
}

#[inline]
fn write_finite(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.push(b'0'); // both zeros, per ECMAScript
    } else {
        let mut buf = ryu_js::Buffer::new();
        out.extend_from_slice(buf.format_finite(f).as_bytes());
    }
}

/// A `Value` deserialized with duplicate member names rejected.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            match map.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(value);
                }
                Entry::Occupied(e) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member name {:?}",
                        e.key()
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

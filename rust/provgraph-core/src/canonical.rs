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
pub fn canonical_hash(value: &Value) -> [u8; 32] {
    let mut out = Vec::with_capacity(256);
    canonicalize_into(value, &mut out);
    *blake3::hash(&out).as_bytes()
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
/// so only the first differing characters need remapping.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let Some(i) = ab.iter().zip(bb).position(|(x, y)| x != y) else {
        return ab.len().cmp(&bb.len());
    };
    // Back up to the start of the character holding the first differing byte (the common
    // prefix is identical in both strings, so the boundary is the same in both).
    let mut start = i;
    while !a.is_char_boundary(start) {
        start -= 1;
    }
    let ca = a[start..].chars().next().map_or(0, utf16_rank);
    let cb = b[start..].chars().next().map_or(0, utf16_rank);
    ca.cmp(&cb)
}

/// A key of `c` whose order is the order of its first UTF-16 code unit (then its second).
#[inline]
fn utf16_rank(c: char) -> u32 {
    let c = c as u32;
    if (0xE000..0x10000).contains(&c) {
        c + 0x20_0000 // above every supplementary code point (whose lead unit is < 0xDC00)
    } else {
        c
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    // Without serde_json's `preserve_order` the map is a BTreeMap iterated in UTF-8 byte
    // order, which is already UTF-16 order unless an astral name meets one in U+E000..U+FFFF.
    // Checking adjacent names keeps this right even if a dependency turns `preserve_order` on.
    let mut keys = map.keys();
    let in_order = match keys.next() {
        None => true,
        Some(first) => keys
            .try_fold(first, |prev, k| {
                (cmp_utf16(prev, k) == Ordering::Less).then_some(k)
            })
            .is_some(),
    };
    if !in_order {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|x, y| cmp_utf16(x.0, y.0));
        write_members(entries.into_iter(), out);
    } else {
        write_members(map.iter(), out);
    }
    out.push(b'}');
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        canonicalize_into(v, out);
    }
}

/// Append `s` as a JSON string escaped per RFC 8785 §3.2.2.2.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: u8 = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0C => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1F => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
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
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
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

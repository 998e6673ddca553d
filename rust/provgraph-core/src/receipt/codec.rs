//! Compact receipts (receipt compaction v1, docs/receipts.md "Compact form"): a stored receipt
//! (its RFC 8785 bytes, `signature` included) as a template id from a per-tenant dictionary plus
//! the receipt's own values in their smallest exact form, and the reconstructor back to the
//! exact bytes.
//!
//! * The **template** is the receipt's canonical text with every scalar cut out: member names,
//!   punctuation, `true`/`false`/`null` stay in it; each cut is a *hole* of one kind. Receipts
//!   of one shape (same members, same array lengths) share a template.
//! * A **hole** holds its value as: raw 16 bytes (a lowercase UUID), raw 32 bytes (64 lowercase
//!   hex digits), raw 64 bytes (the base64 Ed25519 signature), a zigzag varint of microseconds
//!   (an RFC 3339 UTC timestamp with 6 fractional digits, against the receipt's previous
//!   timestamp, the first against the time of its first UUIDv7), a zigzag varint (an integer),
//!   a dictionary id (any other string or number up to 64 bytes of JSON text: actors, roles,
//!   actions, resource types and ids, bundles, key ids, ...), the JSON text inline (longer
//!   ones), or nothing at all: the top-level `tenant_id`, `seq` and `prev_hash` come from the
//!   caller ([`Context`]: the row's key and the chain index).
//! * The **dictionary** is append-only: `encode` returns the entries it added (the caller
//!   stores them in the same transaction as the receipt), and entry ids never change.
//!
//! Any JSON that is not canonical is stored as it is (the escape form), so every receipt the
//! service can sign has a compact form, and [`encode`] returns a compact form only after
//! decoding it gave back exactly the input bytes.
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::canonical::{canonicalize, cmp_utf16, parse_strict, write_number, write_string};
use crate::error::{Error, Result};

/// First byte of a compact receipt: the template form (v1).
const FORM_TEMPLATE: u8 = 1;
/// First byte of a compact receipt: the escape form (the bytes as given).
const FORM_RAW: u8 = 0;

/// Dictionary entry kinds (their first byte).
const ENTRY_FRAGMENT: u8 = b'F';
const ENTRY_TEMPLATE: u8 = b'T';

/// Template ops.
const OP_LIT: u8 = 0; // varint length, then the literal text
const H_FRAGMENT: u8 = 1; // varint dictionary id of a JSON text fragment
const H_UUID: u8 = 2; // 16 bytes
const H_HEX32: u8 = 3; // 32 bytes
const H_TIME: u8 = 4; // zigzag varint of microseconds, against the previous time
const H_SIG: u8 = 5; // 64 bytes (base64 in the text)
const H_INT: u8 = 6; // zigzag varint
const H_TENANT: u8 = 7; // the context's tenant id
const H_SEQ: u8 = 8; // the context's seq
const H_PREV: u8 = 9; // the context's prev hash
const H_INLINE: u8 = 10; // varint length, then the JSON text
const OP_SIG_BEGIN: u8 = 11; // the top-level `signature` member starts (not in the signed bytes)
const OP_SIG_END: u8 = 12; // ... and ends (its trailing comma included)
const H_UUID7: u8 = 13; // a UUIDv7 after the first: zigzag varint of its ms minus the first's, then its last 10 bytes

/// JSON text of a string or number up to this long goes in the dictionary; longer, inline.
const MAX_FRAGMENT: usize = 64;

/// What a receipt's row supplies: its tenant, its `seq` (the row's key) and, where the chain
/// index holds it, the signed-bytes hash of the previous receipt (its `prev_hash`).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub tenant_id: &'a str,
    pub seq: u64,
    pub prev_hash: Option<&'a [u8; 32]>,
}

/// A tenant's dictionary: append-only entries (JSON text fragments and templates), by id.
#[derive(Debug, Default, Clone)]
pub struct Dictionary {
    entries: Vec<Vec<u8>>,
    index: FxHashMap<Vec<u8>, u32>,
}

impl Dictionary {
    pub fn new() -> Self {
        Self::default()
    }

    /// A dictionary of stored entries, in id order.
    pub fn from_entries(entries: Vec<Vec<u8>>) -> Result<Self> {
        let mut d = Dictionary::new();
        for e in entries {
            if !matches!(e.first(), Some(&ENTRY_FRAGMENT) | Some(&ENTRY_TEMPLATE)) {
                return Err(Error::InvalidArgument(format!(
                    "dictionary entry {} has no kind",
                    d.len()
                )));
            }
            if d.index.contains_key(&e) {
                return Err(Error::InvalidArgument(format!(
                    "dictionary entry {} is a duplicate",
                    d.len()
                )));
            }
            d.index.insert(e.clone(), d.entries.len() as u32);
            d.entries.push(e);
        }
        Ok(d)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in id order (what is stored).
    pub fn entries(&self) -> &[Vec<u8>] {
        &self.entries
    }

    /// Drop every entry from id `len` on (entries added by receipts that were not committed).
    pub fn truncate(&mut self, len: usize) {
        for e in self.entries.drain(len.min(self.entries.len())..) {
            self.index.remove(&e);
        }
    }

    /// Stored bytes of the entries.
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(Vec::len).sum()
    }

    /// The id of `entry`, added when new (copied only then).
    fn intern(&mut self, entry: &[u8], added: &mut Vec<Vec<u8>>) -> u32 {
        if let Some(&id) = self.index.get(entry) {
            return id;
        }
        let id = self.entries.len() as u32;
        self.index.insert(entry.to_vec(), id);
        added.push(entry.to_vec());
        self.entries.push(entry.to_vec());
        id
    }

    fn get(&self, id: u64, kind: u8) -> Result<&[u8]> {
        match self.entries.get(id as usize) {
            Some(e) if e.first() == Some(&kind) => Ok(&e[1..]),
            Some(_) => Err(corrupt(format!(
                "dictionary entry {id} is not of the kind expected"
            ))),
            None => Err(corrupt(format!("dictionary entry {id} is missing"))),
        }
    }
}

fn corrupt(msg: String) -> Error {
    Error::InvalidReceipt(format!("compact receipt: {msg}"))
}

// ---- varints --------------------------------------------------------------------------------

pub(crate) fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| corrupt("truncated varint".into()))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| corrupt("truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

// ---- scalar forms -----------------------------------------------------------------------------

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The bytes of lowercase hex `s` (exactly `N` bytes), or None.
pub(crate) fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, p) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = hex_val(p[0])? << 4 | hex_val(p[1])?;
    }
    Some(out)
}

pub(crate) fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// A lowercase hyphenated UUID's 16 bytes.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut k = 0;
    for (from, to) in [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)] {
        for p in b[from..to].chunks_exact(2) {
            out[k] = hex_val(p[0])? << 4 | hex_val(p[1])?;
            k += 1;
        }
    }
    Some(out)
}

pub(crate) fn push_uuid(u: &[u8], out: &mut Vec<u8>) {
    push_hex(&u[..4], out);
    out.push(b'-');
    push_hex(&u[4..6], out);
    out.push(b'-');
    push_hex(&u[6..8], out);
    out.push(b'-');
    push_hex(&u[8..10], out);
    out.push(b'-');
    push_hex(&u[10..], out);
}

/// The millisecond timestamp of a UUIDv7 (None for other versions).
fn uuid7_ms(u: &[u8]) -> Option<i64> {
    (u[6] >> 4 == 7).then(|| u[..6].iter().fold(0i64, |acc, &b| acc << 8 | i64::from(b)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn push_digits(v: i64, width: usize, out: &mut Vec<u8>) {
    let mut buf = [b'0'; 8];
    let mut v = v;
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of microseconds since the epoch (years 1000-9999).
pub(crate) fn push_time(us: i64, out: &mut Vec<u8>) {
    let (days, rem) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
    let (y, m, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    push_digits(y, 4, out);
    out.push(b'-');
    push_digits(m, 2, out);
    out.push(b'-');
    push_digits(d, 2, out);
    out.push(b'T');
    push_digits(secs / 3600, 2, out);
    out.push(b':');
    push_digits(secs / 60 % 60, 2, out);
    out.push(b':');
    push_digits(secs % 60, 2, out);
    out.push(b'.');
    push_digits(rem % 1_000_000, 6, out);
    out.push(b'Z');
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.ffffffZ` (years 1000-9999), when
/// formatting them back gives `s` exactly.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if b[19] != b'.' || b[26] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, frac) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    if y < 1000
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let us = (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + frac;
    // rejects dates like 02-31 that would normalize: the day must survive the round trip
    (civil_from_days(us.div_euclid(86_400_000_000)) == (y, mo, d)).then_some(us)
}

/// The 64 bytes of a padded standard base64 Ed25519 signature.
fn parse_sig(s: &str) -> Option<[u8; 64]> {
    if s.len() != 88 || !s.ends_with("==") {
        return None;
    }
    let mut sig = [0u8; 66]; // decode_slice wants room for the padding's worth
    let n = B64.decode_slice(s, &mut sig).ok()?;
    if n != 64 {
        return None;
    }
    let mut back = [0u8; 88];
    B64.encode_slice(&sig[..64], &mut back).ok()?;
    (back == s.as_bytes()).then(|| sig[..64].try_into().expect("64 bytes"))
}

// ---- encoding -----------------------------------------------------------------------------------

/// A hole's value as it is stored.
#[derive(Clone, Copy)]
enum Hole {
    /// A dictionary entry, `Builder::frag[from..to]` (its first byte is ENTRY_FRAGMENT).
    Fragment(usize, usize),
    /// JSON text stored in the form, `Builder::frag[from..to]`.
    Inline(usize, usize),
    Uuid([u8; 16]),
    Hex32([u8; 32]),
    Time(i64),
    Sig([u8; 64]),
    Int(i64),
    Ctx,
}

struct Builder<'c> {
    ops: Vec<u8>,
    uuid_ops: Vec<usize>, // where in `ops` each H_UUID hole's op byte is
    lit: Vec<u8>,
    holes: Vec<Hole>,
    ctx: &'c Context<'c>,
    sig_marked: bool,
    /// The text of the fragment and inline holes, one after another (one buffer, not one each).
    frag: Vec<u8>,
}

/// The buffers of a `Builder` and of the decode check, kept per thread between receipts, so that
/// encoding one allocates only its compact form (and a new dictionary entry's copies).
#[derive(Default)]
struct Bufs {
    ops: Vec<u8>,
    uuid_ops: Vec<usize>,
    lit: Vec<u8>,
    holes: Vec<Hole>,
    frag: Vec<u8>,
    back: Vec<u8>,
}

/// Receipts larger than this do not leave their buffers behind in the thread.
const KEEP_BUFS_MAX: usize = 64 << 10;

thread_local! {
    static BUFS: std::cell::RefCell<Bufs> = std::cell::RefCell::new(Bufs::default());
}

impl Builder<'_> {
    /// Empty, as new: the template's entry tag first.
    fn reset(&mut self) {
        self.ops.clear();
        self.ops.push(ENTRY_TEMPLATE);
        self.uuid_ops.clear();
        self.lit.clear();
        self.holes.clear();
        self.frag.clear();
        self.sig_marked = false;
    }

    fn flush(&mut self) {
        if !self.lit.is_empty() {
            self.ops.push(OP_LIT);
            put_varint(self.lit.len() as u64, &mut self.ops);
            self.ops.extend_from_slice(&self.lit);
            self.lit.clear();
        }
    }

    /// A hole of kind `op`; returns where its op byte is in `ops`.
    fn hole(&mut self, op: u8, value: Hole) -> usize {
        self.flush();
        self.ops.push(op);
        self.holes.push(value);
        self.ops.len() - 1
    }

    /// A string or number whose JSON text `write` appends: a dictionary hole, or inline when it
    /// is long.
    fn fragment(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let from = self.frag.len();
        self.frag.push(ENTRY_FRAGMENT);
        write(&mut self.frag);
        let to = self.frag.len();
        if to - from - 1 <= MAX_FRAGMENT {
            self.hole(H_FRAGMENT, Hole::Fragment(from, to));
        } else {
            self.hole(H_INLINE, Hole::Inline(from + 1, to));
        }
    }

    fn string(&mut self, s: &str) {
        if let Some(u) = parse_uuid(s) {
            let at = self.hole(H_UUID, Hole::Uuid(u));
            self.uuid_ops.push(at);
        } else if let Some(h) = unhex::<32>(s.as_bytes()) {
            self.hole(H_HEX32, Hole::Hex32(h));
        } else if let Some(t) = parse_time(s) {
            self.hole(H_TIME, Hole::Time(t));
        } else if let Some(sig) = parse_sig(s) {
            self.hole(H_SIG, Hole::Sig(sig));
        } else {
            self.fragment(|out| write_string(s, out));
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.lit.extend_from_slice(b"null"),
            Value::Bool(true) => self.lit.extend_from_slice(b"true"),
            Value::Bool(false) => self.lit.extend_from_slice(b"false"),
            Value::String(s) => self.string(s),
            Value::Number(n) => match n.as_i64().filter(|i| i.unsigned_abs() <= 1 << 53) {
                Some(i) => {
                    self.hole(H_INT, Hole::Int(i));
                }
                None => self.fragment(|out| write_number(n, out)),
            },
            Value::Array(items) => {
                self.lit.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.lit.push(b',');
                    }
                    self.value(item);
                }
                self.lit.push(b']');
            }
            Value::Object(map) => self.object(map, false),
        }
    }

    fn object(&mut self, map: &Map<String, Value>, top: bool) {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| cmp_utf16(a.0, b.0));
        self.lit.push(b'{');
        let last = members.len().saturating_sub(1);
        let mut after_sig = false;
        for (i, (name, value)) in members.into_iter().enumerate() {
            if i > 0 && !after_sig {
                self.lit.push(b',');
            }
            after_sig = false;
            // `"signature":"…",` sits between markers: the signed bytes are the same text without it
            let sig = top
                && name == "signature"
                && i < last
                && matches!(value, Value::String(s) if parse_sig(s).is_some());
            if sig {
                self.flush();
                self.ops.push(OP_SIG_BEGIN);
                self.sig_marked = true;
            }
            write_string(name, &mut self.lit);
            self.lit.push(b':');
            match (top, name.as_str(), value) {
                (true, "tenant_id", Value::String(s)) if s == self.ctx.tenant_id => {
                    self.hole(H_TENANT, Hole::Ctx);
                }
                (true, "seq", Value::Number(n)) if n.as_u64() == Some(self.ctx.seq) => {
                    self.hole(H_SEQ, Hole::Ctx);
                }
                (true, "prev_hash", Value::String(s))
                    if self
                        .ctx
                        .prev_hash
                        .is_some_and(|p| unhex::<32>(s.as_bytes()).as_ref() == Some(p)) =>
                {
                    self.hole(H_PREV, Hole::Ctx);
                }
                _ => self.value(value),
            }
            if sig {
                self.lit.push(b','); // the separator before the next member, inside the markers
                self.flush();
                self.ops.push(OP_SIG_END);
                after_sig = true;
            }
        }
        self.lit.push(b'}');
    }
}

/// The fast path of `encode`: canonical JSON text read as it is, into the same template and holes the
/// walk of its parsed value gives. None (the caller parses) at anything it does not know for certain
/// to be canonical: a string with an escape or a control character, a number other than a plain
/// integer within 2^53, a member name that is not ASCII or not after the previous one, whitespace.
struct Scan<'s, 'b, 'c> {
    /// The receipt's text (valid UTF-8, checked once for the whole text) and its bytes.
    t: &'s str,
    s: &'s [u8],
    i: usize,
    b: &'b mut Builder<'c>,
}

impl<'s> Scan<'s, '_, '_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The text between the quotes of a string starting at `self.i` (no escapes, no control chars).
    /// Borrows the text, not the scan: the builder can take it while the scan goes on.
    fn raw_string(&mut self) -> Option<&'s str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.s[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        let t: &'s str = self.t;
        t.get(start..start + len) // both ends are next to a '"' byte: char boundaries
    }

    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(false),
            b'[' => {
                self.i += 1;
                self.b.lit.push(b'[');
                if self.peek()? != b']' {
                    loop {
                        self.value()?;
                        if self.peek()? == b',' {
                            self.i += 1;
                            self.b.lit.push(b',');
                        } else {
                            break;
                        }
                    }
                }
                self.eat(b']')?;
                self.b.lit.push(b']');
                Some(())
            }
            b'"' => {
                let s = self.raw_string()?;
                self.b.string(s);
                Some(())
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match self.peek()? {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.s[self.i..].starts_with(word).then_some(())?;
                self.i += word.len();
                self.b.lit.extend_from_slice(word);
                Some(())
            }
            _ => {
                let v = self.int()?;
                self.b.hole(H_INT, Hole::Int(v));
                Some(())
            }
        }
    }

    /// A plain integer (`-?(0|[1-9][0-9]*)`, at most 2^53 in magnitude, not followed by `.`/`e`).
    fn int(&mut self) -> Option<i64> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let digits = self.s[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 16 || (digits > 1 && self.s[self.i] == b'0') {
            return None;
        }
        let mag: i64 = std::str::from_utf8(&self.s[self.i..self.i + digits])
            .ok()?
            .parse()
            .ok()?;
        self.i += digits;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) || mag > 1 << 53 || (neg && mag == 0) {
            return None;
        }
        Some(if neg { -mag } else { mag })
    }

    fn object(&mut self, top: bool) -> Option<()> {
        self.eat(b'{')?;
        self.b.lit.push(b'{');
        let mut prev: Option<(usize, usize)> = None; // the previous name, as a range of `s`
        let mut after_sig = false;
        let mut first = true;
        if self.peek()? != b'}' {
            loop {
                let name_at = self.i + 1;
                let name = self.raw_string()?;
                if !name.is_ascii() {
                    return None; // UTF-16 order differs from byte order only beyond ASCII: the parse decides
                }
                if let Some((a, b)) = prev {
                    if self.s[a..b] >= *name.as_bytes() {
                        return None;
                    }
                }
                prev = Some((name_at, name_at + name.len()));
                self.eat(b':')?;
                if !first && !after_sig {
                    self.b.lit.push(b',');
                }
                first = false;
                after_sig = false;
                // `"signature":"…",` between markers (see Builder::object)
                let sig = top && name == "signature" && self.sig_then_more();
                if sig {
                    self.b.flush();
                    self.b.ops.push(OP_SIG_BEGIN);
                    self.b.sig_marked = true;
                }
                self.b.lit.push(b'"');
                self.b.lit.extend_from_slice(name.as_bytes());
                self.b.lit.extend_from_slice(b"\":");
                self.member(top, name)?;
                if sig {
                    self.b.lit.push(b',');
                    self.b.flush();
                    self.b.ops.push(OP_SIG_END);
                    after_sig = true;
                }
                if self.peek()? == b',' {
                    self.i += 1;
                } else {
                    break;
                }
            }
        }
        self.eat(b'}')?;
        self.b.lit.push(b'}');
        const SIG_NAME: &[u8] = b"\"signature\":";
        if top && !self.b.sig_marked && self.s.windows(SIG_NAME.len()).any(|w| w == SIG_NAME) {
            return None; // a top-level signature the markers could not cut out: the parse decides
        }
        Some(())
    }

    /// At a top-level `signature` value: is it a base64 signature followed by another member?
    fn sig_then_more(&self) -> bool {
        let v = &self.s[self.i..];
        v.len() > 91
            && v[0] == b'"'
            && v[89] == b'"'
            && v[90] == b','
            && std::str::from_utf8(&v[1..89])
                .ok()
                .and_then(parse_sig)
                .is_some()
    }

    fn member(&mut self, top: bool, name: &str) -> Option<()> {
        if top {
            let ctx = self.b.ctx;
            match (name, self.peek()?) {
                ("tenant_id", b'"') => {
                    let save = self.i;
                    let s = self.raw_string()?;
                    if s == ctx.tenant_id {
                        self.b.hole(H_TENANT, Hole::Ctx);
                        return Some(());
                    }
                    self.i = save;
                }
                ("seq", _) => {
                    let save = self.i;
                    if let Some(v) = self.int() {
                        if u64::try_from(v).ok() == Some(ctx.seq) {
                            self.b.hole(H_SEQ, Hole::Ctx);
                            return Some(());
                        }
                    }
                    self.i = save;
                }
                ("prev_hash", b'"') => {
                    let save = self.i;
                    let s = self.raw_string()?;
                    if ctx
                        .prev_hash
                        .is_some_and(|p| unhex::<32>(s.as_bytes()).as_ref() == Some(p))
                    {
                        self.b.hole(H_PREV, Hole::Ctx);
                        return Some(());
                    }
                    self.i = save;
                }
                _ => {}
            }
        }
        self.value()
    }
}

/// The compact form of the stored receipt `json` (its canonical bytes, `signature` included),
/// adding to `dict` what it lacks (those entries are appended to `added`, in id order). The
/// result decodes to exactly `json` with the same dictionary and context; a receipt that is
/// not canonical JSON (or does not decode back) is kept whole in the escape form.
pub fn encode(
    dict: &mut Dictionary,
    json: &[u8],
    ctx: &Context<'_>,
    added: &mut Vec<Vec<u8>>,
) -> Vec<u8> {
    encode_with(dict, json, ctx, added, true)
}

/// `encode`, reading the text directly when `fast` allows it (see [`Scan`]), else through the parse.
fn encode_with(
    dict: &mut Dictionary,
    json: &[u8],
    ctx: &Context<'_>,
    added: &mut Vec<Vec<u8>>,
    fast: bool,
) -> Vec<u8> {
    let raw = || {
        let mut out = Vec::with_capacity(json.len() + 1);
        out.push(FORM_RAW);
        out.extend_from_slice(json);
        out
    };
    let mut bufs = BUFS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let mut b = Builder {
        ops: std::mem::take(&mut bufs.ops),
        uuid_ops: std::mem::take(&mut bufs.uuid_ops),
        lit: std::mem::take(&mut bufs.lit),
        holes: std::mem::take(&mut bufs.holes),
        ctx,
        sig_marked: false,
        frag: std::mem::take(&mut bufs.frag),
    };
    b.reset();
    // The fast path reads the canonical text as it is (receipts as the signer writes them); anything
    // it does not know for certain (escapes, fractions, exponents, non-ASCII names) takes the parse.
    let fast = fast
        && match std::str::from_utf8(json) {
            Ok(t) => {
                let mut scan = Scan {
                    t,
                    s: json,
                    i: 0,
                    b: &mut b,
                };
                scan.object(true).is_some() && scan.i == json.len()
            }
            Err(_) => false,
        };
    if !fast {
        let Ok(Value::Object(map)) = parse_strict(json) else {
            return raw();
        };
        b.reset();
        b.object(&map, true);
        if map.contains_key("signature") && !b.sig_marked {
            return raw(); // a signature the markers cannot cut out: the signed bytes come from the JSON
        }
    }
    b.flush();
    // The first UUIDv7 is stored whole: its time is the base of the receipt's times and of every
    // later UUIDv7, which keeps only its time's delta from it and its other 10 bytes (op H_UUID7).
    let mut base_ms = None;
    let mut k = 0;
    for h in &b.holes {
        if let Hole::Uuid(u) = h {
            if let Some(ms) = uuid7_ms(&u[..]) {
                if base_ms.is_some() {
                    b.ops[b.uuid_ops[k]] = H_UUID7;
                } else {
                    base_ms = Some(ms);
                }
            }
            k += 1;
        }
    }
    let base_ms = base_ms.unwrap_or(0);
    let mut base = base_ms * 1000;
    let (dict_len, added_len) = (dict.len(), added.len());
    let mut out = Vec::with_capacity(256);
    out.push(FORM_TEMPLATE);
    put_varint(u64::from(dict.intern(&b.ops, added)), &mut out);
    let mut uuid_i = 0;
    for h in &b.holes {
        match *h {
            Hole::Fragment(from, to) => {
                put_varint(u64::from(dict.intern(&b.frag[from..to], added)), &mut out)
            }
            Hole::Inline(from, to) => {
                put_varint((to - from) as u64, &mut out);
                out.extend_from_slice(&b.frag[from..to]);
            }
            Hole::Uuid(u) => {
                if b.ops[b.uuid_ops[uuid_i]] == H_UUID7 {
                    put_varint(zigzag(uuid7_ms(&u).expect("v7") - base_ms), &mut out);
                    out.extend_from_slice(&u[6..]);
                } else {
                    out.extend_from_slice(&u);
                }
                uuid_i += 1;
            }
            Hole::Hex32(h) => out.extend_from_slice(&h),
            Hole::Sig(s) => out.extend_from_slice(&s),
            Hole::Time(t) => {
                put_varint(zigzag(t - base), &mut out);
                base = t;
            }
            Hole::Int(i) => put_varint(zigzag(i), &mut out),
            Hole::Ctx => {}
        }
    }
    let mut back = std::mem::take(&mut bufs.back);
    back.clear();
    let same = decode_into(dict, &out, ctx, false, &mut back).is_ok() && back == json;
    // kept for the next receipt unless this one was unusually large (its buffers are let go)
    BUFS.with(|c| {
        if json.len() > KEEP_BUFS_MAX {
            return;
        }
        *c.borrow_mut() = Bufs {
            ops: b.ops,
            uuid_ops: b.uuid_ops,
            lit: b.lit,
            holes: b.holes,
            frag: b.frag,
            back,
        }
    });
    if same {
        out
    } else {
        // not canonical (or, not expected, a form that does not decode back): kept whole, and the
        // entries this call added are taken back
        dict.truncate(dict_len);
        added.truncate(added_len);
        raw()
    }
}

/// The stored receipt (`signed == false`: its canonical bytes, `signature` included) or its
/// signed bytes (`signed == true`: without the `signature` member) of the compact receipt
/// `data`, appended to `out`.
pub fn decode_into(
    dict: &Dictionary,
    data: &[u8],
    ctx: &Context<'_>,
    signed: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    match data.first() {
        Some(&FORM_RAW) => {
            let json = &data[1..];
            if signed {
                let Value::Object(mut map) = parse_strict(json)? else {
                    return Err(corrupt("escaped receipt is not an object".into()));
                };
                map.remove("signature");
                out.extend_from_slice(&canonicalize(&Value::Object(map)));
            } else {
                out.extend_from_slice(json);
            }
            Ok(())
        }
        Some(&FORM_TEMPLATE) => {
            let mut r = Reader { buf: data, pos: 1 };
            let template = dict.get(r.varint()?, ENTRY_TEMPLATE)?;
            render(dict, template, &mut r, ctx, signed, out)?;
            if !r.done() {
                return Err(corrupt("trailing bytes".into()));
            }
            Ok(())
        }
        _ => Err(corrupt("unknown form".into())),
    }
}

fn render(
    dict: &Dictionary,
    template: &[u8],
    r: &mut Reader<'_>,
    ctx: &Context<'_>,
    signed: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    // Pass 1 finds the time base (the first UUIDv7 among the holes) without writing anything.
    let mut base_ms: Option<i64> = None;
    {
        let mut t = Reader {
            buf: template,
            pos: 0,
        };
        let mut v = Reader {
            buf: r.buf,
            pos: r.pos,
        };
        while !t.done() {
            match t.take(1)?[0] {
                OP_LIT => {
                    let n = t.varint()? as usize;
                    t.take(n)?;
                }
                H_UUID => {
                    let u = v.take(16)?;
                    if base_ms.is_none() {
                        base_ms = uuid7_ms(u);
                    }
                }
                H_FRAGMENT | H_TIME | H_INT => {
                    v.varint()?;
                }
                H_UUID7 => {
                    v.varint()?;
                    v.take(10)?;
                }
                H_INLINE => {
                    let n = v.varint()? as usize;
                    v.take(n)?;
                }
                H_HEX32 => {
                    v.take(32)?;
                }
                H_SIG => {
                    v.take(64)?;
                }
                H_TENANT | H_SEQ | H_PREV | OP_SIG_BEGIN | OP_SIG_END => {}
                op => return Err(corrupt(format!("unknown template op {op}"))),
            }
        }
    }
    let mut time = base_ms.unwrap_or(0) * 1000;
    let mut t = Reader {
        buf: template,
        pos: 0,
    };
    let mut skip_from = None;
    while !t.done() {
        match t.take(1)?[0] {
            OP_LIT => {
                let n = t.varint()? as usize;
                out.extend_from_slice(t.take(n)?);
            }
            H_FRAGMENT => out.extend_from_slice(dict.get(r.varint()?, ENTRY_FRAGMENT)?),
            H_INLINE => {
                let n = r.varint()? as usize;
                out.extend_from_slice(r.take(n)?);
            }
            H_UUID => {
                out.push(b'"');
                push_uuid(r.take(16)?, out);
                out.push(b'"');
            }
            H_UUID7 => {
                let ms = base_ms
                    .ok_or_else(|| corrupt("a short UUIDv7 without a first one".into()))?
                    .checked_add(unzigzag(r.varint()?))
                    .filter(|ms| (0..1 << 48).contains(ms))
                    .ok_or_else(|| corrupt("UUIDv7 time out of range".into()))?;
                let mut u = [0u8; 16];
                u[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
                u[6..].copy_from_slice(r.take(10)?);
                if uuid7_ms(&u).is_none() {
                    return Err(corrupt("short UUID is not a v7".into()));
                }
                out.push(b'"');
                push_uuid(&u, out);
                out.push(b'"');
            }
            H_HEX32 => {
                out.push(b'"');
                push_hex(r.take(32)?, out);
                out.push(b'"');
            }
            H_SIG => {
                out.push(b'"');
                let mut s = [0u8; 88];
                B64.encode_slice(r.take(64)?, &mut s)
                    .map_err(|e| corrupt(e.to_string()))?;
                out.extend_from_slice(&s);
                out.push(b'"');
            }
            H_TIME => {
                time = time
                    .checked_add(unzigzag(r.varint()?))
                    .ok_or_else(|| corrupt("time out of range".into()))?;
                if !(-30_610_224_000_000_000..=253_402_300_799_999_999).contains(&time) {
                    return Err(corrupt("time out of range".into()));
                }
                out.push(b'"');
                push_time(time, out);
                out.push(b'"');
            }
            H_INT => {
                let i = unzigzag(r.varint()?);
                out.extend_from_slice(i.to_string().as_bytes());
            }
            H_TENANT => write_string(ctx.tenant_id, out),
            H_SEQ => out.extend_from_slice(ctx.seq.to_string().as_bytes()),
            H_PREV => {
                let p = ctx
                    .prev_hash
                    .ok_or_else(|| corrupt("prev_hash elided but not given".into()))?;
                out.push(b'"');
                push_hex(p, out);
                out.push(b'"');
            }
            OP_SIG_BEGIN => skip_from = signed.then_some(out.len()),
            OP_SIG_END => {
                if let Some(at) = skip_from.take() {
                    out.truncate(at);
                }
            }
            op => return Err(corrupt(format!("unknown template op {op}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::{sign_batch, SigningKey, GENESIS};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn signed_bytes(full: &[u8]) -> Vec<u8> {
        let Value::Object(mut m) = parse_strict(full).unwrap() else {
            panic!()
        };
        m.remove("signature");
        canonicalize(&Value::Object(m))
    }

    fn receipt(i: u64, rng: &mut StdRng) -> Map<String, Value> {
        let evidence: Vec<Value> = (0..rng.gen_range(0..4))
            .map(|_| json!({"hash": hex32(&rng.gen()), "size": rng.gen_range(1..10_000_000u64)}))
            .collect();
        let approvals: Vec<Value> = (0..rng.gen_range(0..3))
            .map(|k| {
                json!({"actor": format!("user:a{k}"), "at": "2026-12-07T10:11:12.000123Z",
                            "receipt_id": crate::receipt::uuid7()})
            })
            .collect();
        let action = ["deploy", "graph.write", "approval.grant"][rng.gen_range(0..3)];
        let v = json!({
            "receipt_id": crate::receipt::uuid7(), "tenant_id": "acme",
            "executed_at": format!("2026-12-07T10:11:{:02}.{:06}Z", i % 60, rng.gen_range(0..1_000_000)),
            "issued_at": "2026-12-07T10:11:59.999999Z",
            "actor": {"id": format!("user:u{}", rng.gen_range(0..20)), "roles": ["operator"]},
            "action": action,
            "resource": {"type": "service", "id": format!("r{}", rng.gen_range(0..100_000))},
            "policy": if i.is_multiple_of(7) { Value::Null } else {
                json!({"bundle": "authz", "revision": "rev-3", "decision_id": crate::receipt::uuid7(), "decision": "allow"}) },
            "preflight_id": crate::receipt::uuid7(),
            "request_hash": hex32(&rng.gen()), "result_hash": hex32(&rng.gen()),
            "approvals": approvals, "evidence": evidence,
        });
        let Value::Object(m) = v else { unreachable!() };
        m
    }

    fn chain(n: usize, seed: u64) -> Vec<(u64, [u8; 32], Vec<u8>)> {
        let key = SigningKey::from_seed(&[7; 32]);
        let mut rng = StdRng::seed_from_u64(seed);
        let maps = (0..n as u64).map(|i| receipt(i, &mut rng)).collect();
        let (signed, _) = sign_batch(&key, GENESIS, 1, maps).unwrap();
        let mut prev = GENESIS;
        signed
            .into_iter()
            .map(|s| {
                let p = prev;
                prev = s.signed_hash;
                (s.seq, p, s.json)
            })
            .collect()
    }

    #[test]
    fn signed_receipts_round_trip_byte_exact_and_small() {
        let mut dict = Dictionary::new();
        let mut total = (0usize, 0usize);
        let mut head = GENESIS;
        for (seq, prev, json) in chain(500, 1) {
            let ctx = Context {
                tenant_id: "acme",
                seq,
                prev_hash: Some(&prev),
            };
            let mut added = Vec::new();
            let c = encode(&mut dict, &json, &ctx, &mut added);
            assert_eq!(c[0], FORM_TEMPLATE);
            let mut full = Vec::new();
            decode_into(&dict, &c, &ctx, false, &mut full).unwrap();
            assert_eq!(full, json);
            let mut signed = Vec::new();
            decode_into(&dict, &c, &ctx, true, &mut signed).unwrap();
            assert_eq!(signed, signed_bytes(&json));
            assert_eq!(prev, head); // the reconstructed signed bytes link the chain
            head = *blake3::hash(&signed).as_bytes();
            total.0 += json.len();
            total.1 += c.len();
        }
        // a quarter of the JSON or less once the dictionary is warm
        assert!(total.1 * 3 < total.0, "{total:?}");
        eprintln!(
            "500 receipts: {} B of JSON -> {} B compact (+{} B of dictionary)",
            total.0,
            total.1,
            dict.bytes()
        );
        // the same dictionary, stored and loaded, decodes the same
        let again = Dictionary::from_entries(dict.entries().to_vec()).unwrap();
        let (seq, prev, json) = chain(1, 1).remove(0);
        let ctx = Context {
            tenant_id: "acme",
            seq,
            prev_hash: Some(&prev),
        };
        let mut d2 = again.clone();
        let c = encode(&mut d2, &json, &ctx, &mut Vec::new());
        let mut out = Vec::new();
        decode_into(&d2, &c, &ctx, false, &mut out).unwrap();
        assert_eq!(out, json);
    }

    #[test]
    fn the_fast_path_gives_the_parse_path_forms_and_entries() {
        let (mut fast, mut slow) = (Dictionary::new(), Dictionary::new());
        for (seq, prev, json) in chain(300, 5) {
            let ctx = Context {
                tenant_id: "acme",
                seq,
                prev_hash: if seq % 2 == 0 { Some(&prev) } else { None },
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let f = encode_with(&mut fast, &json, &ctx, &mut a, true);
            let s = encode_with(&mut slow, &json, &ctx, &mut b, false);
            assert_eq!(f, s);
            assert_eq!(a, b);
        }
        // what the fast path leaves to the parse: escapes, fractions, exponents, non-ASCII names
        let ctx = Context {
            tenant_id: "t",
            seq: 1,
            prev_hash: None,
        };
        for v in [
            json!({"a": "x\"y"}),
            json!({"a": 1.5}),
            json!({"\u{e9}": 1}),
            json!({"a": [1, {"b": null}], "c": -3}),
        ] {
            let text = canonicalize(&v);
            let (mut d1, mut d2) = (Dictionary::new(), Dictionary::new());
            assert_eq!(
                encode_with(&mut d1, &text, &ctx, &mut Vec::new(), true),
                encode_with(&mut d2, &text, &ctx, &mut Vec::new(), false)
            );
        }
    }

    #[test]
    fn context_fields_are_elided_only_when_they_match() {
        let (seq, prev, json) = chain(3, 2).remove(2);
        let mut dict = Dictionary::new();
        let with = encode(
            &mut dict,
            &json,
            &Context {
                tenant_id: "acme",
                seq,
                prev_hash: Some(&prev),
            },
            &mut Vec::new(),
        );
        let other = [1u8; 32];
        let without = encode(
            &mut dict,
            &json,
            &Context {
                tenant_id: "other",
                seq: seq + 1,
                prev_hash: Some(&other),
            },
            &mut Vec::new(),
        );
        assert!(with.len() + 32 <= without.len());
        for (c, ctx) in [
            (
                &with,
                Context {
                    tenant_id: "acme",
                    seq,
                    prev_hash: Some(&prev),
                },
            ),
            (
                &without,
                Context {
                    tenant_id: "other",
                    seq: seq + 1,
                    prev_hash: Some(&other),
                },
            ),
        ] {
            let mut out = Vec::new();
            decode_into(&dict, c, &ctx, false, &mut out).unwrap();
            assert_eq!(out, json);
        }
        // an elided prev_hash needs the context's
        let mut out = Vec::new();
        assert!(decode_into(
            &dict,
            &with,
            &Context {
                tenant_id: "acme",
                seq,
                prev_hash: None
            },
            false,
            &mut out
        )
        .is_err());
    }

    #[test]
    fn unusual_values_and_non_canonical_input() {
        let ctx = Context {
            tenant_id: "t",
            seq: 1,
            prev_hash: None,
        };
        let cases: Vec<Value> = vec![
            json!({"a": "h\u{e9}llo \u{1f600} \"q\" \\ \n\u{1}", "b": 1.5, "c": -0.0, "d": 1e300, "e": 9007199254740993u64,
                   "f": -9007199254740992i64, "g": [true, false, null, [], {}], "h": "x".repeat(300), "seq": 2,
                   "tenant_id": "u", "signature": "not base64", "signer": {}}),
            json!({"t": ["2026-02-31T00:00:00.000000Z", "2026-02-28T23:59:59.999999Z", "1970-01-01T00:00:00.000000Z",
                         "9999-12-31T23:59:59.999999Z", "2026-12-07T10:11:12.123Z", "2026-12-07T10:11:12.123456+00:00"],
                   "u": ["01890a5d-ac96-774b-bcce-b302099a8057", "01890A5D-AC96-774B-BCCE-B302099A8057", "not-a-uuid"],
                   "h": ["ab".repeat(32), "AB".repeat(32), "ab".repeat(31)]}),
            json!({"\u{e000}": 1, "\u{1f600}": 2, "signature": "A".repeat(86) + "==", "z": 0}),
            json!({"action": "x", "signature": "A".repeat(86) + "=="}),
        ];
        for v in cases {
            let json = canonicalize(&v);
            let mut dict = Dictionary::new();
            let c = encode(&mut dict, &json, &ctx, &mut Vec::new());
            let mut out = Vec::new();
            decode_into(&dict, &c, &ctx, false, &mut out).unwrap();
            assert_eq!(out, json, "{}", String::from_utf8_lossy(&json));
            let mut signed = Vec::new();
            decode_into(&dict, &c, &ctx, true, &mut signed).unwrap();
            assert_eq!(signed, signed_bytes(&json));
        }
        // not canonical (spaces, member order): kept as given
        let mut dict = Dictionary::new();
        for raw in [
            &b"{\"b\": 1, \"a\": 2}"[..],
            b"[1,2]",
            b"{\"a\":1e2}",
            b"not json",
        ] {
            let c = encode(&mut dict, raw, &ctx, &mut Vec::new());
            assert_eq!(c[0], FORM_RAW);
            assert!(dict.is_empty(), "an escaped receipt adds no entry");
            let mut out = Vec::new();
            decode_into(&dict, &c, &ctx, false, &mut out).unwrap();
            assert_eq!(out, raw);
        }
    }

    #[test]
    fn corrupt_compact_forms_are_errors_not_panics() {
        let (seq, prev, json) = chain(1, 3).remove(0);
        let ctx = Context {
            tenant_id: "acme",
            seq,
            prev_hash: Some(&prev),
        };
        let mut dict = Dictionary::new();
        let c = encode(&mut dict, &json, &ctx, &mut Vec::new());
        let mut rng = StdRng::seed_from_u64(4);
        for cut in 0..c.len() {
            let _ = decode_into(&dict, &c[..cut], &ctx, false, &mut Vec::new());
        }
        for _ in 0..2000 {
            let mut bad = c.clone();
            let i = rng.gen_range(0..bad.len());
            bad[i] ^= 1 << rng.gen_range(0..8);
            let mut out = Vec::new();
            if decode_into(&dict, &bad, &ctx, false, &mut out).is_ok() {
                assert_ne!(out, json); // a flipped bit never decodes to the original
            }
        }
        assert!(decode_into(&Dictionary::new(), &c, &ctx, false, &mut Vec::new()).is_err());
        assert!(Dictionary::from_entries(vec![b"Fx".to_vec(), b"Fx".to_vec()]).is_err());
        assert!(Dictionary::from_entries(vec![b"?".to_vec()]).is_err());
    }

    #[test]
    fn time_and_varint_forms() {
        for us in [
            0i64,
            1,
            -1,
            1_733_500_000_123_456,
            253_402_300_799_999_999,
            -30_610_224_000_000_000,
        ] {
            let mut s = Vec::new();
            push_time(us, &mut s);
            assert_eq!(
                parse_time(std::str::from_utf8(&s).unwrap()),
                Some(us),
                "{}",
                String::from_utf8_lossy(&s)
            );
        }
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varint(zigzag(v), &mut b);
            let mut r = Reader { buf: &b, pos: 0 };
            assert_eq!(unzigzag(r.varint().unwrap()), v);
            assert!(r.done());
        }
    }

    fn hex32(b: &[u8; 32]) -> String {
        crate::receipt::hex32(b)
    }
}

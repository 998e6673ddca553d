//! Receipt packs (docs/receipts.md, "Packs"): a run of consecutive compact receipts of one tenant
//! stored as one value under the key of its first `seq`, with a table of end offsets so that one
//! receipt is sliced out (and then decoded) without touching its neighbours.
//!
//! ```text
//! 0x02 | count: u16 LE | ends: count x u16 LE | the forms, concatenated
//! 0x03 | prev_hash: 32 bytes | count: u16 LE | ends: count x u16 LE | the forms   (a chain pack)
//! ```
//!
//! `ends[i]` is where form `i` ends, counted from the first byte after the table; form `i` starts
//! where form `i - 1` ends (0 for the first). Each form is a compact receipt as
//! [`super::codec::encode`] returns it (template or escape form), decoded with `seq = first + i`.
//!
//! In a **chain pack** every form was encoded with its `prev_hash` elided (the codec's context
//! gave it): the header holds the first form's, and form `i`'s is the BLAKE3 of form `i - 1`'s
//! signed bytes, so reading form `i` decodes the forms before it in the pack (at most a page of
//! them) to hash them. That saves the 32 bytes of every receipt but a pack's first; only the
//! issuer writes chain packs (it signed the chain just before, so every link holds by
//! construction). A form too big for a pack is a chain pack of one, over the budget.
//!
//! Why: a value of one receipt (~260 bytes) is an LMDB node inside a leaf page, and a leaf page
//! that a key lands inside is split in half. A multi-tenant issuer appends inside the tree at
//! every tenant's chain tail, so such leaves end up a little over half full. A pack filled up to a
//! *budget* of one overflow page (page size minus its 16-byte header) takes whole pages of its
//! own whatever order packs are written in, and leaves only a small node in the leaf.
use crate::error::{Error, Result};

/// First byte of a pack value (a single compact receipt starts with 0 or 1, a full one with `{`).
pub const FORM_PACK: u8 = 2;
/// First byte of a chain pack (forms with `prev_hash` elided; the header holds the first's).
pub const FORM_CHAIN: u8 = 3;
/// The budget of a value that fills one 4 KiB LMDB overflow page exactly.
pub const BUDGET_4K: usize = 4096 - 16;
const HEAD: usize = 3;

fn corrupt(msg: &str) -> Error {
    Error::InvalidReceipt(format!("receipt pack: {msg}"))
}

/// A parsed pack: its table and its data.
pub struct Pack<'a> {
    ends: &'a [u8],
    data: &'a [u8],
    prev: Option<&'a [u8; 32]>,
}

impl<'a> Pack<'a> {
    /// Parse a pack value (checks the header and that the table fits; forms are sliced lazily).
    pub fn parse(value: &'a [u8]) -> Result<Self> {
        let (head, prev) = match value.first() {
            Some(&FORM_PACK) => (HEAD, None),
            Some(&FORM_CHAIN) if value.len() >= HEAD + 32 => {
                (HEAD + 32, Some(value[1..33].try_into().expect("32 bytes")))
            }
            _ => return Err(corrupt("not a pack")),
        };
        if value.len() < head {
            return Err(corrupt("not a pack"));
        }
        let count = u16::from_le_bytes([value[head - 2], value[head - 1]]) as usize;
        if count == 0 {
            return Err(corrupt("empty"));
        }
        let table = head + 2 * count;
        if value.len() < table {
            return Err(corrupt("table cut short"));
        }
        let pack = Self { ends: &value[head..table], data: &value[table..], prev };
        if pack.end(count - 1) != pack.data.len() {
            return Err(corrupt("last end is not the data's length"));
        }
        Ok(pack)
    }

    /// A chain pack's first `prev_hash` (None for a pack of forms that carry their own).
    pub fn prev(&self) -> Option<&'a [u8; 32]> {
        self.prev
    }

    /// How many receipts it holds.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Never true for a parsed pack (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn end(&self, i: usize) -> usize {
        u16::from_le_bytes([self.ends[2 * i], self.ends[2 * i + 1]]) as usize
    }

    /// Form `i` (`None` past the end).
    pub fn get(&self, i: usize) -> Result<Option<&'a [u8]>> {
        if i >= self.len() {
            return Ok(None);
        }
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let end = self.end(i);
        if start > end || end > self.data.len() {
            return Err(corrupt("ends out of order"));
        }
        Ok(Some(&self.data[start..end]))
    }

    /// Every form, in order.
    pub fn forms(&self) -> Result<Vec<&'a [u8]>> {
        (0..self.len()).map(|i| self.get(i).map(|f| f.expect("in range"))).collect()
    }
}

/// Bytes a pack of forms of these lengths takes (a chain pack: `chain`).
fn packed_len(forms: usize, data: usize, chain: bool) -> usize {
    HEAD + if chain { 32 } else { 0 } + 2 * forms + data
}

fn build(forms: &[&[u8]], prev: Option<&[u8; 32]>) -> Vec<u8> {
    let data: usize = forms.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(packed_len(forms.len(), data, prev.is_some()));
    match prev {
        Some(p) => {
            out.push(FORM_CHAIN);
            out.extend_from_slice(p);
        }
        None => out.push(FORM_PACK),
    }
    out.extend_from_slice(&(forms.len() as u16).to_le_bytes());
    let mut end = 0usize;
    for f in forms {
        end += f.len();
        out.extend_from_slice(&(end as u16).to_le_bytes());
    }
    for f in forms {
        out.extend_from_slice(f);
    }
    out
}

/// One value to store: the index (into the forms given to [`extend`]) of its first receipt, or
/// `-n` for the open pack rewritten with its `n` receipts first, and the value.
pub type Row = (i64, Vec<u8>);

/// Pack `forms` (consecutive receipts) after `open` (the pack ending right before them, if it is
/// to take more): fill `open` and then new packs up to `budget` bytes each. With `prevs` (each
/// form's `prev_hash`, the forms encoded with it elided) the packs are chain packs, `open` must
/// be one, and a form too big for a pack is a chain pack of one; without, a form that does not
/// fit a pack alone (more than `budget - 5` bytes) is returned as a single row, itself.
pub fn extend(open: Option<&[u8]>, forms: &[&[u8]], prevs: Option<&[[u8; 32]]>, budget: usize) -> Result<Vec<Row>> {
    let budget = budget.min(u16::MAX as usize);
    let chain = prevs.is_some();
    if prevs.is_some_and(|p| p.len() != forms.len()) {
        return Err(corrupt("one prev_hash per form"));
    }
    let mut rows = Vec::new();
    let mut cur: Vec<&[u8]> = Vec::new();
    let mut cur_start: i64 = 0;
    let mut cur_data = 0usize;
    let mut cur_prev: Option<[u8; 32]> = None;
    if let Some(v) = open {
        let pack = Pack::parse(v)?;
        if pack.prev.is_some() != chain {
            return Err(corrupt("the open pack is of the other kind"));
        }
        cur = pack.forms()?;
        cur_data = pack.data.len();
        cur_start = -(cur.len() as i64);
        cur_prev = pack.prev.copied();
    }
    let opened = cur.len();
    // The pack being filled is stored, unless it is `open` with nothing added (already stored).
    let flush = |rows: &mut Vec<Row>, cur: &mut Vec<&[u8]>, start: i64, prev: Option<&[u8; 32]>| {
        if !cur.is_empty() && (start >= 0 || cur.len() > opened) {
            rows.push((start, build(cur, prev)));
        }
        cur.clear();
    };
    for (i, f) in forms.iter().enumerate() {
        let prev_i = prevs.map(|p| p[i]);
        if packed_len(1, f.len(), chain) > budget {
            flush(&mut rows, &mut cur, cur_start, cur_prev.as_ref());
            cur_data = 0;
            rows.push((i as i64, if chain { build(&[f], prev_i.as_ref()) } else { f.to_vec() }));
            continue;
        }
        if !cur.is_empty() && packed_len(cur.len() + 1, cur_data + f.len(), chain) > budget {
            flush(&mut rows, &mut cur, cur_start, cur_prev.as_ref());
            cur_data = 0;
        }
        if cur.is_empty() {
            cur_start = i as i64;
            cur_prev = prev_i;
        }
        cur.push(f);
        cur_data += f.len();
    }
    flush(&mut rows, &mut cur, cur_start, cur_prev.as_ref());
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![1u8; len + i % 7]).collect()
    }

    fn expand(rows: &[Row]) -> Vec<(i64, Vec<u8>)> {
        let mut out = Vec::new();
        for (start, v) in rows {
            if v[0] == FORM_PACK || v[0] == FORM_CHAIN {
                let p = Pack::parse(v).unwrap();
                for (k, f) in p.forms().unwrap().into_iter().enumerate() {
                    out.push((start + k as i64, f.to_vec()));
                }
            } else {
                out.push((*start, v.clone()));
            }
        }
        out
    }

    #[test]
    fn packs_fill_the_budget_and_slice_back() {
        let fs = forms(100, 250);
        let refs: Vec<&[u8]> = fs.iter().map(|f| f.as_slice()).collect();
        let rows = extend(None, &refs, None, BUDGET_4K).unwrap();
        assert!(rows.len() > 1);
        for (_, v) in &rows[..rows.len() - 1] {
            assert!(v.len() <= BUDGET_4K && v.len() + 260 + 2 > BUDGET_4K, "{}", v.len());
        }
        let back = expand(&rows);
        assert_eq!(back.len(), 100);
        for (i, (seq, f)) in back.iter().enumerate() {
            assert_eq!(*seq, i as i64);
            assert_eq!(f, &fs[i]);
        }
        let p = Pack::parse(&rows[1].1).unwrap();
        assert_eq!(p.get(p.len()).unwrap(), None);
    }

    #[test]
    fn the_open_pack_takes_more_first() {
        let fs = forms(3, 250);
        let refs: Vec<&[u8]> = fs.iter().map(|f| f.as_slice()).collect();
        let open = extend(None, &refs, None, BUDGET_4K).unwrap();
        assert_eq!(open.len(), 1);
        let more = forms(30, 250);
        let mrefs: Vec<&[u8]> = more.iter().map(|f| f.as_slice()).collect();
        let rows = extend(Some(&open[0].1), &mrefs, None, BUDGET_4K).unwrap();
        assert_eq!(rows[0].0, -3);
        let back = expand(&rows);
        assert_eq!(back.len(), 33);
        assert_eq!(back[0].1, fs[0]);
        assert_eq!(back[3].1, more[0]);
        assert_eq!(back.last().unwrap().0, 29);
    }

    #[test]
    fn a_full_open_pack_is_not_rewritten() {
        let fs = forms(15, 250);
        let refs: Vec<&[u8]> = fs.iter().map(|f| f.as_slice()).collect();
        let open = extend(None, &refs, None, BUDGET_4K).unwrap();
        assert_eq!(open.len(), 1, "15 forms fit one page");
        let big = vec![1u8; 4000];
        let rows = extend(Some(&open[0].1), &[big.as_slice()], None, BUDGET_4K).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 0);
        assert_eq!(Pack::parse(&rows[0].1).unwrap().len(), 1);
    }

    #[test]
    fn an_oversized_form_is_a_row_of_its_own() {
        let huge = vec![0u8; 9000];
        let small = vec![1u8; 200];
        let rows = extend(None, &[small.as_slice(), huge.as_slice(), small.as_slice()], None, BUDGET_4K).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].0, rows[1].0, rows[2].0), (0, 1, 2));
        assert_eq!(rows[1].1, huge);
        assert_eq!(rows[2].1[0], FORM_PACK);
    }

    #[test]
    fn chain_packs_carry_the_prev_hash_of_their_first_form() {
        let fs = forms(40, 250);
        let refs: Vec<&[u8]> = fs.iter().map(|f| f.as_slice()).collect();
        let prevs: Vec<[u8; 32]> = (0..40u8).map(|i| [i; 32]).collect();
        let rows = extend(None, &refs[..20], Some(&prevs[..20]), BUDGET_4K).unwrap();
        assert!(rows.len() == 2);
        for (start, v) in &rows {
            let p = Pack::parse(v).unwrap();
            assert_eq!(p.prev(), Some(&prevs[*start as usize]));
            assert!(v.len() <= BUDGET_4K);
        }
        // the open chain pack takes more, keeping its header; a legacy pack cannot take chain forms
        let rows2 = extend(Some(&rows[1].1), &refs[20..], Some(&prevs[20..]), BUDGET_4K).unwrap();
        assert!(rows2[0].0 < 0);
        assert_eq!(Pack::parse(&rows2[0].1).unwrap().prev(), Pack::parse(&rows[1].1).unwrap().prev());
        let legacy = extend(None, &refs[..2], None, BUDGET_4K).unwrap();
        assert!(extend(Some(&legacy[0].1), &refs[2..3], Some(&prevs[2..3]), BUDGET_4K).is_err());
        assert!(extend(None, &refs[..2], Some(&prevs[..1]), BUDGET_4K).is_err());
        // an oversized chain form is a chain pack of one
        let huge = vec![0u8; 9000];
        let one = extend(None, &[huge.as_slice()], Some(&prevs[..1]), BUDGET_4K).unwrap();
        let p = Pack::parse(&one[0].1).unwrap();
        assert_eq!((p.len(), p.prev(), p.get(0).unwrap()), (1, Some(&prevs[0]), Some(huge.as_slice())));
        let back = expand(&rows);
        assert_eq!(back.len(), 20);
    }

    #[test]
    fn corrupt_packs_are_errors() {
        assert!(Pack::parse(&[FORM_PACK, 0, 0]).is_err());
        assert!(Pack::parse(&[FORM_PACK, 2, 0, 1, 0]).is_err());
        assert!(Pack::parse(&[FORM_PACK, 1, 0, 5, 0, 1, 2]).is_err());
        assert!(Pack::parse(&[1, 1, 0]).is_err());
        assert!(Pack::parse(&[FORM_CHAIN; 20]).is_err());
    }
}

//! Merges of stored adjacency rows, for the LMDB write path (`python/provgraph/graph/storage.py`):
//! an out-row is a run of 13-byte records `dst i64 LE | w f32 LE | type u8` sorted by `dst`, an
//! in-row a run of `src i64 LE` sorted ascending. One call per row replaces a dozen small numpy
//! calls (`isin`, `concatenate`, a structured sort), which made a bulk write into existing rows
//! hold the GIL ~90 µs per row.

/// Bytes of one out-row record.
pub const ADJ_RECORD: usize = 13;

fn dst_of(rec: &[u8]) -> i64 {
    i64::from_le_bytes(rec[..8].try_into().expect("8 bytes"))
}

/// `rows` as records sorted by `dst` (stable): as given when already sorted, else sorted.
fn sorted_records(rows: &[u8]) -> Vec<&[u8]> {
    let mut recs: Vec<&[u8]> = rows.chunks_exact(ADJ_RECORD).collect();
    if !recs.windows(2).all(|w| dst_of(w[0]) <= dst_of(w[1])) {
        recs.sort_by_key(|r| dst_of(r));
    }
    recs
}

/// Upserts `incoming` (records with distinct `dst`) into the out-row `old`: the merged row sorted
/// by `dst` (an incoming record replaces the old one of the same `dst`), and for each incoming
/// record whether its `dst` was new to the row. Trailing bytes short of a record are ignored.
pub fn merge_adjacency(old: &[u8], incoming: &[u8]) -> (Vec<u8>, Vec<bool>) {
    let (old, inc) = (sorted_records(old), sorted_records(incoming));
    let mut out = Vec::with_capacity((old.len() + inc.len()) * ADJ_RECORD);
    let mut fresh_sorted = Vec::with_capacity(inc.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < inc.len() {
        let take_old = j == inc.len() || (i < old.len() && dst_of(old[i]) < dst_of(inc[j]));
        if take_old {
            out.extend_from_slice(old[i]);
            i += 1;
        } else {
            let same = i < old.len() && dst_of(old[i]) == dst_of(inc[j]);
            out.extend_from_slice(inc[j]);
            fresh_sorted.push((dst_of(inc[j]), !same));
            i += same as usize;
            j += 1;
        }
    }
    // the mask in the caller's order of `incoming`
    let fresh = incoming
        .chunks_exact(ADJ_RECORD)
        .map(|r| {
            let d = dst_of(r);
            let k = fresh_sorted.partition_point(|&(x, _)| x < d);
            fresh_sorted[k].1
        })
        .collect();
    (out, fresh)
}

/// The sorted union (no duplicates) of two in-rows.
pub fn union_ids(old: &[u8], new: &[u8]) -> Vec<u8> {
    let read = |b: &[u8]| -> Vec<i64> {
        let mut v: Vec<i64> = b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        if !v.windows(2).all(|w| w[0] <= w[1]) {
            v.sort_unstable();
        }
        v
    };
    let (a, b) = (read(old), read(new));
    let mut out: Vec<i64> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let x = if j == b.len() || (i < a.len() && a[i] <= b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if out.last() != Some(&x) {
            out.push(x);
        }
    }
    out.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dst: i64, w: f32, t: u8) -> Vec<u8> {
        let mut v = dst.to_le_bytes().to_vec();
        v.extend_from_slice(&w.to_le_bytes());
        v.push(t);
        v
    }

    fn row(items: &[(i64, f32, u8)]) -> Vec<u8> {
        items.iter().flat_map(|&(d, w, t)| rec(d, w, t)).collect()
    }

    #[test]
    fn merge_replaces_same_dst_and_reports_fresh_in_caller_order() {
        let old = row(&[(1, 0.1, 0), (5, 0.5, 0), (9, 0.9, 0)]);
        let inc = row(&[(7, 0.7, 2), (5, 0.55, 1), (0, 0.0, 3)]);
        let (merged, fresh) = merge_adjacency(&old, &inc);
        assert_eq!(merged, row(&[(0, 0.0, 3), (1, 0.1, 0), (5, 0.55, 1), (7, 0.7, 2), (9, 0.9, 0)]));
        assert_eq!(fresh, vec![true, false, true]);
        let (merged, fresh) = merge_adjacency(&[], &inc);
        assert_eq!(merged, row(&[(0, 0.0, 3), (5, 0.55, 1), (7, 0.7, 2)]));
        assert_eq!(fresh, vec![true; 3]);
        assert_eq!(merge_adjacency(&old, &[]), (old.clone(), vec![]));
    }

    #[test]
    fn union_is_sorted_and_distinct() {
        let ids = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        assert_eq!(union_ids(&ids(&[1, 4, 9]), &ids(&[4, 2, 10])), ids(&[1, 2, 4, 9, 10]));
        assert_eq!(union_ids(&[], &ids(&[3])), ids(&[3]));
        assert_eq!(union_ids(&ids(&[-5, 3]), &[]), ids(&[-5, 3]));
    }
}

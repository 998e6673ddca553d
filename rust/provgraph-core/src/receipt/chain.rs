//! Verification of one tenant's receipt chain.
use std::collections::HashMap;

use super::{check_receipt, hex32, GENESIS};
use crate::error::Error;

/// The outcome of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Every receipt verified and the chain is intact.
    pub ok: bool,
    /// Receipts that verified before the first failure (all of them when `ok`).
    pub checked: u64,
    /// The chain position (expected `seq`) of the first failure: the chain is valid up to
    /// `first_bad_seq − 1`. For a gap this is the missing `seq`.
    pub first_bad_seq: Option<u64>,
    /// What failed there, starting with a stable tag: `bad JSON`, `missing signature`,
    /// `bad signature`, `unsupported signer.alg`, `unknown key_id`, `signature mismatch`,
    /// `tenant_id mismatch`, `seq mismatch`, `prev_hash mismatch`.
    pub reason: Option<String>,
    /// BLAKE3 of the signed bytes of the last receipt that verified (the start's head if none).
    pub head: [u8; 32],
}

/// Verify a whole chain: `receipts` are one tenant's receipts in `seq` order starting at 1.
///
/// Per receipt, in this order: the JSON parses; `signer.key_id` names a key of `keys`; the
/// signature verifies with it; `tenant_id` equals the first receipt's; `seq` is the next
/// number (1, 2, …); `prev_hash` is the hex BLAKE3 of the previous receipt's signed bytes
/// (64 zeros for the first). Checking the signature first means a modified field reports
/// `signature mismatch`, while a validly signed receipt in the wrong place (reordering, gap,
/// foreign chain) reports `seq mismatch` / `prev_hash mismatch`.
pub fn verify_chain(receipts: &[&[u8]], keys: &HashMap<String, [u8; 32]>) -> ChainReport {
    verify_chain_from(receipts, keys, 1, GENESIS)
}

/// [`verify_chain`] for a segment that starts at `start_seq` after the head `prev_hash`
/// (e.g. a page of `GET …/receipts?after_seq=N`, continuing from the previous page's head).
pub fn verify_chain_from(
    receipts: &[&[u8]],
    keys: &HashMap<String, [u8; 32]>,
    start_seq: u64,
    prev_hash: [u8; 32],
) -> ChainReport {
    let mut head = prev_hash;
    let mut tenant: Option<String> = None;
    for (i, json) in receipts.iter().enumerate() {
        let expected_seq = start_seq + i as u64;
        let fail = |reason: String| ChainReport {
            ok: false,
            checked: i as u64,
            first_bad_seq: Some(expected_seq),
            reason: Some(reason),
            head,
        };
        let parsed = check_receipt(json, |key_id| match key_id {
            None => Err(Error::InvalidReceipt("unknown key_id: signer.key_id missing".into())),
            Some(id) => keys.get(id).ok_or_else(|| Error::InvalidReceipt(format!("unknown key_id {id:?}"))),
        });
        let parsed = match parsed {
            Ok(p) => p,
            Err(Error::InvalidReceipt(m)) => return fail(m),
            Err(e) => return fail(e.to_string()),
        };
        match (&tenant, &parsed.tenant_id) {
            (_, None) => return fail("tenant_id mismatch: missing".into()),
            (None, Some(t)) => tenant = Some(t.clone()),
            (Some(first), Some(t)) if first != t => {
                return fail(format!("tenant_id mismatch: expected {first:?}, got {t:?}"))
            }
            _ => {}
        }
        if parsed.seq != Some(expected_seq) {
            let got = parsed.seq.map_or_else(|| "none".to_string(), |s| s.to_string());
            return fail(format!("seq mismatch: expected {expected_seq}, got {got}"));
        }
        let expected_prev = hex32(&head);
        if parsed.prev_hash.as_deref() != Some(expected_prev.as_str()) {
            return fail(format!(
                "prev_hash mismatch: expected {expected_prev}, got {}",
                parsed.prev_hash.as_deref().unwrap_or("none")
            ));
        }
        head = parsed.signed_hash;
    }
    ChainReport { ok: true, checked: receipts.len() as u64, first_bad_seq: None, reason: None, head }
}

//! Bindings of `provgraph_core::receipt`: Ed25519 receipt signing, verification and the
//! per-tenant chain check. Parsing, canonicalization, hashing and signing run with the GIL
//! released.
use std::collections::HashMap;

use provgraph_core::canonical::parse_strict;
use provgraph_core::receipt::{self as core, codec, pack, SigningKey, GENESIS};
use provgraph_core::Error as CoreError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};
use serde_json::{Map, Value};

use crate::{to_py, InvalidArgumentError};

/// The raw `prev_hash` of a stored receipt's canonical JSON (its first `"prev_hash":"<64 hex>"`;
/// a wrong guess only means the codec stores it after all: it elides what the context gives only
/// where the receipt's own top-level value is that).
fn prev_hash_of(json: &[u8]) -> Option<[u8; 32]> {
    const KEY: &[u8] = b"\"prev_hash\":\"";
    let at = memchr::memmem::find(json, KEY)? + KEY.len();
    let hex = json.get(at..at + 64)?;
    let mut out = [0u8; 32];
    for (o, p) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let v = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = v(p[0])? << 4 | v(p[1])?;
    }
    Some(out)
}

fn array32(bytes: &[u8], what: &str) -> PyResult<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        InvalidArgumentError::new_err(format!("{what} must be 32 bytes, got {}", bytes.len()))
    })
}

/// `(seq, receipt_id, signed_hash, receipt_json)` as returned to Python.
type SignedRow<'py> = (u64, String, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

/// `(seq, receipt_id as 16 bytes, receipt_json)`: what the issuer commits.
type IssuedRow<'py> = (u64, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(msg.into())
}

/// `bytes` parsed strictly (duplicate names rejected) as a JSON object; `not_object` otherwise.
fn json_object(bytes: &[u8], not_object: &str) -> Result<Map<String, Value>, CoreError> {
    match parse_strict(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid(not_object)),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The issuer's Ed25519 key: signs batches of receipts into a tenant's chain.
#[pyclass(module = "provgraph._core", frozen)]
struct ReceiptSigner {
    key: SigningKey,
}

#[pymethods]
impl ReceiptSigner {
    #[new]
    #[pyo3(signature = (seed=None))]
    fn new(seed: Option<&[u8]>) -> PyResult<Self> {
        let key = match seed {
            Some(s) => SigningKey::from_seed(&array32(s, "seed")?),
            None => SigningKey::generate(),
        };
        Ok(Self { key })
    }

    #[getter]
    fn seed<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.seed())
    }

    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.public_key())
    }

    #[getter]
    fn key_id(&self) -> String {
        self.key.key_id()
    }

    /// The Ed25519 signature (64 bytes) of `message` (RFC 8032, pure): for documents signed like a
    /// receipt, over their RFC 8785 bytes (purge manifests).
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.sign(message))
    }

    fn sign_batch<'py>(
        &self,
        py: Python<'py>,
        prev_hash: &[u8],
        next_seq: u64,
        receipts: Vec<PyBackedBytes>,
    ) -> PyResult<(Vec<SignedRow<'py>>, Bound<'py, PyBytes>)> {
        let prev = array32(prev_hash, "prev_hash")?;
        let key = &self.key;
        let (signed, head) = py
            .detach(|| {
                let maps = receipts.iter().map(|b| json_object(b, "not a JSON object"));
                core::sign_iter(key, prev, next_seq, receipts.len(), maps)
            })
            .map_err(to_py)?;
        let rows = signed
            .into_iter()
            .map(|s| {
                (
                    s.seq,
                    s.receipt_id,
                    PyBytes::new(py, &s.signed_hash),
                    PyBytes::new(py, &s.json),
                )
            })
            .collect();
        Ok((rows, PyBytes::new(py, &head)))
    }

    /// The issuer's path: `records` are outbox values `{"receipt": {…}, "executed_ts": t, …}`;
    /// each receipt gets `issued_at` and is signed as in `sign_batch`. Returns the rows, the
    /// new head and each record's `executed_ts` (for the issuance lag), with the GIL released
    /// for all the parsing, canonicalization and signing.
    fn issue_outbox<'py>(
        &self,
        py: Python<'py>,
        prev_hash: &[u8],
        next_seq: u64,
        records: Vec<PyBackedBytes>,
        issued_at: &str,
    ) -> PyResult<(Vec<IssuedRow<'py>>, Bound<'py, PyBytes>, Vec<f64>)> {
        let prev = array32(prev_hash, "prev_hash")?;
        let key = &self.key;
        let mut executed = Vec::with_capacity(records.len());
        let (signed, head, ids) = py
            .detach(|| {
                let maps = records.iter().map(|b| {
                    let mut rec = json_object(b, "outbox record is not a JSON object")?;
                    executed.push(rec.get("executed_ts").and_then(Value::as_f64).unwrap_or(f64::NAN));
                    match rec.remove("receipt") {
                        Some(Value::Object(mut receipt)) => {
                            receipt.insert("issued_at".into(), Value::String(issued_at.to_owned()));
                            Ok(receipt)
                        }
                        _ => Err(invalid("outbox record lacks its receipt object")),
                    }
                });
                let (signed, head) = core::sign_iter(key, prev, next_seq, records.len(), maps)?;
                let ids = signed
                    .iter()
                    .map(|s| {
                        uuid::Uuid::parse_str(&s.receipt_id)
                            .map(|u| *u.as_bytes())
                            .map_err(|e| invalid(format!("receipt_id {:?}: {e}", s.receipt_id)))
                    })
                    .collect::<Result<Vec<[u8; 16]>, CoreError>>()?;
                Ok::<_, CoreError>((signed, head, ids))
            })
            .map_err(to_py)?;
        let rows = signed
            .into_iter()
            .zip(ids)
            .map(|(s, id)| (s.seq, PyBytes::new(py, &id), PyBytes::new(py, &s.json)))
            .collect();
        Ok((rows, PyBytes::new(py, &head), executed))
    }

    fn __repr__(&self) -> String {
        format!("ReceiptSigner(key_id={:?})", self.key.key_id())
    }
}

/// Verify one receipt's signature; returns the BLAKE3 of its signed bytes.
#[pyfunction]
fn verify_receipt<'py>(
    py: Python<'py>,
    receipt_json: &[u8],
    public_key: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let pk = array32(public_key, "public_key")?;
    let hash = py
        .detach(|| core::verify_receipt(receipt_json, &pk))
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &hash))
}

/// Verify one tenant's chain (signatures, seq continuity, prev_hash links).
#[pyfunction]
#[pyo3(signature = (receipts, keys, start_seq=1, prev_hash=None))]
fn verify_chain<'py>(
    py: Python<'py>,
    receipts: Vec<PyBackedBytes>,
    keys: HashMap<String, Vec<u8>>,
    start_seq: u64,
    prev_hash: Option<&[u8]>,
) -> PyResult<Bound<'py, PyDict>> {
    let keys = keys
        .into_iter()
        .map(|(k, v)| Ok((k.clone(), array32(&v, &format!("public key of {k:?}"))?)))
        .collect::<PyResult<HashMap<String, [u8; 32]>>>()?;
    let prev = match prev_hash {
        Some(p) => array32(p, "prev_hash")?,
        None => GENESIS,
    };
    if start_seq == 0 {
        return Err(InvalidArgumentError::new_err("start_seq must be >= 1"));
    }
    let report = py.detach(|| {
        let refs: Vec<&[u8]> = receipts.iter().map(|b| &b[..]).collect();
        core::verify_chain_from(&refs, &keys, start_seq, prev)
    });
    let d = PyDict::new(py);
    d.set_item("ok", report.ok)?;
    d.set_item("checked", report.checked)?;
    d.set_item("first_bad_seq", report.first_bad_seq)?;
    d.set_item("reason", report.reason)?;
    d.set_item("head", PyBytes::new(py, &report.head))?;
    Ok(d)
}

/// A fresh UUIDv7 string.
#[pyfunction]
fn uuid7() -> String {
    core::uuid7()
}

/// Pack the compact forms `forms` (consecutive receipts) after `open`, the pack ending right before
/// them if it may take more: `[(index of the row's first receipt in forms, or -n for `open`
/// rewritten with its n receipts first, value)]`, each value a pack of up to `budget` bytes, or a
/// single form too big for one (`provgraph_core::receipt::pack::extend`). With `prevs` (each form's
/// prev_hash, the forms encoded with `elide_prev`) the packs are chain packs.
#[pyfunction]
#[pyo3(signature = (open, forms, budget=pack::BUDGET_4K, prevs=None))]
fn receipt_pack<'py>(
    py: Python<'py>,
    open: Option<PyBackedBytes>,
    forms: Vec<PyBackedBytes>,
    budget: usize,
    prevs: Option<Vec<PyBackedBytes>>,
) -> PyResult<Vec<(i64, Bound<'py, PyBytes>)>> {
    let refs: Vec<&[u8]> = forms.iter().map(|f| f.as_ref()).collect();
    let prevs = prevs
        .map(|ps| ps.iter().map(|p| array32(p, "a prev hash")).collect::<PyResult<Vec<[u8; 32]>>>())
        .transpose()?;
    let rows = pack::extend(open.as_deref(), &refs, prevs.as_deref(), budget).map_err(to_py)?;
    Ok(rows.into_iter().map(|(i, v)| (i, PyBytes::new(py, &v))).collect())
}

/// The forms of a pack value, in order (an error for a value that is not a pack).
#[pyfunction]
fn receipt_pack_forms<'py>(py: Python<'py>, value: &[u8]) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let p = pack::Pack::parse(value).map_err(to_py)?;
    Ok(p.forms().map_err(to_py)?.into_iter().map(|f| PyBytes::new(py, f)).collect())
}

/// A tenant's receipt dictionary and the compact form of its receipts (`provgraph_core::receipt::codec`).
/// Encoding adds entries (returned, with the id of the first, for the caller to store in the same
/// transaction); `truncate` drops entries added by receipts that were not committed after all.
#[pyclass(module = "provgraph._core", frozen)]
struct ReceiptCodec {
    dict: parking_lot::RwLock<codec::Dictionary>,
}

/// `(compact forms, id of the first entry added, the entries added)`.
type Encoded<'py> = (Vec<Bound<'py, PyBytes>>, usize, Vec<Bound<'py, PyBytes>>);

#[pymethods]
impl ReceiptCodec {
    #[new]
    #[pyo3(signature = (entries=Vec::new()))]
    fn new(entries: Vec<PyBackedBytes>) -> PyResult<Self> {
        let dict = codec::Dictionary::from_entries(entries.iter().map(|e| e.to_vec()).collect()).map_err(to_py)?;
        Ok(Self { dict: parking_lot::RwLock::new(dict) })
    }

    /// The compact forms of `receipts` (stored receipt JSON, `seq` of each) of tenant `tenant_id`;
    /// with `elide_prev`, each form leaves its `prev_hash` out (for a chain pack, whose reader
    /// supplies it from the chain).
    #[pyo3(signature = (tenant_id, receipts, elide_prev=false))]
    fn encode<'py>(&self, py: Python<'py>, tenant_id: &str, receipts: Vec<(PyBackedBytes, u64)>,
                   elide_prev: bool) -> Encoded<'py> {
        let (out, first, added) = py.detach(|| {
            let mut dict = self.dict.write();
            let first = dict.len();
            let mut added = Vec::new();
            let out: Vec<Vec<u8>> = receipts
                .iter()
                .map(|(json, seq)| {
                    let prev = if elide_prev { prev_hash_of(json) } else { None };
                    let ctx = codec::Context { tenant_id, seq: *seq, prev_hash: prev.as_ref() };
                    codec::encode(&mut dict, json, &ctx, &mut added)
                })
                .collect();
            (out, first, added)
        });
        let out = out.iter().map(|c| PyBytes::new(py, c)).collect();
        (out, first, added.iter().map(|e| PyBytes::new(py, e)).collect())
    }

    /// The stored receipt JSON of a compact form (its signed bytes with `signed=True`).
    #[pyo3(signature = (data, tenant_id, seq, signed=false))]
    fn decode<'py>(&self, py: Python<'py>, data: &[u8], tenant_id: &str, seq: u64, signed: bool) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(1200);
        let ctx = codec::Context { tenant_id, seq, prev_hash: None };
        codec::decode_into(&self.dict.read(), data, &ctx, signed, &mut out).map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// `decode` of many `(data, seq)` in one call (the GIL released).
    #[pyo3(signature = (tenant_id, forms, signed=false))]
    fn decode_many<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        forms: Vec<(PyBackedBytes, u64)>,
        signed: bool,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let out = py
            .detach(|| {
                let dict = self.dict.read();
                forms
                    .iter()
                    .map(|(data, seq)| {
                        let mut out = Vec::with_capacity(1200);
                        let ctx = codec::Context { tenant_id, seq: *seq, prev_hash: None };
                        codec::decode_into(&dict, data, &ctx, signed, &mut out).map(|()| out)
                    })
                    .collect::<Result<Vec<Vec<u8>>, CoreError>>()
            })
            .map_err(to_py)?;
        Ok(out.iter().map(|o| PyBytes::new(py, o)).collect())
    }

    /// Every receipt of stored rows `(value, seq of the row's key)` of tenant `tenant_id`, as
    /// `(seq, stored receipt JSON)` in order: a full row as it is, a compact form reconstructed,
    /// a pack (`provgraph_core::receipt::pack`) expanded (the GIL released). With `want`, only
    /// the receipt of that seq (one form of a pack is sliced and decoded, not its neighbours).
    #[pyo3(signature = (tenant_id, rows, want=None))]
    fn decode_rows<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        rows: Vec<(PyBackedBytes, u64)>,
        want: Option<u64>,
    ) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        let out = py
            .detach(|| -> Result<Vec<(u64, Vec<u8>)>, CoreError> {
                let dict = self.dict.read();
                let mut out = Vec::new();
                let one = |data: &[u8], seq: u64| -> Result<Vec<u8>, CoreError> {
                    if data.first() == Some(&b'{') {
                        return Ok(data.to_vec());
                    }
                    let mut o = Vec::with_capacity(1200);
                    let ctx = codec::Context { tenant_id, seq, prev_hash: None };
                    codec::decode_into(&dict, data, &ctx, false, &mut o)?;
                    Ok(o)
                };
                for (value, first) in &rows {
                    if value.first() == Some(&pack::FORM_CHAIN) {
                        let p = pack::Pack::parse(value)?;
                        let mut prev = *p.prev().expect("a chain pack");
                        for i in 0..p.len() {
                            let seq = first + i as u64;
                            if want.is_some_and(|w| seq > w) {
                                break;
                            }
                            let f = p.get(i)?.expect("in range");
                            let ctx = codec::Context { tenant_id, seq, prev_hash: Some(&prev) };
                            if want.is_none_or(|w| w == seq) {
                                let mut o = Vec::with_capacity(1200);
                                codec::decode_into(&dict, f, &ctx, false, &mut o)?;
                                out.push((seq, o));
                                if want.is_some() {
                                    break;
                                }
                            }
                            let mut signed = Vec::with_capacity(1100);
                            codec::decode_into(&dict, f, &ctx, true, &mut signed)?;
                            prev = *blake3::hash(&signed).as_bytes();
                        }
                    } else if value.first() == Some(&pack::FORM_PACK) {
                        let p = pack::Pack::parse(value)?;
                        match want {
                            Some(seq) => {
                                if let Some(f) = seq.checked_sub(*first).and_then(|i| p.get(i as usize).transpose()) {
                                    out.push((seq, one(f?, seq)?));
                                }
                            }
                            None => {
                                for (i, f) in p.forms()?.into_iter().enumerate() {
                                    out.push((first + i as u64, one(f, first + i as u64)?));
                                }
                            }
                        }
                    } else if want.is_none_or(|seq| seq == *first) {
                        out.push((*first, one(value, *first)?));
                    }
                }
                Ok(out)
            })
            .map_err(to_py)?;
        Ok(out.into_iter().map(|(s, o)| (s, PyBytes::new(py, &o))).collect())
    }

    /// Drop every entry from id `length` on (those of receipts that were not committed).
    fn truncate(&self, length: usize) {
        self.dict.write().truncate(length);
    }

    fn __len__(&self) -> usize {
        self.dict.read().len()
    }

    /// Bytes of the entries.
    #[getter]
    fn entry_bytes(&self) -> usize {
        self.dict.read().bytes()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ReceiptSigner>()?;
    m.add_class::<ReceiptCodec>()?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(verify_chain, m)?)?;
    m.add_function(wrap_pyfunction!(uuid7, m)?)?;
    m.add_function(wrap_pyfunction!(receipt_pack, m)?)?;
    m.add_function(wrap_pyfunction!(receipt_pack_forms, m)?)?;
    Ok(())
}

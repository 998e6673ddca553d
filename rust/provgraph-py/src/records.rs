//! Bindings of `provgraph_core::records`: a tenant's record dictionary with the compact forms of
//! its preflights and decision log entries. Calls hold the GIL (each is a few µs); the lock
//! inside lets the writer thread encode while readers decode.
use provgraph_core::records;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::to_py;

/// `(compact form, [(id, value)] of the entries to store with it)`, or None: store the JSON.
type Encoded<'py> = Option<(Bound<'py, PyBytes>, Vec<(u32, Bound<'py, PyBytes>)>)>;

/// One tenant's record dictionary (table record_dict) and the compact record forms that use it.
#[pyclass(module = "provgraph._core", frozen)]
struct RecordCodec {
    dict: parking_lot::RwLock<records::RecordDict>,
}

fn encoded<'py>(py: Python<'py>, dict: &records::RecordDict, got: Option<(Vec<u8>, Vec<u32>)>) -> PyResult<Encoded<'py>> {
    let Some((form, fresh)) = got else { return Ok(None) };
    let entries = fresh
        .into_iter()
        .map(|id| Ok((id, PyBytes::new(py, dict.value(id).map_err(to_py)?))))
        .collect::<PyResult<_>>()?;
    Ok(Some((PyBytes::new(py, &form), entries)))
}

#[pymethods]
impl RecordCodec {
    /// A dictionary holding the stored entries `(id, value)`.
    #[new]
    #[pyo3(signature = (entries=Vec::new()))]
    fn new(entries: Vec<(u32, Vec<u8>)>) -> PyResult<Self> {
        let mut dict = records::RecordDict::new();
        for (id, value) in entries {
            dict.load(id, value).map_err(to_py)?;
        }
        Ok(Self { dict: parking_lot::RwLock::new(dict) })
    }

    fn __len__(&self) -> usize {
        self.dict.read().len()
    }

    /// The compact form of a preflight's JSON, with the entries to store in its transaction.
    fn encode_preflight<'py>(&self, py: Python<'py>, json: &[u8], preflight_id: &str) -> PyResult<Encoded<'py>> {
        let mut dict = self.dict.write();
        let got = records::encode_preflight(json, preflight_id, &mut dict);
        encoded(py, &dict, got)
    }

    /// A compact preflight -> its JSON.
    fn decode_preflight<'py>(&self, py: Python<'py>, form: &[u8], preflight_id: &str) -> PyResult<Bound<'py, PyBytes>> {
        let out = records::decode_preflight(form, preflight_id, &self.dict.read()).map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The compact form of a decision log entry's JSON stored under a key of time `key_us`.
    fn encode_entry<'py>(&self, py: Python<'py>, json: &[u8], key_us: i64) -> PyResult<Encoded<'py>> {
        let mut dict = self.dict.write();
        let got = records::encode_entry(json, key_us, &mut dict);
        encoded(py, &dict, got)
    }

    /// A compact decision log entry -> its JSON.
    fn decode_entry<'py>(&self, py: Python<'py>, form: &[u8], key_us: i64) -> PyResult<Bound<'py, PyBytes>> {
        let out = records::decode_entry(form, key_us, &self.dict.read()).map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// Mark entries stored: the transaction that wrote them committed.
    fn stored(&self, ids: Vec<u32>) {
        self.dict.write().stored(&ids);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RecordCodec>()
}

//! Bindings of `provgraph_core::canonical` (RFC 8785 / JCS): canonical bytes and BLAKE3 digests.
//!
//! Python objects are written straight to canonical bytes (no intermediate `serde_json::Value`):
//! dict members are sorted by the UTF-16 code units of their names, ints beyond +/-2^53 are
//! rounded to the nearest double as JCS requires, NaN/Infinity, non-str keys, lone surrogates
//! and any other type raise `provgraph.errors.InvalidArgumentError` (a `ValueError`).
use provgraph_core::canonical as jcs;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::{to_py, InvalidArgumentError};

/// Same nesting limit as the JSON-text path (serde_json accepts 127 nested containers), which also stops
/// self-referencing containers.
const MAX_DEPTH: usize = 127;

/// Canonical output above this size is hashed with the GIL released.
const DETACH_HASH_BYTES: usize = 1 << 16;

fn write_str(s: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    jcs::write_string(utf8(s)?, out);
    Ok(())
}

fn utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    s.to_str().map_err(|_| {
        InvalidArgumentError::new_err(
            "string is not valid Unicode (lone surrogate) and has no JSON form",
        )
    })
}

fn write_obj(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    if let Ok(s) = obj.cast::<PyString>() {
        write_str(s, out)
    } else if obj.is_none() {
        out.extend_from_slice(b"null");
        Ok(())
    } else if let Ok(b) = obj.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
        Ok(())
    } else if let Ok(i) = obj.cast::<PyInt>() {
        match i.extract::<i64>() {
            Ok(v) => jcs::write_i64(v, out),
            Err(_) => {
                // Beyond i64: Python's int -> float conversion rounds to nearest, ties to even.
                let f: f64 = i.extract().map_err(|e: PyErr| {
                    if e.is_instance_of::<PyOverflowError>(obj.py()) {
                        InvalidArgumentError::new_err(
                            "integer too large for an IEEE-754 double (RFC 8785)",
                        )
                    } else {
                        e
                    }
                })?;
                jcs::write_f64(f, out).map_err(to_py)?;
            }
        }
        Ok(())
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        jcs::write_f64(f.value(), out).map_err(to_py)
    } else if let Ok(d) = obj.cast::<PyDict>() {
        enter(depth)?;
        write_dict(d, out, depth + 1)
    } else if let Ok(l) = obj.cast::<PyList>() {
        enter(depth)?;
        write_array(l.iter(), out, depth + 1)
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        enter(depth)?;
        write_array(t.iter(), out, depth + 1)
    } else {
        Err(InvalidArgumentError::new_err(format!(
            "{} has no JSON form (RFC 8785 takes dict, list, tuple, str, int, float, bool, None)",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "object".into())
        )))
    }
}

fn enter(depth: usize) -> PyResult<()> {
    if depth >= MAX_DEPTH {
        return Err(InvalidArgumentError::new_err(format!(
            "nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

fn write_array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> PyResult<()> {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_obj(&item, out, depth)?;
    }
    out.push(b']');
    Ok(())
}

fn write_dict(d: &Bound<'_, PyDict>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    let mut items: Vec<(Bound<'_, PyString>, Bound<'_, PyAny>)> = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let k = k.cast_into::<PyString>().map_err(|e| {
            InvalidArgumentError::new_err(format!(
                "dict keys must be str, got {}",
                e.into_inner()
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "object".into())
            ))
        })?;
        items.push((k, v));
    }
    let mut members: Vec<(&str, &Bound<'_, PyAny>)> = Vec::with_capacity(items.len());
    for (k, v) in &items {
        members.push((utf8(k)?, v));
    }
    members.sort_unstable_by(|a, b| jcs::cmp_utf16(a.0, b.0));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jcs::write_string(k, out);
        out.push(b':');
        write_obj(v, out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

fn canonical_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write_obj(obj, &mut out, 0)?;
    Ok(out)
}

/// RFC 8785 canonical bytes of a JSON-like Python value.
#[pyfunction]
fn canonicalize<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let out = canonical_bytes(obj)?;
    Ok(PyBytes::new(py, &out))
}

/// Parse JSON text (duplicate names rejected) and return its RFC 8785 canonical bytes.
#[pyfunction]
fn canonicalize_json<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = py.detach(|| jcs::canonicalize_json(data)).map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// BLAKE3 (32 bytes) of the RFC 8785 canonical bytes of a JSON-like Python value.
#[pyfunction]
fn canonical_hash<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let out = canonical_bytes(obj)?;
    let digest = if out.len() > DETACH_HASH_BYTES {
        py.detach(|| blake3::hash(&out))
    } else {
        blake3::hash(&out)
    };
    Ok(PyBytes::new(py, digest.as_bytes()))
}

/// Add the canonicalization functions to `provgraph._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(canonicalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_hash, m)?)?;
    Ok(())
}

//! Bindings of `provgraph_core::canonical` (RFC 8785 / JCS): canonical bytes and BLAKE3 digests.
//!
//! Python objects are written straight to canonical bytes (no intermediate `serde_json::Value`):
//! dict members are sorted by the UTF-16 code units of their names, ints beyond +/-2^53 are
//! rounded to the nearest double as JCS requires, NaN/Infinity, non-str keys, lone surrogates,
//! duplicate member names (only possible with `str` subclasses) and any other type raise
//! `provgraph.errors.InvalidArgumentError` (a `ValueError`).
//!
//! # The walk works on borrowed pointers
//!
//! The encoder reads the object graph through raw CPython calls on *borrowed* references
//! (`PyDict_Next`, `PyList_GetItem`, `PyUnicode_AsUTF8AndSize`, ...), with exact-type pointer
//! checks before the subclass checks, no reference counting and no per-call allocation (the
//! output buffer and the member-sorting scratch are per-thread and reused). This is sound
//! because none of the calls made while walking one value on the success path can run
//! Python code or release the GIL (building an error can — an exception object's allocation
//! may collect garbage — so every error returns at once, never touching a borrowed pointer
//! again): they only read objects (`PyLong_AsLongLongAndOverflow` and `PyLong_AsDouble` read
//! an `int` or `int` subclass directly, `PyFloat_AsDouble` a `float` or subclass, never a
//! `__index__`/`__float__` method) or allocate non-GC memory (the UTF-8 cache of a `str`).
//! So nothing can mutate or free any part of the graph while it is being read. Errors are
//! raised only on the way out, after which no borrowed pointer is touched again.
use std::cell::Cell;
use std::cmp::Ordering;
use std::ptr::addr_of_mut;

use provgraph_core::canonical as jcs;
use pyo3::exceptions::PyOverflowError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::{to_py, InvalidArgumentError};

/// Same nesting limit as the JSON-text path (serde_json accepts 127 nested containers), which also stops
/// self-referencing containers.
const MAX_DEPTH: usize = 127;

/// Canonical output above this size is hashed with the GIL released.
const DETACH_HASH_BYTES: usize = 1 << 16;

/// Items of a batch whose headers are requested this many items ahead.
const PREFETCH_AHEAD: usize = 2;

/// Per-thread buffers above this capacity are dropped instead of being kept for the next call.
const KEEP_SCRATCH_BYTES: usize = 1 << 16;

/// One dict member awaiting its place in the sorted output: the name's UTF-8 (borrowed
/// from the `str`'s cached UTF-8) and the value (a borrowed reference).
#[derive(Clone, Copy)]
struct Member {
    key: *const u8,
    len: usize,
    value: *mut ffi::PyObject,
}

impl Member {
    /// # Safety
    /// Only while the walk that produced the member is running (see the module docs).
    #[inline(always)]
    unsafe fn key<'a>(self) -> &'a str {
        // SAFETY: PyUnicode_AsUTF8AndSize returned `len` bytes of valid UTF-8 at `key`,
        // owned by a `str` that stays alive and unchanged for the walk.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.key, self.len)) }
    }
}

/// The reusable buffers of one thread.
#[derive(Default)]
struct Scratch {
    out: Vec<u8>,
    members: Vec<Member>,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = const {
        Cell::new(Scratch { out: Vec::new(), members: Vec::new() })
    };
}

/// Run `f` with this thread's scratch buffers, emptied (a nested call gets fresh ones).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.with(Cell::take);
    s.out.clear();
    s.members.clear();
    let r = f(&mut s);
    if s.out.capacity() <= KEEP_SCRATCH_BYTES && s.members.capacity() <= KEEP_SCRATCH_BYTES {
        s.members.clear(); // holds no pointers past the walk
        SCRATCH.with(|c| c.set(s));
    }
    r
}

struct Encoder<'s, 'py> {
    py: Python<'py>,
    out: &'s mut Vec<u8>,
    members: &'s mut Vec<Member>,
}

/// Hint the CPU to fetch the first two cache lines of `obj` (an object header and, for a
/// short `str`, its inline characters). Key objects are usually cold (a cache miss per
/// object dominates the cost of hashing one that was not built just before), so the members
/// of a container are all requested before the first one is read.
#[inline(always)]
fn prefetch(obj: *mut ffi::PyObject) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(obj.cast());
        _mm_prefetch::<_MM_HINT_T0>(obj.cast::<i8>().wrapping_add(63));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = obj;
}

#[inline(always)]
fn is_type(obj: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: `obj` is a live object (caller's contract); reading `ob_type` is what Py_TYPE does.
    unsafe { ffi::Py_TYPE(obj) == ty }
}

impl<'py> Encoder<'_, 'py> {
    fn new<'s>(py: Python<'py>, s: &'s mut Scratch) -> Encoder<'s, 'py> {
        Encoder {
            py,
            out: &mut s.out,
            members: &mut s.members,
        }
    }

    /// Append the canonical bytes of `obj`.
    ///
    /// # Safety
    /// `obj` is a live object kept alive (by its owner) for the whole call, and the GIL is held.
    unsafe fn value(&mut self, obj: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        // SAFETY: `obj` is live and the GIL is held (fn contract): the tests only read `ob_type` or
        // compare addresses, and each branch passes `obj` on to the reader of the type it matched.
        unsafe {
            // Exact types first: pointer compares, no calls.
            if is_type(obj, addr_of_mut!(ffi::PyUnicode_Type)) {
                self.string(obj)
            } else if is_type(obj, addr_of_mut!(ffi::PyDict_Type)) {
                self.dict(obj, depth)
            } else if is_type(obj, addr_of_mut!(ffi::PyList_Type)) {
                self.list(obj, depth)
            } else if is_type(obj, addr_of_mut!(ffi::PyLong_Type)) {
                self.int(obj)
            } else if is_type(obj, addr_of_mut!(ffi::PyFloat_Type)) {
                self.float(obj)
            } else if obj == ffi::Py_None() {
                self.out.extend_from_slice(b"null");
                Ok(())
            } else if obj == ffi::Py_True() {
                self.out.extend_from_slice(b"true");
                Ok(())
            } else if obj == ffi::Py_False() {
                self.out.extend_from_slice(b"false");
                Ok(())
            } else if is_type(obj, addr_of_mut!(ffi::PyTuple_Type)) {
                self.tuple(obj, depth)
            } else {
                self.subclass(obj, depth)
            }
        }
    }

    /// Subclasses of str, int, float, dict, list and tuple (bool cannot be subclassed);
    /// anything else is an error.
    ///
    /// # Safety
    /// As for [`Self::value`]: `obj` is a live object kept alive for the whole call, GIL held.
    #[cold]
    unsafe fn subclass(&mut self, obj: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        // SAFETY: `obj` is live (fn contract); the `Py*_Check`s only read its type's flags and each
        // branch passes `obj` to the reader of the type it matched. `type_name` can run Python code
        // (a `str`-subclass `__name__` with a `__str__`), but only on the way out with an error.
        unsafe {
            if ffi::PyUnicode_Check(obj) != 0 {
                self.string(obj)
            } else if ffi::PyLong_Check(obj) != 0 {
                self.int(obj)
            } else if ffi::PyFloat_Check(obj) != 0 {
                self.float(obj)
            } else if ffi::PyDict_Check(obj) != 0 {
                self.dict(obj, depth)
            } else if ffi::PyList_Check(obj) != 0 {
                self.list(obj, depth)
            } else if ffi::PyTuple_Check(obj) != 0 {
                self.tuple(obj, depth)
            } else {
                Err(InvalidArgumentError::new_err(format!(
                    "{} has no JSON form (RFC 8785 takes dict, list, tuple, str, int, float, bool, None)",
                    type_name(self.py, obj)
                )))
            }
        }
    }

    /// The UTF-8 of a `str` (or subclass), borrowed from its cached UTF-8 form.
    ///
    /// # Safety
    /// `obj` is a live `str`; the result is valid while `obj` is.
    #[inline(always)]
    unsafe fn utf8<'a>(&self, obj: *mut ffi::PyObject) -> PyResult<&'a str> {
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: `obj` is a str; the returned buffer lives as long as the object.
        let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(obj, &mut len) };
        if data.is_null() {
            return Err(lone_surrogate(self.py));
        }
        // SAFETY: CPython returns `len` bytes of valid UTF-8 (lone surrogates fail above).
        Ok(unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), len as usize))
        })
    }

    /// # Safety
    /// `obj` is a live `str` (or subclass) and the GIL is held.
    unsafe fn string(&mut self, obj: *mut ffi::PyObject) -> PyResult<()> {
        // SAFETY: `obj` is a live `str` (fn contract); `s` is only read before `obj` can go away.
        let s = unsafe { self.utf8(obj)? };
        jcs::write_string(s, self.out);
        Ok(())
    }

    /// # Safety
    /// `obj` is a live `int` (or subclass) and the GIL is held.
    unsafe fn int(&mut self, obj: *mut ffi::PyObject) -> PyResult<()> {
        let mut overflow = 0;
        // SAFETY: `obj` is an int (or subclass): read directly, no __index__ call.
        let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow) };
        if overflow == 0 {
            jcs::write_i64(v, self.out);
            return Ok(());
        }
        // Beyond i64: rounded to nearest, ties to even, as Python's float(int).
        // SAFETY: `obj` is a live int (or subclass), read directly (no `__float__`/`__index__`);
        // a too-large value sets OverflowError, taken below before anything else is called.
        let f = unsafe { ffi::PyLong_AsDouble(obj) };
        if f == -1.0 {
            if let Some(e) = PyErr::take(self.py) {
                return Err(if e.is_instance_of::<PyOverflowError>(self.py) {
                    InvalidArgumentError::new_err(
                        "integer too large for an IEEE-754 double (RFC 8785)",
                    )
                } else {
                    e
                });
            }
        }
        jcs::write_f64(f, self.out).map_err(to_py)
    }

    /// # Safety
    /// `obj` is a live `float` (or subclass) and the GIL is held.
    unsafe fn float(&mut self, obj: *mut ffi::PyObject) -> PyResult<()> {
        // SAFETY: `obj` is a float (or subclass): its value is read directly.
        let f = unsafe { ffi::PyFloat_AsDouble(obj) };
        jcs::write_f64(f, self.out).map_err(to_py)
    }

    /// # Safety
    /// `obj` is a live `list` (or subclass) kept alive for the whole call, the GIL is held, and
    /// no Python code runs until the call returns `Ok` (see the module docs), so it is not resized.
    unsafe fn list(&mut self, obj: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        enter(depth)?;
        self.out.push(b'[');
        // SAFETY: `obj` is a list; the list cannot change during the walk.
        let n = unsafe { ffi::PyList_Size(obj) };
        for i in 0..n {
            // SAFETY: `obj` is a live list and 0 <= i < len; the borrowed item is only prefetched.
            prefetch(unsafe { ffi::PyList_GetItem(obj, i) });
        }
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            // SAFETY: 0 <= i < n = len (the list is not resized: no Python code runs while items
            // are walked, an error returns at once), so the item is non-null, borrowed from `obj`.
            unsafe { self.value(ffi::PyList_GetItem(obj, i), depth + 1)? };
        }
        self.out.push(b']');
        Ok(())
    }

    /// # Safety
    /// `obj` is a live `tuple` (or subclass) kept alive for the whole call, and the GIL is held.
    unsafe fn tuple(&mut self, obj: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        enter(depth)?;
        self.out.push(b'[');
        // SAFETY: `obj` is a tuple.
        let n = unsafe { ffi::PyTuple_Size(obj) };
        for i in 0..n {
            // SAFETY: `obj` is a live tuple and 0 <= i < len; the borrowed item is only prefetched.
            prefetch(unsafe { ffi::PyTuple_GetItem(obj, i) });
        }
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            // SAFETY: 0 <= i < len of an immutable tuple: the item is non-null, borrowed from the
            // tuple, which the caller keeps alive.
            unsafe { self.value(ffi::PyTuple_GetItem(obj, i), depth + 1)? };
        }
        self.out.push(b']');
        Ok(())
    }

    /// Members go to the shared `members` stack (this dict's at `base..end`), are sorted
    /// there in UTF-16 order, and written by index, as nested dicts push above `end`.
    ///
    /// # Safety
    /// `obj` is a live `dict` (or subclass) kept alive for the whole call, the GIL is held, and no
    /// Python code runs until the call returns `Ok` (see the module docs), so it is not mutated.
    unsafe fn dict(&mut self, obj: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        enter(depth)?;
        let base = self.members.len();
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        let mut sorted = true;
        // SAFETY: `obj` is a dict (or subclass): PyDict_Next yields borrowed pointers.
        while unsafe { ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) } != 0 {
            prefetch(value);
            if !is_type(key, addr_of_mut!(ffi::PyUnicode_Type))
                // SAFETY: `key` is a live key borrowed from the dict; the check reads its type.
                && unsafe { ffi::PyUnicode_Check(key) } == 0
            {
                self.members.truncate(base);
                return Err(InvalidArgumentError::new_err(format!(
                    "dict keys must be str, got {}",
                    type_name(self.py, key)
                )));
            }
            // SAFETY: `key` is a live `str` (checked above) held by the dict; `k` borrows its
            // cached UTF-8, valid while the dict is unchanged, i.e. until this call returns.
            let k = match unsafe { self.utf8(key) } {
                Ok(k) => k,
                Err(e) => {
                    self.members.truncate(base);
                    return Err(e);
                }
            };
            if sorted && self.members.len() > base {
                let prev = self.members[self.members.len() - 1];
                // SAFETY: `prev` was pushed by this call; its key is held by the unchanged dict.
                sorted = jcs::cmp_utf16(unsafe { prev.key() }, k) == Ordering::Less;
            }
            self.members.push(Member {
                key: k.as_ptr(),
                len: k.len(),
                value,
            });
        }
        let end = self.members.len();
        if !sorted {
            let slice = &mut self.members[base..end];
            // SAFETY: the keys are live for the walk.
            slice.sort_unstable_by(|a, b| unsafe { jcs::cmp_utf16(a.key(), b.key()) });
            // Equal names after sorting: only `str` subclasses with their own __eq__/__hash__
            // can put two members with the same text into one dict.
            if let Some(w) = slice
                .windows(2)
                // SAFETY: members pushed by this call; their keys are held by the unchanged dict.
                .find(|w| unsafe { w[0].key() == w[1].key() })
            {
                // SAFETY: as above; the name is copied out before the members are truncated.
                let name = unsafe { w[0].key() }.to_owned();
                self.members.truncate(base);
                return Err(InvalidArgumentError::new_err(format!(
                    "duplicate member name {name:?} (RFC 8785 §3.1)"
                )));
            }
        }
        self.out.push(b'{');
        let mut r = Ok(());
        for i in base..end {
            let m = self.members[i];
            if i > base {
                self.out.push(b',');
            }
            // SAFETY: `m` is a member of this dict; its key is held by the dict, which no value
            // walked so far has mutated (no Python code runs on success; errors break out below).
            jcs::write_string(unsafe { m.key() }, self.out);
            self.out.push(b':');
            // SAFETY: `m.value` is a live value borrowed from the dict, for the reason just above.
            r = unsafe { self.value(m.value, depth + 1) };
            if r.is_err() {
                break;
            }
        }
        self.members.truncate(base);
        r?;
        self.out.push(b'}');
        Ok(())
    }

    /// Canonical bytes of `obj` into the (emptied) output buffer.
    fn encode(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.out.clear();
        // SAFETY: `obj` is kept alive by the caller and the GIL is held (`Bound`); see the
        // module docs for why the borrowed walk below it is sound.
        unsafe { self.value(obj.as_ptr(), 0) }
    }

    /// BLAKE3 of the current output.
    fn digest(&self) -> blake3::Hash {
        if self.out.len() > DETACH_HASH_BYTES {
            let out: &[u8] = self.out;
            self.py.detach(|| blake3::hash(out))
        } else {
            blake3::hash(self.out)
        }
    }
}

#[cold]
fn lone_surrogate(py: Python<'_>) -> PyErr {
    drop(PyErr::take(py)); // the UnicodeEncodeError raised by PyUnicode_AsUTF8AndSize
    InvalidArgumentError::new_err(
        "string is not valid Unicode (lone surrogate) and has no JSON form",
    )
}

#[cold]
fn type_name(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: `obj` is a live borrowed reference.
    let obj = unsafe { Bound::from_borrowed_ptr(py, obj) };
    obj.get_type()
        .name()
        // `to_string_lossy` reads the UTF-8 of the name directly; `to_string` would call
        // `__str__`, which a `str` subclass used as `__name__` can override (Python code).
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "object".into())
}

fn enter(depth: usize) -> PyResult<()> {
    if depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    Ok(())
}

#[cold]
fn too_deep() -> PyErr {
    InvalidArgumentError::new_err(format!("nesting deeper than {MAX_DEPTH} levels"))
}

/// RFC 8785 canonical bytes of a JSON-like Python value.
#[pyfunction]
fn canonicalize<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    with_scratch(|s| {
        let mut enc = Encoder::new(py, s);
        enc.encode(obj)?;
        Ok(PyBytes::new(py, enc.out))
    })
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
    with_scratch(|s| {
        let mut enc = Encoder::new(py, s);
        enc.encode(obj)?;
        Ok(PyBytes::new(py, enc.digest().as_bytes()))
    })
}

/// `canonical_hash` of every item of an iterable, as a list (one call for many keys).
#[pyfunction]
fn canonical_hashes<'py>(
    py: Python<'py>,
    objs: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let digests = with_scratch(|s| -> PyResult<Vec<blake3::Hash>> {
        let mut enc = Encoder::new(py, s);
        let mut hash = |i: usize, item: &Bound<'py, PyAny>| -> PyResult<blake3::Hash> {
            enc.encode(item).map_err(|e| at_index(py, i, e))?;
            Ok(enc.digest())
        };
        let mut digests = Vec::new();
        if let Ok(list) = objs.cast::<PyList>() {
            digests.reserve(list.len());
            let mut i = 0;
            // The length is read again each time: hashing a large item releases the GIL, and
            // another thread may shrink the list meanwhile.
            while i < list.len() {
                if i + PREFETCH_AHEAD < list.len() {
                    // SAFETY: in range; the borrowed pointer is only prefetched.
                    prefetch(unsafe {
                        ffi::PyList_GetItem(list.as_ptr(), (i + PREFETCH_AHEAD) as _)
                    });
                }
                // Owned, as a plain `for` loop over the list would hold it.
                let item = list.get_item(i)?;
                digests.push(hash(i, &item)?);
                i += 1;
            }
        } else if let Ok(tuple) = objs.cast::<PyTuple>() {
            digests.reserve(tuple.len());
            for (i, item) in tuple.iter().enumerate() {
                digests.push(hash(i, &item)?);
            }
        } else {
            for (i, item) in objs.try_iter()?.enumerate() {
                digests.push(hash(i, &item?)?);
            }
        }
        Ok(digests)
    })?;
    PyList::new(py, digests.iter().map(|d| PyBytes::new(py, d.as_bytes())))
}

/// Prefix an InvalidArgumentError from item `i` of a batch with its index.
#[cold]
fn at_index(py: Python<'_>, i: usize, e: PyErr) -> PyErr {
    if e.is_instance_of::<InvalidArgumentError>(py) {
        InvalidArgumentError::new_err(format!("objs[{i}]: {}", e.value(py)))
    } else {
        e
    }
}

/// Add the canonicalization functions to `provgraph._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(canonicalize, m)?)?;
    m.add_function(wrap_pyfunction!(canonicalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_hash, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_hashes, m)?)?;
    Ok(())
}

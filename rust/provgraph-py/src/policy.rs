//! Bindings of `provgraph_core::policy`: compiled bundle revisions (`PolicyBundle`) and the
//! decision cache (`DecisionCache`). Compilation and evaluation release the GIL; cache
//! operations are sub-microsecond and keep it.
use std::sync::Arc;
use std::time::{Duration, Instant};

use provgraph_core::error::Error as CoreError;
use provgraph_core::policy::{hit, CacheKey, CompiledBundle, DecisionCache as CoreCache};
use provgraph_core::receipt::uuid7;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};

use crate::{to_py, InvalidArgumentError};


fn utf8<'a>(bytes: &'a [u8], what: &str) -> PyResult<&'a str> {
    std::str::from_utf8(bytes)
        .map_err(|e| InvalidArgumentError::new_err(format!("{what} is not UTF-8: {e}")))
}

/// One compiled revision of a policy bundle (immutable, thread-safe).
#[pyclass(module = "provgraph._core", frozen)]
struct PolicyBundle {
    inner: CompiledBundle,
}

impl PolicyBundle {
    /// Evaluate without the GIL; returns the JSON result (None = undefined) and the eval time.
    fn run<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        input_json: Option<&PyBackedBytes>,
        use_vm: bool,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, u64)> {
        let input = match input_json {
            Some(b) => Some(utf8(b, "input_json")?),
            None => None,
        };
        let bundle = &self.inner;
        let (out, nanos) = py.detach(|| {
            let t0 = Instant::now();
            let out = bundle.eval_json(path, input, use_vm);
            (out, t0.elapsed().as_nanos() as u64)
        });
        let out = out.map_err(to_py)?;
        Ok((out.map(|s| PyBytes::new(py, s.as_bytes())), nanos))
    }
}

#[pymethods]
impl PolicyBundle {
    #[staticmethod]
    fn compile(
        py: Python<'_>,
        modules: Vec<(String, String)>,
        data_json: PyBackedBytes,
    ) -> PyResult<Self> {
        let data = std::str::from_utf8(&data_json)
            .map_err(|e| to_py(CoreError::PolicyCompile(format!("data: not UTF-8: {e}"))))?;
        let inner = py
            .detach(|| CompiledBundle::compile(&modules, data))
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    #[pyo3(signature = (path, input_json=None, vm=true))]
    fn eval<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        input_json: Option<PyBackedBytes>,
        vm: bool,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.run(py, path, input_json.as_ref(), vm)?.0)
    }

    #[pyo3(signature = (path, input_json=None, vm=true))]
    fn eval_timed<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        input_json: Option<PyBackedBytes>,
        vm: bool,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, u64)> {
        self.run(py, path, input_json.as_ref(), vm)
    }

    /// Whether rules of this revision may run on the bytecode VM (none can conflict).
    #[getter]
    fn vm_eligible(&self) -> bool {
        self.inner.vm_eligible()
    }

    /// Whether `path`, evaluated once already, runs on the bytecode VM.
    fn uses_vm(&self, path: &str) -> bool {
        self.inner.uses_vm(path)
    }

    #[getter]
    fn packages(&self) -> Vec<String> {
        self.inner.packages()
    }

    #[getter]
    fn compile_id(&self) -> u64 {
        self.inner.compile_id()
    }
}

/// Bounded decision cache with per-entry TTL; entries stamped with a bundle epoch.
#[pyclass(module = "provgraph._core", frozen)]
struct DecisionCache {
    inner: CoreCache,
}

fn digest32(digest: &[u8]) -> PyResult<&[u8; 32]> {
    digest.try_into().map_err(|_| {
        InvalidArgumentError::new_err(format!("digest must be 32 bytes, got {}", digest.len()))
    })
}

#[pymethods]
impl DecisionCache {
    #[new]
    #[pyo3(signature = (max_entries=100_000))]
    fn new(max_entries: u64) -> Self {
        Self {
            inner: CoreCache::new(max_entries),
        }
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        tenant: &str,
        action: &str,
        resource_type: &str,
        digest: &[u8],
        epoch: u64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let digest = digest32(digest)?;
        Ok(self
            .inner
            .get_parts(tenant, action, resource_type, digest, epoch)
            .map(|v| PyBytes::new(py, &v)))
    }

    /// The /decide fast path: (response, log entry) JSON for a valid `body` whose decision is
    /// cached under `epoch`, with a new decision id; None otherwise (then nothing is counted,
    /// and the caller's full path decides).
    #[allow(clippy::too_many_arguments)]
    fn decide_hit<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        tenant: &str,
        actor: &str,
        roles: Vec<String>,
        epoch: u64,
        bundle: &str,
        revision: &str,
        path: &str,
        timestamp: &str,
    ) -> Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let decision_id = uuid7();
        let who = hit::Asker { tenant, actor, roles: &roles, epoch };
        let ans = hit::Answer { bundle, revision, path, decision_id: &decision_id, timestamp };
        let (response, entry) = hit::answer(&self.inner, body, &who, &ans)?;
        Some((PyBytes::new(py, &response), PyBytes::new(py, &entry)))
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        tenant: &str,
        action: &str,
        resource_type: &str,
        digest: &[u8],
        epoch: u64,
        value: &[u8],
        ttl_s: f64,
    ) -> PyResult<()> {
        let digest = *digest32(digest)?;
        let ttl = Duration::try_from_secs_f64(ttl_s).map_err(|_| {
            InvalidArgumentError::new_err(format!(
                "ttl_s must be a finite number >= 0, got {ttl_s}"
            ))
        })?;
        let key = CacheKey {
            tenant: tenant.to_owned(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            digest,
        };
        self.inner.insert(key, epoch, Arc::from(value), ttl);
        Ok(())
    }

    #[pyo3(signature = (tenant=None, action=None, resource_type=None))]
    fn invalidate(&self, tenant: Option<&str>, action: Option<&str>, resource_type: Option<&str>) {
        self.inner.invalidate(tenant, action, resource_type);
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cache = &self.inner;
        py.detach(|| cache.sync());
        let s = cache.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("stale", s.stale)?;
        d.set_item("inserts", s.inserts)?;
        d.set_item("invalidations", s.invalidations)?;
        d.set_item("entries", s.entries)?;
        Ok(d)
    }
}

/// Evaluations that fell back from the bytecode VM to the interpreter since the process started.
#[pyfunction]
fn policy_vm_fallbacks() -> u64 {
    provgraph_core::policy::vm_fallbacks()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(policy_vm_fallbacks, m)?)?;
    m.add_class::<PolicyBundle>()?;
    m.add_class::<DecisionCache>()?;
    Ok(())
}

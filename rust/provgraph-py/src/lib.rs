//! PyO3 bindings for provgraph-core: type conversion and the one place errors become Python exceptions.
mod canonical;
mod policy;
mod receipt;
mod records;
use std::sync::Arc;

use numpy::{PyReadonlyArray1, PyUntypedArrayMethods};
use parking_lot::RwLock;
use provgraph_core::error::Error as CoreError;
use provgraph_core::graph::budget::{set_budget, Budget};
use provgraph_core::graph::spec::Fast;
use provgraph_core::graph::{spec, Csr, EdgeTypeMask, QueryStats, TenantGraph};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use pyo3::types::{PyBytes, PyDict};

pyo3::import_exception!(provgraph.errors, UnknownNodeError);
pyo3::import_exception!(provgraph.errors, InvalidArgumentError);
pyo3::import_exception!(provgraph.errors, PolicyCompileError);
pyo3::import_exception!(provgraph.errors, PolicyEvalError);
pyo3::import_exception!(provgraph.errors, WorkCapError);
pyo3::import_exception!(provgraph.errors, TimeBudgetError);

/// The single mapping from core errors to the exceptions of `provgraph.errors`.
fn to_py(err: CoreError) -> PyErr {
    match err {
        CoreError::UnknownNode(id) => UnknownNodeError::new_err(id),
        CoreError::PolicyCompile(msg) => PolicyCompileError::new_err(msg),
        CoreError::PolicyEval(msg) => PolicyEvalError::new_err(msg),
        CoreError::WorkCap(cap) => WorkCapError::new_err(cap),
        CoreError::Deadline => TimeBudgetError::new_err(()),
        other => InvalidArgumentError::new_err(other.to_string()),
    }
}

fn slice<'a, T: numpy::Element>(arr: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    arr.as_slice().map_err(|_| {
        InvalidArgumentError::new_err(format!("{name} must be a contiguous 1-d array (len {})", arr.len()))
    })
}

/// A set of edge or node types built once (`TypeSet([0, 1, 2])`) and passed to queries in place of
/// a list, so a caller that repeats a filter does not pay for converting it on every call.
#[pyclass(module = "provgraph._core", frozen)]
struct TypeSet {
    mask: EdgeTypeMask,
}

#[pymethods]
impl TypeSet {
    #[new]
    fn new(types: Vec<u16>) -> PyResult<Self> {
        Ok(Self { mask: mask(Some(Types::List(types)))? })
    }

    /// Whether the type code `t` is in the set (any other integer, negative or above 255, is not).
    fn __contains__(&self, t: i64) -> bool {
        (0..=255).contains(&t) && self.mask.contains(t as u8)
    }
}

/// A type filter argument: a `TypeSet`, or a list of type codes.
enum Types {
    Set(EdgeTypeMask),
    List(Vec<u16>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Types {
    type Error = PyErr;

    /// A `TypeSet` is recognised by its type first: trying a variant and failing would build a
    /// Python exception on every call that passes a list.
    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(set) = ob.cast::<TypeSet>() {
            return Ok(Types::Set(set.get().mask));
        }
        Ok(Types::List(ob.extract()?))
    }
}

fn mask(types: Option<Types>) -> PyResult<EdgeTypeMask> {
    match types {
        None => Ok(EdgeTypeMask::all()),
        Some(Types::Set(mask)) => Ok(mask),
        Some(Types::List(list)) => {
            let mut bytes = Vec::with_capacity(list.len());
            for t in list {
                if t > 255 {
                    return Err(InvalidArgumentError::new_err(format!("type {t} outside 0..255")));
                }
                bytes.push(t as u8);
            }
            Ok(EdgeTypeMask::from_types(&bytes))
        }
    }
}

fn depth_u8(value: u32, name: &str, max: u32) -> PyResult<u8> {
    if value == 0 || value > max {
        return Err(InvalidArgumentError::new_err(format!("{name} must be in 1..={max}, got {value}")));
    }
    Ok(value as u8)
}

fn stats_dict<'py>(py: Python<'py>, stats: &QueryStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows_scanned", stats.rows_scanned)?;
    d.set_item("edges_scanned", stats.edges_scanned)?;
    d.set_item("micros", stats.micros)?;
    Ok(d)
}

/// Return `value`, or `(value, stats)` when the caller asked for the plan.
/// Runs a query, timing it (`QueryStats::micros`) only when its plan is asked for: two clock
/// reads are a few percent of a microsecond query.
fn timed<T>(
    explain: bool,
    query: impl FnOnce() -> provgraph_core::Result<(T, QueryStats)>,
) -> provgraph_core::Result<(T, QueryStats)> {
    let t0 = explain.then(std::time::Instant::now);
    let (value, mut stats) = query()?;
    if let Some(t0) = t0 {
        stats.micros = t0.elapsed().as_micros() as u64;
    }
    Ok((value, stats))
}

fn with_plan<'py, T: IntoPyObject<'py>>(
    py: Python<'py>,
    value: T,
    stats: &QueryStats,
    explain: bool,
) -> PyResult<Py<PyAny>> {
    let value = value.into_py_any(py)?;
    if explain {
        (value, stats_dict(py, stats)?).into_py_any(py)
    } else {
        Ok(value)
    }
}

/// A tenant's graph: CSR snapshot + delta overlay; thread-safe, queries release the GIL.
#[pyclass(module = "provgraph._core", frozen)]
struct CsrGraph {
    inner: Arc<RwLock<TenantGraph>>,
}

#[pymethods]
impl CsrGraph {
    #[staticmethod]
    #[pyo3(signature = (src, dst, w, etype, nodes=None, node_types=None))]
    fn from_edges(
        py: Python<'_>,
        src: PyReadonlyArray1<'_, i64>,
        dst: PyReadonlyArray1<'_, i64>,
        w: PyReadonlyArray1<'_, f32>,
        etype: PyReadonlyArray1<'_, u8>,
        nodes: Option<PyReadonlyArray1<'_, i64>>,
        node_types: Option<PyReadonlyArray1<'_, u8>>,
    ) -> PyResult<Self> {
        let (src, dst, w, etype) = (slice(&src, "src")?, slice(&dst, "dst")?, slice(&w, "w")?, slice(&etype, "etype")?);
        let nodes_v: &[i64] = match &nodes {
            Some(a) => slice(a, "nodes")?,
            None => &[],
        };
        let types_v: &[u8] = match &node_types {
            Some(a) => slice(a, "node_types")?,
            None => &[],
        };
        let csr = py.detach(|| Csr::from_edges(src, dst, w, etype, nodes_v, types_v)).map_err(to_py)?;
        Ok(Self { inner: Arc::new(RwLock::new(TenantGraph::new(csr))) })
    }

    #[staticmethod]
    fn empty() -> Self {
        Self { inner: Arc::new(RwLock::new(TenantGraph::empty())) }
    }

    #[pyo3(signature = (seed, n=10, hops=2, edge_types=None, node_types=None, explain=false))]
    #[allow(clippy::too_many_arguments)]
    fn topn(
        &self,
        py: Python<'_>,
        seed: i64,
        n: usize,
        hops: u32,
        edge_types: Option<Types>,
        node_types: Option<Types>,
        explain: bool,
    ) -> PyResult<Py<PyAny>> {
        let (em, nm, hops) = (mask(edge_types)?, mask(node_types)?, depth_u8(hops, "hops", 2)?);
        let g = self.inner.clone();
        let (rows, stats) = py.detach(|| timed(explain, || g.read().topn(seed, hops, n, &em, &nm))).map_err(to_py)?;
        with_plan(py, rows, &stats, explain)
    }

    #[pyo3(signature = (seed, depth=3, limit=50_000, edge_types=None, node_types=None, explain=false))]
    #[allow(clippy::too_many_arguments)]
    fn neighborhood_size(
        &self,
        py: Python<'_>,
        seed: i64,
        depth: u32,
        limit: u64,
        edge_types: Option<Types>,
        node_types: Option<Types>,
        explain: bool,
    ) -> PyResult<Py<PyAny>> {
        let (em, nm, depth) = (mask(edge_types)?, mask(node_types)?, depth_u8(depth, "depth", 8)?);
        let g = self.inner.clone();
        let (count, stats) =
            py.detach(|| timed(explain, || g.read().neighborhood_size(seed, depth, limit, &em, &nm))).map_err(to_py)?;
        with_plan(py, count, &stats, explain)
    }

    #[pyo3(signature = (src, dst, max_depth=4, edge_types=None, explain=false))]
    fn path(
        &self,
        py: Python<'_>,
        src: i64,
        dst: i64,
        max_depth: u32,
        edge_types: Option<Types>,
        explain: bool,
    ) -> PyResult<Py<PyAny>> {
        let (em, max_depth) = (mask(edge_types)?, depth_u8(max_depth, "max_depth", 8)?);
        let g = self.inner.clone();
        let (found, stats) = py.detach(|| timed(explain, || g.read().path(src, dst, max_depth, &em))).map_err(to_py)?;
        with_plan(py, found, &stats, explain)
    }

    #[pyo3(signature = (seed, depth=2, n=10, edge_types=None, node_types=None, explain=false))]
    #[allow(clippy::too_many_arguments)]
    fn topdegree(
        &self,
        py: Python<'_>,
        seed: i64,
        depth: u32,
        n: usize,
        edge_types: Option<Types>,
        node_types: Option<Types>,
        explain: bool,
    ) -> PyResult<Py<PyAny>> {
        let (em, nm, depth) = (mask(edge_types)?, mask(node_types)?, depth_u8(depth, "depth", 4)?);
        let g = self.inner.clone();
        let (rows, stats) = py.detach(|| timed(explain, || g.read().topdegree(seed, depth, n, &em, &nm))).map_err(to_py)?;
        with_plan(py, rows, &stats, explain)
    }

    /// The whole answer to a plain topn or neighborhood spec (the raw JSON body of /graph/query)
    /// as `(kind, response bytes)`; `(kind, work estimate)` unrun when the estimate is over
    /// `max_work`; or None: the caller's full path then answers, errors included (but a budget
    /// limit the query ran into raises here).
    #[pyo3(signature = (body, max_work=None))]
    fn query_json(&self, py: Python<'_>, body: &[u8], max_work: Option<u64>) -> PyResult<Option<(&'static str, Py<PyAny>)>> {
        let g = self.inner.clone();
        let max_work = max_work.unwrap_or(u64::MAX);
        Ok(match py.detach(|| spec::answer(&g.read(), body, max_work)).map_err(to_py)? {
            Some(Fast::Answer(kind, out)) => Some((kind, PyBytes::new(py, &out).into_any().unbind())),
            Some(Fast::Heavy(kind, work)) => Some((kind, work.into_py_any(py)?)),
            None => None,
        })
    }

    /// The edges a query is estimated to read (`TenantGraph::estimate_work`): Q1 with `topn`
    /// (`depth` = hops), else a traversal of `depth` levels stopping at `limit` reached nodes.
    #[pyo3(signature = (seed, depth, limit=u64::MAX, topn=false))]
    fn estimate_work(&self, seed: i64, depth: u32, limit: u64, topn: bool) -> u64 {
        self.inner.read().estimate_work(seed, depth.min(255) as u8, limit, topn)
    }

    fn has_node(&self, id: i64) -> bool {
        self.inner.read().has_node(id)
    }

    fn out_degree(&self, id: i64) -> PyResult<u64> {
        self.inner.read().out_degree(id).map_err(to_py)
    }

    fn upsert_nodes(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>, types: PyReadonlyArray1<'_, u8>) -> PyResult<()> {
        let (ids, types) = (slice(&ids, "ids")?, slice(&types, "types")?);
        let g = self.inner.clone();
        py.detach(|| g.write().upsert_nodes(ids, types)).map_err(to_py)
    }

    fn upsert_edges(
        &self,
        py: Python<'_>,
        src: PyReadonlyArray1<'_, i64>,
        dst: PyReadonlyArray1<'_, i64>,
        w: PyReadonlyArray1<'_, f32>,
        etype: PyReadonlyArray1<'_, u8>,
    ) -> PyResult<()> {
        let (src, dst, w, etype) = (slice(&src, "src")?, slice(&dst, "dst")?, slice(&w, "w")?, slice(&etype, "etype")?);
        let g = self.inner.clone();
        py.detach(|| g.write().upsert_edges(src, dst, w, etype)).map_err(to_py)
    }

    fn delete_edges(&self, py: Python<'_>, src: PyReadonlyArray1<'_, i64>, dst: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let (src, dst) = (slice(&src, "src")?, slice(&dst, "dst")?);
        let g = self.inner.clone();
        py.detach(|| g.write().delete_edges(src, dst)).map_err(to_py)
    }

    fn delete_nodes(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let ids = slice(&ids, "ids")?;
        let g = self.inner.clone();
        py.detach(|| g.write().delete_nodes(ids)).map_err(to_py)
    }

    /// Merge the overlay into a fresh snapshot; writes stay possible during the build.
    fn rebuild(&self, py: Python<'_>) -> PyResult<u64> {
        let g = self.inner.clone();
        py.detach(|| {
            let job = g.write().begin_rebuild()?;
            match job.build() {
                Ok(csr) => {
                    let mut guard = g.write();
                    guard.finish_rebuild(csr)?;
                    Ok(guard.snapshot_version())
                }
                Err(e) => {
                    g.write().abort_rebuild();
                    Err(e)
                }
            }
        })
        .map_err(to_py)
    }

    #[getter]
    fn node_count(&self) -> usize {
        self.inner.read().node_count()
    }
    #[getter]
    fn edge_count(&self) -> usize {
        self.inner.read().edge_count()
    }
    #[getter]
    fn snapshot_version(&self) -> u64 {
        self.inner.read().snapshot_version()
    }
    #[getter]
    fn delta_rows(&self) -> usize {
        self.inner.read().delta_rows()
    }
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.read().memory_bytes()
    }
}

/// Sets the work budget of the graph queries the calling thread runs from now on: at most
/// `max_reached` nodes reached by a traversal (None: no cap), and `timeout_s` seconds from now
/// (None: no deadline). Past either, a query raises WorkCapError / TimeBudgetError.
#[pyfunction]
#[pyo3(signature = (max_reached=None, timeout_s=None))]
fn set_query_budget(max_reached: Option<u64>, timeout_s: Option<f64>) -> PyResult<()> {
    let deadline = match timeout_s {
        None => None,
        Some(t) if t.is_finite() && t >= 0.0 => Some(std::time::Instant::now() + std::time::Duration::from_secs_f64(t.min(1e9))),
        Some(t) => return Err(InvalidArgumentError::new_err(format!("timeout_s must be a finite number >= 0, got {t}"))),
    };
    set_budget(Budget { max_reached: max_reached.unwrap_or(u64::MAX), deadline });
    Ok(())
}

/// Upserts the out-row records `incoming` (distinct dst) into the stored out-row `old`:
/// `(merged row sorted by dst, one byte per incoming record: 1 when its dst was new)`.
#[pyfunction]
fn merge_adjacency<'py>(py: Python<'py>, old: &[u8], incoming: &[u8]) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
    let (merged, fresh) = provgraph_core::graph::rows::merge_adjacency(old, incoming);
    let mask: Vec<u8> = fresh.into_iter().map(u8::from).collect();
    (PyBytes::new(py, &merged), PyBytes::new(py, &mask))
}

/// The sorted union, without duplicates, of two stored in-rows (little-endian i64 ids).
#[pyfunction]
fn union_ids<'py>(py: Python<'py>, old: &[u8], new: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &provgraph_core::graph::rows::union_ids(old, new))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(merge_adjacency, m)?)?;
    m.add_function(wrap_pyfunction!(union_ids, m)?)?;
    m.add_function(wrap_pyfunction!(set_query_budget, m)?)?;
    m.add_class::<CsrGraph>()?;
    m.add_class::<TypeSet>()?;
    canonical::register(m)?;
    policy::register(m)?;
    receipt::register(m)?;
    records::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

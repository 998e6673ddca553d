//! provgraph-core: the algorithms of provgraph, without pyo3: the in-memory graph engine (CSR
//! snapshot + write overlay + queries Q1-Q4, `graph`), RFC 8785 JSON canonicalization
//! (`canonical`), Rego policy evaluation and the decision cache (`policy`), and Ed25519-signed,
//! hash-chained receipts (`receipt`).
// One exception, allowed where it is: the software prefetch of graph::prefetch, a hint that
// cannot fault or change memory (see there).
#![deny(unsafe_code)]

pub mod canonical;
pub mod error;
pub mod graph;
pub mod policy;
pub mod receipt;
pub mod records;

pub use error::{Error, Result};

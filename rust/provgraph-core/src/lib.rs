//! provgraph-core: the in-memory graph engine (CSR snapshot + write overlay + queries Q1-Q4)
//! and RFC 8785 JSON canonicalization (`canonical`).
#![forbid(unsafe_code)]

pub mod canonical;
pub mod error;
pub mod graph;
pub mod policy;
pub mod receipt;

pub use error::{Error, Result};

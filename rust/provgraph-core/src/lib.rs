//! provgraph-core: the in-memory graph engine (CSR snapshot + write overlay + queries Q1-Q4).
#![forbid(unsafe_code)]

pub mod error;
pub mod graph;

pub use error::{Error, Result};

//! Error type shared by every fallible operation of the crate.

/// Errors returned by graph construction, writes and queries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The seed / source / destination node is not a live node of the tenant.
    #[error("unknown node {0}")]
    UnknownNode(i64),
    /// A malformed argument (length mismatch, weight out of range, bad hops, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// JSON text that is malformed or not canonicalizable (duplicate names, lone surrogates, ...).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A policy bundle that does not parse or compile (the message names file:line:col).
    #[error("policy compile error: {0}")]
    PolicyCompile(String),
    /// A policy evaluation that failed (conflicting outputs, strict built-in error, ...).
    #[error("policy evaluation error: {0}")]
    PolicyEval(String),
    /// A receipt that fails verification (bad JSON, missing or malformed signature, signature mismatch).
    #[error("invalid receipt: {0}")]
    InvalidReceipt(String),
    /// A traversal that reached more nodes than its thread's cap (`graph::budget`); the cap.
    #[error("query reached more than {0} nodes, the server's work cap")]
    WorkCap(u64),
    /// A query that ran past its thread's deadline (`graph::budget`).
    #[error("query ran past its time budget")]
    Deadline,
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, Error>;

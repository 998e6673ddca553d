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
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, Error>;

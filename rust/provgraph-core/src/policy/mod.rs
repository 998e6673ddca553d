//! Policy evaluation: OPA-format Rego v1 bundles compiled once per revision with `regorus`
//! ([`CompiledBundle`]), and the decision cache stamped with the bundle revision's epoch
//! ([`DecisionCache`]).
//!
//! Semantics follow OPA v1.x: Rego v1 syntax without `import rego.v1`, non-strict built-in
//! errors (a failing built-in makes its expression undefined), undefined results reported as
//! `None`, conflicts (complete rule with two values) reported as evaluation errors.

mod cache;
mod engine;

pub use cache::{CacheKey, CacheStats, DecisionCache};
pub use engine::CompiledBundle;

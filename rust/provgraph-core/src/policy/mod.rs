//! Policy evaluation: OPA-format Rego v1 bundles compiled once per revision with `regorus`
//! ([`CompiledBundle`]), and the decision cache stamped with the bundle revision's epoch
//! ([`DecisionCache`]).
//!
//! Semantics follow OPA v1.x: Rego v1 syntax without `import rego.v1`, non-strict built-in
//! errors (a failing built-in makes its expression undefined), undefined results reported as
//! `None`, conflicts (complete rule with two values) reported as evaluation errors.
//!
//! Rules run on regorus's bytecode VM (RVM) when the caller asks for it (flag `policy.vm`) and
//! the rule compiles to bytecode; the tree-walking interpreter is the fallback and the baseline.

mod cache;
mod engine;
pub mod hit;
mod vm_gate;

pub use cache::{CacheKey, CacheStats, DecisionCache};
pub use engine::{vm_fallbacks, CompiledBundle};

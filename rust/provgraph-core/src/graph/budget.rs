//! Per-thread limits on a query's work: a cap on the nodes a traversal may reach (deterministic:
//! the same query on the same graph always stops, or never does) and a deadline (load-dependent).
//!
//! A caller sets them for its thread before queries run ([`set_budget`]); the service's worker
//! pool sets one per task. A thread that never sets one has none. The traversals (Q2, Q3, Q4)
//! look every [`CHECK_ROWS`] rows and once more at the end; a query past a limit stops at that
//! row and fails with [`crate::error::Error::WorkCap`] or [`crate::error::Error::Deadline`].
//! Q1 reads at most two hops and is not checked.

use std::cell::Cell;
use std::time::Instant;

/// The limits a query runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most nodes a traversal may reach (the seed and every node it marks).
    pub max_reached: u64,
    /// When a query still running stops.
    pub deadline: Option<Instant>,
}

impl Budget {
    /// No limit (the default of every thread).
    pub const NONE: Budget = Budget { max_reached: u64::MAX, deadline: None };

    /// Whether a traversal that has reached `reached` nodes must stop now, and why.
    #[inline]
    pub(crate) fn check(&self, reached: u64) -> Option<Abort> {
        if reached > self.max_reached {
            return Some(Abort::WorkCap(self.max_reached));
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(Abort::Deadline),
            _ => None,
        }
    }

    /// Whether any limit is set (traversals skip every check otherwise).
    #[inline]
    pub(crate) fn is_limited(&self) -> bool {
        self.max_reached != u64::MAX || self.deadline.is_some()
    }
}

/// Why a query stopped before its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// It reached more nodes than the cap (the cap).
    WorkCap(u64),
    /// It ran past its deadline.
    Deadline,
}

/// Rows a traversal reads between two looks at its budget.
pub(crate) const CHECK_ROWS: u64 = 256;

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget::NONE) };
}

/// Sets the budget of the queries this thread runs from now on.
pub fn set_budget(budget: Budget) {
    BUDGET.with(|b| b.set(budget));
}

/// This thread's budget.
#[inline]
pub fn budget() -> Budget {
    BUDGET.with(|b| b.get())
}

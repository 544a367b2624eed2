//! The evaluation budget: one evaluation may take a bounded number of steps, so that an
//! expression fanning out over a resource (`select()` in `select()`, `repeat()`, doubling
//! `combine()`) fails with a `TooCostly` error instead of exhausting memory or time.

use std::cell::Cell;

use crate::error::Error;
use crate::MAX_EVALUATION_STEPS;

/// Deepest JSON a comparison follows: deeper than any parsed resource (serde_json stops at
/// 128). Deeper values spend the whole budget rather than the stack.
pub(crate) const MAX_JSON_DEPTH: usize = 128;

/// The steps one evaluation has taken. Shared by reference with the comparisons deep in the
/// JSON, which count the nodes they visit; counting is a single addition.
#[derive(Debug, Default)]
pub(crate) struct Steps(Cell<u64>);

impl Steps {
    /// Counts `n` steps; `false` once the budget is spent.
    #[inline]
    pub(crate) fn take(&self, n: u64) -> bool {
        let used = self.0.get().saturating_add(n);
        self.0.set(used);
        used <= MAX_EVALUATION_STEPS
    }

    /// Whether `n` more steps would still fit, without counting them.
    #[inline]
    pub(crate) fn fits(&self, n: u64) -> bool {
        self.0.get().saturating_add(n) <= MAX_EVALUATION_STEPS
    }

    /// Spends the whole budget: for work that cannot go on at all (JSON nested deeper than
    /// any comparison follows).
    pub(crate) fn exhaust(&self) {
        self.0.set(u64::MAX);
    }

    pub(crate) fn spent(&self) -> bool {
        self.0.get() > MAX_EVALUATION_STEPS
    }
}

/// The error of a spent budget, at the node whose evaluation spent it.
#[cold]
#[inline(never)]
pub(crate) fn too_costly(pos: usize) -> Error {
    Error::too_costly(
        pos,
        format!("the expression is too costly: it needs more than {MAX_EVALUATION_STEPS} evaluation steps"),
    )
}

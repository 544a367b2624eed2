//! The issues of one call and the work it has done: issues are capped at [`MAX_ISSUES`], and
//! once the work budget ([`MAX_EVALUATIONS`], [`MAX_NODES`]) is spent the call stops with a
//! `too-costly` warning.

use flint_fhir::{Issue, IssueSeverity, IssueType};

use crate::{MAX_EVALUATIONS, MAX_ISSUES, MAX_NODES};

#[derive(Default)]
pub(crate) struct Report {
    issues: Vec<Issue>,
    left_out: usize,
    evaluations: u64,
    nodes: u64,
    stopped: bool,
}

/// An issue of any severity.
pub(crate) fn issue(
    severity: IssueSeverity,
    code: IssueType,
    diagnostics: impl Into<String>,
    location: String,
) -> Issue {
    Issue {
        severity,
        code,
        diagnostics: diagnostics.into(),
        expression: vec![location],
    }
}

impl Report {
    pub(crate) fn push(&mut self, issue: Issue) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(issue);
        } else {
            self.left_out += 1;
        }
    }

    /// Whether the budget is spent: callers stop their work.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Counts one invariant evaluation; `false` (with the warning pushed once) past the budget.
    pub(crate) fn evaluation(&mut self, location: impl FnOnce() -> String) -> bool {
        self.evaluations += 1;
        self.within(self.evaluations > MAX_EVALUATIONS, location, || {
            format!("validation stopped: the resource needs more than {MAX_EVALUATIONS} invariant evaluations")
        })
    }

    /// Counts one element visited; `false` past the budget.
    pub(crate) fn node(&mut self, location: impl FnOnce() -> String) -> bool {
        self.nodes += 1;
        self.within(self.nodes > MAX_NODES, location, || {
            format!("validation stopped: the resource has more than {MAX_NODES} elements")
        })
    }

    fn within(
        &mut self,
        over: bool,
        location: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) -> bool {
        if self.stopped {
            return false;
        }
        if over {
            self.stopped = true;
            // The stop is always reported, even past the issue cap.
            self.issues.push(issue(
                IssueSeverity::Warning,
                IssueType::TooCostly,
                message(),
                location(),
            ));
            return false;
        }
        true
    }

    /// The issues, with a last one (located at `root`, the resource) saying how many were
    /// left out.
    pub(crate) fn finish(mut self, root: &str) -> Vec<Issue> {
        if self.left_out > 0 {
            self.issues.push(issue(
                IssueSeverity::Information,
                IssueType::Informational,
                format!(
                    "{} more issues were found and are not reported (at most {MAX_ISSUES} are)",
                    self.left_out
                ),
                root.to_string(),
            ));
        }
        self.issues
    }
}

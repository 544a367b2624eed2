//! When a read must stop: a deadline (`[search] timeout_ms`) and a flag that the request's
//! adapter sets when its client has gone. Backends check it while a statement runs (SQLite's
//! progress handler, PostgreSQL's statement timeout and cancel), so a costly query ends
//! rather than holding a reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_fhir::{Error, IssueType};

/// A cancellation flag and an optional deadline, cheap to clone. The default never
/// interrupts.
#[derive(Clone, Debug, Default)]
pub struct Interrupt {
    cancelled: Option<Arc<AtomicBool>>,
    deadline: Option<(Instant, Duration)>,
}

impl Interrupt {
    /// A fresh flag, not yet set, and no deadline.
    pub fn new() -> Interrupt {
        Interrupt {
            cancelled: Some(Arc::new(AtomicBool::new(false))),
            deadline: None,
        }
    }

    /// The same flag with a deadline `limit` from now (the earlier one is kept if sooner).
    pub fn within(&self, limit: Duration) -> Interrupt {
        let until = Instant::now() + limit;
        let deadline = match self.deadline {
            Some((d, l)) if d <= until => Some((d, l)),
            _ => Some((until, limit)),
        };
        Interrupt {
            cancelled: self.cancelled.clone(),
            deadline,
        }
    }

    /// The same flag without a deadline (work that may take long, such as a background job,
    /// still stops when cancelled).
    pub fn without_deadline(&self) -> Interrupt {
        Interrupt {
            cancelled: self.cancelled.clone(),
            deadline: None,
        }
    }

    /// Sets the flag: every check from now on fails.
    pub fn cancel(&self) {
        if let Some(flag) = &self.cancelled {
            flag.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Whether the work should stop now (cheap enough to call every few thousand steps).
    pub fn is_due(&self) -> bool {
        self.is_cancelled() || self.deadline.is_some_and(|(d, _)| Instant::now() >= d)
    }

    /// `Ok` while the work may go on; otherwise the error that says why it stopped.
    ///
    /// # Errors
    /// The client went away, or the deadline passed.
    pub fn check(&self) -> flint_fhir::Result<()> {
        if self.is_cancelled() {
            return Err(cancelled());
        }
        match self.deadline {
            Some((d, limit)) if Instant::now() >= d => Err(timed_out(limit)),
            _ => Ok(()),
        }
    }

    /// The error for work a backend stopped because of this interrupt.
    pub fn error(&self) -> Error {
        match self.check() {
            Err(e) => e,
            // Interrupted, but neither reason holds any more: say so plainly.
            Ok(()) => {
                Error::new(IssueType::Exception, "the query was interrupted").with_status(500)
            }
        }
    }
}

fn cancelled() -> Error {
    // Nobody reads this answer (the client is gone); 499 keeps such requests apart in logs.
    Error::new(
        IssueType::Exception,
        "the client closed the connection; the work was stopped",
    )
    .with_status(499)
}

fn timed_out(limit: Duration) -> Error {
    Error::new(
        IssueType::TooCostly,
        format!(
            "the search did not finish within its time limit of {} ms ([search] timeout_ms); \
             narrow the criteria, or ask for fewer results or no total",
            limit.as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_deadlines() {
        assert!(Interrupt::default().check().is_ok());
        let i = Interrupt::new();
        let timed = i.within(Duration::ZERO);
        assert_eq!(timed.check().unwrap_err().code(), IssueType::TooCostly);
        assert!(i.check().is_ok());
        i.cancel();
        assert_eq!(timed.check().unwrap_err().status(), 499);
        assert!(timed.without_deadline().is_due());
    }
}

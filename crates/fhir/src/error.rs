//! The one error type of Flint. It carries `OperationOutcome` issues with R4 issue codes and an
//! optional HTTP status; [`Error::status`] is the single place that maps kinds to statuses.

use std::fmt;

use serde_json::{json, Value};

/// The R4 `IssueType` value set (`http://hl7.org/fhir/issue-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    /// Every issue type.
    pub const ALL: [IssueType; 31] = {
        use IssueType::*;
        [
            Invalid,
            Structure,
            Required,
            Value,
            Invariant,
            Security,
            Login,
            Unknown,
            Expired,
            Forbidden,
            Suppressed,
            Processing,
            NotSupported,
            Duplicate,
            MultipleMatches,
            NotFound,
            Deleted,
            TooLong,
            CodeInvalid,
            Extension,
            TooCostly,
            BusinessRule,
            Conflict,
            Transient,
            LockError,
            NoStore,
            Exception,
            Timeout,
            Incomplete,
            Throttled,
            Informational,
        ]
    };

    /// The issue type an `OperationOutcome` code names.
    pub fn from_code(code: &str) -> Option<IssueType> {
        IssueType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The code as written in an `OperationOutcome`.
    pub fn code(self) -> &'static str {
        use IssueType::*;
        match self {
            Invalid => "invalid",
            Structure => "structure",
            Required => "required",
            Value => "value",
            Invariant => "invariant",
            Security => "security",
            Login => "login",
            Unknown => "unknown",
            Expired => "expired",
            Forbidden => "forbidden",
            Suppressed => "suppressed",
            Processing => "processing",
            NotSupported => "not-supported",
            Duplicate => "duplicate",
            MultipleMatches => "multiple-matches",
            NotFound => "not-found",
            Deleted => "deleted",
            TooLong => "too-long",
            CodeInvalid => "code-invalid",
            Extension => "extension",
            TooCostly => "too-costly",
            BusinessRule => "business-rule",
            Conflict => "conflict",
            Transient => "transient",
            LockError => "lock-error",
            NoStore => "no-store",
            Exception => "exception",
            Timeout => "timeout",
            Incomplete => "incomplete",
            Throttled => "throttled",
            Informational => "informational",
        }
    }

    /// The HTTP status an error of this kind gets unless the error names one.
    pub fn default_status(self) -> u16 {
        use IssueType::*;
        match self {
            NotFound => 404,
            Deleted => 410,
            Conflict | Duplicate | LockError => 409,
            MultipleMatches => 412,
            Security | Login | Expired => 401,
            Forbidden | Suppressed => 403,
            TooLong => 413,
            TooCostly => 422,
            BusinessRule => 422,
            Exception | NoStore => 500,
            Transient | Timeout => 503,
            Throttled => 429,
            _ => 400,
        }
    }
}

/// How bad an issue is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl IssueSeverity {
    pub fn code(self) -> &'static str {
        match self {
            IssueSeverity::Fatal => "fatal",
            IssueSeverity::Error => "error",
            IssueSeverity::Warning => "warning",
            IssueSeverity::Information => "information",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    pub diagnostics: String,
    /// FHIRPath expressions locating the problem (`Patient.birthDate`).
    pub expression: Vec<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: IssueSeverity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression.push(expression.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
        });
        if !self.expression.is_empty() {
            issue["expression"] = json!(self.expression);
        }
        issue
    }
}

/// An error that becomes an `OperationOutcome`.
pub struct Error {
    pub issues: Vec<Issue>,
    status: Option<u16>,
    /// Detail for the log only; never shown to the client.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Clone for Error {
    /// A copy for a second reader (an asynchronous request's waiter and its record); the
    /// log-only source is kept as its text.
    fn clone(&self) -> Error {
        Error {
            issues: self.issues.clone(),
            status: self.status,
            source: self
                .source
                .as_ref()
                .map(|s| Box::<dyn std::error::Error + Send + Sync>::from(s.to_string())),
        }
    }
}

impl Error {
    pub fn new(code: IssueType, diagnostics: impl Into<String>) -> Error {
        Error::from_issues(vec![Issue::error(code, diagnostics)])
    }

    pub fn from_issues(issues: Vec<Issue>) -> Error {
        Error {
            issues,
            status: None,
            source: None,
        }
    }

    /// Sets the HTTP status explicitly (412, 415, 406, 405 ...).
    pub fn with_status(mut self, status: u16) -> Error {
        self.status = Some(status);
        self
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    /// Adds an expression to the first issue.
    pub fn at(mut self, expression: impl Into<String>) -> Error {
        if let Some(first) = self.issues.first_mut() {
            first.expression.push(expression.into());
        }
        self
    }

    pub fn invalid(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::Invalid, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::NotFound, diagnostics)
    }

    pub fn gone(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::Deleted, diagnostics)
    }

    pub fn conflict(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::Conflict, diagnostics)
    }

    /// A failed precondition (`If-Match`, conditional interactions): 412.
    pub fn precondition_failed(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::Conflict, diagnostics).with_status(412)
    }

    pub fn not_supported(diagnostics: impl Into<String>) -> Error {
        Error::new(IssueType::NotSupported, diagnostics)
    }

    /// A server fault. The diagnostics shown to the client stay generic; `detail` goes to the log.
    pub fn internal(detail: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::new(IssueType::Exception, "internal server error").with_source(detail)
    }

    /// The HTTP status: the explicit one, else the first issue's kind.
    pub fn status(&self) -> u16 {
        self.status
            .unwrap_or_else(|| self.issues.first().map_or(500, |i| i.code.default_status()))
    }

    /// The first issue's kind.
    pub fn code(&self) -> IssueType {
        self.issues.first().map_or(IssueType::Exception, |i| i.code)
    }

    pub fn is_server_fault(&self) -> bool {
        self.status() >= 500
    }

    pub fn to_operation_outcome(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": self.issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let Some(source) = &self.source {
            write!(f, " ({source:?})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status())?;
        for issue in &self.issues {
            write!(f, " [{}] {}", issue.code.code(), issue.diagnostics)?;
            if !issue.expression.is_empty() {
                write!(f, " at {}", issue.expression.join(", "))?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Builds an informational `OperationOutcome` (for `Prefer: return=OperationOutcome`).
pub fn information(diagnostics: impl Into<String>) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": diagnostics.into()}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_issue_kind_unless_set() {
        let cases = [
            (Error::not_found("x"), 404),
            (Error::gone("x"), 410),
            (Error::invalid("x"), 400),
            (Error::conflict("x"), 409),
            (Error::precondition_failed("x"), 412),
            (Error::new(IssueType::TooLong, "x"), 413),
            (Error::internal("boom"), 500),
            (Error::not_supported("x").with_status(415), 415),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }

    #[test]
    fn outcome_names_code_and_expression() {
        let oo = Error::invalid("bad date")
            .at("Patient.birthDate")
            .to_operation_outcome();
        assert_eq!(oo["issue"][0]["code"], "invalid");
        assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate");
        let internal = Error::internal("secret detail").to_operation_outcome();
        assert!(!internal.to_string().contains("secret"));
    }
}

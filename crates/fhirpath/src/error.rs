//! The FHIRPath error: what went wrong, at which character of the expression, and in which
//! phase (syntax, semantic check, evaluation), convertible into Flint's OperationOutcome error.

use std::fmt;

/// The phase an error comes from; conformance tests expect `syntax`, `semantic` or `execution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not a FHIRPath expression.
    Syntax,
    /// The expression is well formed but meaningless (unknown function, wrong arity, an element
    /// the type does not have under strict checking).
    Semantic,
    /// Evaluation failed on the data (a collection where one item is required, a type error).
    Execution,
    /// Evaluation needed more than its budget (steps or string size, see
    /// [`crate::MAX_EVALUATION_STEPS`]): the expression is too costly for the data.
    TooCostly,
}

/// A FHIRPath error with the character offset in the expression where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Character offset (in bytes) into the expression text.
    pub position: usize,
}

impl Error {
    pub fn syntax(position: usize, message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Syntax,
            message: message.into(),
            position,
        }
    }
    pub fn semantic(position: usize, message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Semantic,
            message: message.into(),
            position,
        }
    }
    pub fn execution(position: usize, message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Execution,
            message: message.into(),
            position,
        }
    }
    pub fn too_costly(position: usize, message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::TooCostly,
            message: message.into(),
            position,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.kind {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::Semantic => "invalid expression",
            ErrorKind::Execution => "evaluation error",
            ErrorKind::TooCostly => "evaluation stopped",
        };
        write!(
            f,
            "FHIRPath {phase} at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for Error {}

/// A too costly evaluation is `too-costly` (422); every other error is `invalid` (400).
impl From<Error> for flint_fhir::Error {
    fn from(e: Error) -> flint_fhir::Error {
        let code = match e.kind {
            ErrorKind::TooCostly => flint_fhir::IssueType::TooCostly,
            _ => flint_fhir::IssueType::Invalid,
        };
        flint_fhir::Error::new(code, e.to_string())
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

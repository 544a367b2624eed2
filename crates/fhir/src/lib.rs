//! FHIR R4 knowledge with no IO: the embedded 4.0.1 definitions, the type model derived from
//! them, date/time primitives, the error type that becomes an `OperationOutcome`, and the
//! structural check every resource passes before it is written.

pub mod datetime;
pub mod definitions;
pub mod error;
pub mod model;
pub mod patch;
pub mod validate;

pub use error::{Error, Issue, IssueSeverity, IssueType, Result};
pub use model::Model;

/// The FHIR version this crate describes.
pub const FHIR_VERSION: &str = "4.0.1";

/// The canonical base of Flint's own conformance resources: OperationDefinitions of the
/// operations the specification does not define (`[CANONICAL]/OperationDefinition/[id]`),
/// and later extensions and code systems.
pub const CANONICAL: &str = "https://flint-fhir.dev/fhir";

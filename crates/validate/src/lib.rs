//! The deep checks behind `$validate`, beyond the structural check every write makes
//! (`flint_fhir::validate`): the FHIRPath invariants (`constraint[]`) of the R4 core
//! StructureDefinitions, required bindings, and conformance to profiles — StructureDefinitions
//! with a snapshot, or with only a differential from which a snapshot is built here.
//!
//! No IO: value set membership comes through [`ValueSets`], and StructureDefinitions other than
//! the one being checked against come through a resolver the caller passes. Every check is
//! bounded: each FHIRPath evaluation runs under the engine's budget, one call evaluates at most
//! [`MAX_EVALUATIONS`] invariants over at most [`MAX_NODES`] elements, and reports at most
//! [`MAX_ISSUES`] issues.
//!
//! ```
//! use flint_validate::{NoValueSets, Validator};
//! let patient = serde_json::json!({
//!     "resourceType": "Patient",
//!     "contact": [{"gender": "female"}]
//! });
//! let issues = Validator::core().check(&patient, &NoValueSets);
//! let pat1 = issues.iter().find(|i| i.diagnostics.starts_with("pat-1:")).unwrap();
//! assert_eq!(pat1.severity, flint_fhir::IssueSeverity::Error);
//! assert_eq!(pat1.expression, ["Patient.contact[0]"]);
//! ```

mod bindings;
mod invariants;
mod json;
mod profile;
mod report;
mod slicing;
mod snapshot;
mod walk;

use std::collections::HashMap;
use std::sync::OnceLock;

use flint_fhir::{Issue, Result};
use serde_json::Value;

pub use snapshot::{snapshot, Snapshot, MAX_BASE_CHAIN, MAX_SNAPSHOT_ELEMENTS};

/// Most issues one call reports; past it one more issue says that the rest were left out.
pub const MAX_ISSUES: usize = 100;

/// Most invariant evaluations (one constraint on one element) one call makes. The R4 examples
/// take a few hundred each; a resource needing more stops being checked with a `too-costly`
/// warning instead of taking unbounded time (each evaluation is itself bounded by
/// `flint_fhirpath::MAX_EVALUATION_STEPS`).
pub const MAX_EVALUATIONS: u64 = 200_000;

/// Most elements one call visits (resource, datatypes and primitives, contained resources and
/// Bundle entries included).
pub const MAX_NODES: u64 = 200_000;

/// Deepest nesting of elements followed; the structural check refuses deeper resources, so
/// this only bounds the recursion on input that skipped it.
pub const MAX_DEPTH: usize = 64;

/// Value set membership, which the server answers from its terminology (stored and core value
/// sets).
pub trait ValueSets: Sync {
    /// Whether `code` (with its `system` when the value has one; `None` for `code` elements,
    /// whose system the value set implies) is in the value set with this canonical URL, as the
    /// definition writes it (possibly with `|version`). `Ok(None)` when the server cannot tell:
    /// the value set is unknown, or cannot be expanded (it draws on a code system the server
    /// does not hold in full). An `Err` becomes a warning that the binding was not checked.
    ///
    /// # Errors
    /// Whatever the terminology fails with; it never fails the validation.
    fn contains(&self, value_set: &str, system: Option<&str>, code: &str) -> Result<Option<bool>>;
}

/// A [`ValueSets`] that knows no value set: bindings are not checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoValueSets;

impl ValueSets for NoValueSets {
    fn contains(&self, _: &str, _: Option<&str>, _: &str) -> Result<Option<bool>> {
        Ok(None)
    }
}

/// Resolves a StructureDefinition by canonical URL (possibly with `|version`): the server's
/// stored ones first, then the core ones. The core definitions are also looked up here when
/// the resolver returns `None`.
pub type ResolveStructureDefinition<'a> = dyn Fn(&str) -> Option<Value> + 'a;

/// The validator: the core invariants compiled once and the core required bindings, indexed by
/// element path. Build it once per process ([`Validator::core`]); each call is then cheap and
/// may run on any thread.
pub struct Validator {
    invariants: invariants::Invariants,
    bindings: bindings::Bindings,
    /// Invariant key → expression of every core constraint: what a profile's snapshot repeats
    /// from the core definitions is not checked twice.
    core_constraints: HashMap<String, String>,
    /// Profile constraints compiled on first use, by expression text.
    compiled: invariants::CompileCache,
}

impl Validator {
    /// The validator for the embedded R4 core definitions, built on first use.
    pub fn core() -> &'static Validator {
        static CORE: OnceLock<Validator> = OnceLock::new();
        CORE.get_or_init(|| {
            Validator::from_definitions(
                flint_fhir::definitions::types(),
                flint_fhir::definitions::profiles(),
            )
        })
    }

    /// Builds a validator from base StructureDefinitions with snapshots (`types`) and the
    /// constraining ones that element types may name as profiles (`SimpleQuantity`,
    /// `MoneyQuantity`: their invariants apply where an element names them). Every invariant is
    /// compiled here, once per distinct expression.
    pub fn from_definitions(types: &[Value], profiles: &[Value]) -> Validator {
        let invariants = invariants::Invariants::build(types, profiles);
        let core_constraints = invariants.keys();
        Validator {
            invariants,
            bindings: bindings::Bindings::build(types),
            core_constraints,
            compiled: invariants::CompileCache::default(),
        }
    }

    /// Checks a resource against the invariants and the required bindings of the core
    /// definitions: every element, in contained resources and Bundle entries too (there
    /// `%resource` is the contained or entry resource, `%rootResource` the container of a
    /// contained resource). Failed `error` invariants are errors (`invariant`), failed
    /// `warning` ones warnings; a code outside a required value set is an error
    /// (`code-invalid`). An invariant that cannot be evaluated is at most a warning. Each issue
    /// names its location (`Patient.contact[0]`).
    ///
    /// The resource is expected to have passed the structural check; elements that check
    /// would refuse are skipped, never a panic.
    pub fn check(&self, resource: &Value, value_sets: &dyn ValueSets) -> Vec<Issue> {
        let mut report = report::Report::default();
        walk::walk(
            resource,
            &mut CoreVisitor {
                validator: self,
                value_sets,
                report: &mut report,
            },
        );
        report.finish(root_location(resource))
    }

    /// Checks a resource against a profile: a StructureDefinition with a snapshot, or with only
    /// a differential (the snapshot is then built on the base's, see [`snapshot`]), chained
    /// through `resolve_sd`. Checked: cardinalities, `fixed[x]` and `pattern[x]`, types and
    /// reference targets, required bindings, the profile's own invariants, `maxLength`, slicing
    /// (`value`, `pattern`, `exists` and `type` discriminators, extensions by `url`), and
    /// extensions and datatypes against the profiles their types name. What the core
    /// definitions already require is left to [`Validator::check`] and the structural check;
    /// slicing that cannot be checked is a warning, never an error.
    ///
    /// Whether the profile applies (it is in `meta.profile`, or the client named it) is the
    /// caller's choice.
    ///
    /// # Errors
    /// The profile is not a usable StructureDefinition: neither snapshot nor differential, a
    /// base that `resolve_sd` does not find, or a chain of bases too long.
    pub fn check_profile(
        &self,
        resource: &Value,
        profile: &Value,
        resolve_sd: &ResolveStructureDefinition<'_>,
        value_sets: &dyn ValueSets,
    ) -> Result<Vec<Issue>> {
        let mut report = report::Report::default();
        profile::check(self, resource, profile, resolve_sd, value_sets, &mut report)?;
        Ok(report.finish(root_location(resource)))
    }
}

/// Where a whole-resource issue is located: the resource type.
fn root_location(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("$this")
}

/// The visitor of [`Validator::check`]: invariants, then bindings, on every element.
struct CoreVisitor<'c> {
    validator: &'c Validator,
    value_sets: &'c dyn ValueSets,
    report: &'c mut report::Report,
}

impl<'v> walk::Visitor<'v> for CoreVisitor<'_> {
    fn visit(&mut self, node: &walk::Node<'v>, scope: &walk::Scope<'v>, loc: &walk::Loc<'v>) {
        self.validator
            .invariants
            .check_node(node, scope, loc, self.value_sets, self.report);
        if let Some(value_set) = self.validator.bindings.required(node.path) {
            bindings::check(value_set, node, loc, self.value_sets, self.report);
        }
    }

    fn report(&mut self) -> &mut report::Report {
        self.report
    }
}

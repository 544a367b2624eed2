//! FHIRPath for Flint: the FHIRPath N1 language as FHIR R4 uses it, compiled once into an
//! [`Expression`] and evaluated over resource JSON (`serde_json::Value`) typed by the embedded
//! R4 model. No IO: references, terminology and profiles come through traits the caller
//! implements ([`Resolver`], [`Terminology`], [`ProfileChecker`]).
//!
//! ```
//! use flint_fhirpath::Expression;
//! let patient = serde_json::json!({"resourceType": "Patient", "birthDate": "1974-12-25"});
//! let expr = Expression::compile("Patient.birthDate < @2000-01-01").unwrap();
//! assert_eq!(expr.evaluate_boolean(&patient).unwrap(), Some(true));
//! ```

mod ast;
mod budget;
mod decimal;
mod error;
mod eval;
mod lexer;
mod nav;
mod ops;
mod parser;
pub mod temporal;
pub mod ucum;
mod value;

use std::borrow::Cow;

use serde_json::Value;

pub use decimal::Decimal;
pub use error::{Error, ErrorKind, Result};
pub use value::{is_calendar_unit, Elem, Item, Quantity};

/// Deepest nesting of sub-expressions (parentheses, function arguments, indexes, unary
/// operators) the parser follows; deeper text is a syntax error, so parsing cannot exhaust the
/// stack. Real expressions nest a few levels.
pub const MAX_NESTING: usize = 64;

/// Tallest compiled tree (a leaf is 1): long chains of operators or `.` steps count as well as
/// nesting. Evaluation recurses along the tree, so this also bounds its recursion depth.
pub const MAX_TREE_HEIGHT: u32 = 128;

/// Most steps one evaluation may take: every node evaluated is a step, as is every item
/// navigation, variables and functions such as `descendants()` or `split()` produce, every
/// item compared by `distinct()`, `union` and the like, every JSON node compared for equality
/// and every 64 bytes of string built. Past it evaluation fails with
/// [`ErrorKind::TooCostly`]. The core SearchParameters take orders of magnitude fewer on real
/// resources; a million items are some 50 MB.
pub const MAX_EVALUATION_STEPS: u64 = 1_000_000;

/// Longest string an evaluation may build (by concatenation, `join()`, `replace()` and the
/// other string functions); strings read from the resource are not copied and not counted.
pub const MAX_STRING_BYTES: usize = 4 * 1024 * 1024;

/// A FHIRPath collection: small collections stay inline.
pub type Collection<'a> = smallvec::SmallVec<[Item<'a>; 2]>;

/// Finds the resource a reference points at, for `resolve()`. References inside the resource
/// being evaluated (contained `#id`, Bundle entries) are found without it.
pub trait Resolver: Sync {
    /// The resource for a reference as written (`Patient/1`, an absolute URL, `urn:uuid:...`).
    fn resolve(&self, reference: &str) -> Option<&Value>;
}

/// Terminology answers for `memberOf()`, `subsumes()` and `subsumedBy()`.
pub trait Terminology: Sync {
    /// Whether the code (with its system when known) is in the value set; `None` when the
    /// value set cannot be evaluated, which makes the result empty.
    fn member_of(&self, value_set: &str, system: Option<&str>, code: &str) -> Option<bool>;
    /// Whether code `a` subsumes code `b` in `system`; `None` when unknown.
    fn subsumes(&self, _system: &str, _a: &str, _b: &str) -> Option<bool> {
        None
    }
}

/// Profile validation for `conformsTo()` beyond the core type profiles, which the engine
/// answers itself.
pub trait ProfileChecker: Sync {
    /// Whether the resource conforms to the profile; `None` when the profile is unknown.
    fn conforms_to(&self, resource: &Value, profile: &str) -> Option<bool>;
}

/// A callback for `trace(name)`: the name and the traced collection.
pub type Tracer<'a> = dyn Fn(&str, &[Item<'_>]) + Sync + 'a;

/// The environment of one evaluation: variables, hooks and options. Cheap to build.
#[derive(Default)]
pub struct Context<'a> {
    vars: Vec<(Cow<'a, str>, Vec<Item<'a>>)>,
    pub(crate) resource: Option<&'a Value>,
    pub(crate) root_resource: Option<&'a Value>,
    pub(crate) resolver: Option<&'a dyn Resolver>,
    pub(crate) terminology: Option<&'a dyn Terminology>,
    pub(crate) profiles: Option<&'a dyn ProfileChecker>,
    pub(crate) tracer: Option<&'a Tracer<'a>>,
    pub(crate) now: Option<temporal::Temporal>,
    pub(crate) strict: bool,
    pub(crate) check_ordered: bool,
}

impl<'a> Context<'a> {
    pub fn new() -> Context<'a> {
        Context::default()
    }

    /// Sets `%name` (without the `%`) to a collection.
    pub fn var(mut self, name: impl Into<Cow<'a, str>>, value: Vec<Item<'a>>) -> Self {
        let name = name.into();
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value));
        self
    }

    /// Sets `%name` to a JSON value: strings, numbers and booleans become System values,
    /// objects become elements typed by their `resourceType` when they have one, arrays
    /// become collections.
    pub fn json_var(self, name: impl Into<Cow<'a, str>>, value: &'a Value) -> Self {
        let items = json_items(value);
        self.var(name, items)
    }

    /// The resource `%resource` stands for when it is not the evaluated one (a contained
    /// resource's container, a Bundle entry's Bundle).
    pub fn resource(mut self, resource: &'a Value) -> Self {
        self.resource = Some(resource);
        self
    }

    /// `%rootResource`, when different from `%resource`.
    pub fn root_resource(mut self, resource: &'a Value) -> Self {
        self.root_resource = Some(resource);
        self
    }

    pub fn resolver(mut self, r: &'a dyn Resolver) -> Self {
        self.resolver = Some(r);
        self
    }

    pub fn terminology(mut self, t: &'a dyn Terminology) -> Self {
        self.terminology = Some(t);
        self
    }

    pub fn profiles(mut self, p: &'a dyn ProfileChecker) -> Self {
        self.profiles = Some(p);
        self
    }

    pub fn tracer(mut self, t: &'a Tracer<'a>) -> Self {
        self.tracer = Some(t);
        self
    }

    /// Fixes the clock for `now()`, `today()` and `timeOfDay()` (tests, reproducible runs).
    pub fn now(mut self, now: temporal::Temporal) -> Self {
        self.now = Some(now);
        self
    }

    /// Strict mode: navigating to an element the type does not define, or naming a choice
    /// element with its type suffix (`valueQuantity`), is an error instead of an empty result.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Rejects order-dependent functions (`skip`, `first`...) applied to the unordered
    /// results of `children()` and `descendants()`.
    pub fn check_ordered_functions(mut self, check: bool) -> Self {
        self.check_ordered = check;
        self
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<&[Item<'a>]> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// JSON as FHIRPath items (see [`Context::json_var`]). Arrays are flattened, nested ones too,
/// without recursion.
pub fn json_items(value: &Value) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    let mut pending: Vec<std::slice::Iter<'_, Value>> = Vec::new();
    let mut next = Some(value);
    loop {
        match next {
            Some(Value::Array(a)) => pending.push(a.iter()),
            Some(v) => out.extend(json_item(v)),
            None => {}
        }
        next = loop {
            let Some(top) = pending.last_mut() else {
                return out;
            };
            match top.next() {
                Some(v) => break Some(v),
                None => {
                    pending.pop();
                }
            }
        };
    }
}

/// One JSON value other than an array as an item: objects are elements typed by their
/// `resourceType`, scalars System values, `null` nothing.
fn json_item(value: &Value) -> Option<Item<'_>> {
    match value {
        Value::Null | Value::Array(_) => None,
        Value::Object(o) => {
            // `resourceType` comes first in resources as FHIR writes them.
            let ty = match o.iter().next() {
                Some((k, v)) if k == "resourceType" => v.as_str(),
                _ => nav::get(o, "resourceType").and_then(Value::as_str),
            };
            Some(Item::Elem(Elem::new(Some(value), None, ty.unwrap_or(""))))
        }
        other => Item::Elem(Elem::new(Some(other), None, "")).to_system(),
    }
}

/// A compiled FHIRPath expression: parsed once, functions and operators resolved, reusable
/// from any thread.
#[derive(Clone, Debug)]
pub struct Expression {
    text: String,
    root: ast::Node,
}

impl Expression {
    /// Parses and compiles an expression.
    ///
    /// # Errors
    /// A syntax error, an unknown function or a wrong number of arguments, with its position.
    pub fn compile(text: &str) -> Result<Expression> {
        let root = parser::parse(text)?;
        Ok(Expression {
            text: text.to_string(),
            root,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates against a resource (which is `%resource`, `%context` and the focus).
    ///
    /// # Errors
    /// An evaluation error (a type error, more than one item where one is needed).
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Result<Vec<Item<'a>>> {
        self.evaluate_with(resource, &Context::default())
    }

    /// Evaluates against a resource with variables and hooks.
    ///
    /// # Errors
    /// As [`Expression::evaluate`]; also an undefined `%variable`.
    pub fn evaluate_with<'a>(
        &'a self,
        resource: &'a Value,
        ctx: &Context<'a>,
    ) -> Result<Vec<Item<'a>>> {
        let focus = json_items(resource);
        eval::Evaluator::new(ctx, resource)
            .run(&self.root, &focus)
            .map(smallvec::SmallVec::into_vec)
    }

    /// Evaluates with a focus other than a whole resource (an element inside it). The result
    /// is a [`Collection`], which holds up to two items without allocating.
    ///
    /// # Errors
    /// As [`Expression::evaluate_with`].
    pub fn evaluate_items<'a>(
        &'a self,
        resource: &'a Value,
        focus: &[Item<'a>],
        ctx: &Context<'a>,
    ) -> Result<Collection<'a>> {
        eval::Evaluator::new(ctx, resource).run(&self.root, focus)
    }

    /// Evaluates to a boolean the way invariants and filters read a result: empty is `None`,
    /// one Boolean is its value, one other item is `true`.
    ///
    /// # Errors
    /// An evaluation error, or a result of several items.
    pub fn evaluate_boolean(&self, resource: &Value) -> Result<Option<bool>> {
        let focus = json_items(resource);
        let items = eval::Evaluator::new(&Context::default(), resource).run(&self.root, &focus)?;
        match items.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(match one.to_system() {
                Some(Item::Bool(b)) => b,
                _ => true,
            })),
            _ => Err(Error::execution(
                0,
                "expected a single boolean, found a collection",
            )),
        }
    }
}

/// Evaluates `expr` against `resource` and returns the result collection as a JSON array of
/// typed values, for the `flint fhirpath` command and other tools.
///
/// Each item is an object `{"type": T, "value": V}`:
/// - FHIR elements keep their FHIR type and JSON: `{"type": "HumanName", "value": {...}}`,
///   `{"type": "date", "value": "1974-12-25"}`; a primitive's extensions, when present, are
///   under `"extension"` (the `_name` object).
/// - FHIRPath System values use the matching FHIR primitive names: `boolean`, `integer`,
///   `integer64` (text), `decimal` (a JSON number keeping its digits), `string`, `date`,
///   `dateTime`, `time` (text as FHIR writes it, with its precision: `"2020-01"`), and
///   `Quantity` as `{"value": 1.5, "unit": "mg", "system": "http://unitsofmeasure.org",
///   "code": "mg"}` (calendar durations such as `1 year` have only `value` and `unit`).
///
/// `vars` are `%name` variables given as JSON (strings, numbers, booleans, resources).
///
/// # Errors
/// A syntax or evaluation error, as an `invalid` OperationOutcome naming the position.
pub fn evaluate_to_json(
    expr: &str,
    resource: &Value,
    vars: &[(String, Value)],
) -> Result<Value, flint_fhir::Error> {
    let compiled = Expression::compile(expr)?;
    let mut ctx = Context::new();
    for (name, value) in vars {
        ctx = ctx.json_var(name.trim_start_matches('%').to_string(), value);
    }
    let items = compiled.evaluate_with(resource, &ctx)?;
    Ok(Value::Array(
        items.iter().map(Item::to_typed_json).collect(),
    ))
}

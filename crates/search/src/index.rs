//! Index extraction: for a resource, the values of every SearchParameter whose `base` covers
//! its type, evaluated by the parameter's FHIRPath expression and turned into typed values a
//! store writes as they are (normalised strings, tokens, reference parts, date ranges in
//! microseconds, numbers and quantities with the range their precision implies, URIs and
//! composite tuples).
//!
//! A [`Registry`] holds, per resource type, the parameters that apply with their expressions
//! compiled once and cut down to that type (`Patient.name | Practitioner.name` becomes
//! `Patient.name` for Patients). [`Registry::r4`] is the core R4 set, built on first use;
//! [`Registry::with`] adds custom SearchParameters on top of it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use flint_fhir::datetime;
use flint_fhir::model::{self, Model};
use flint_fhir::{Error, IssueType};
use flint_fhirpath::{ucum, Context, Elem, ErrorKind, Expression, Item, Resolver};
use serde_json::Value;

use crate::normalize::normalize_string;

/// Most index values one parameter may give for one resource. Real resources give a handful
/// per parameter; a large Group or List gives one per member or item, which this leaves room
/// for, while an expression that fans out over the resource (each evaluation is also bounded by
/// FHIRPath's [`flint_fhirpath::MAX_EVALUATION_STEPS`]) cannot fill the indexes.
pub const MAX_INDEX_VALUES: usize = 100_000;

/// The type of a search parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn parse(code: &str) -> Option<ParamType> {
        Some(match code {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            "special" => ParamType::Special,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// A quantity converted to UCUM base units (`1 mg/dL` is `10 g.m-3`), so that searches in one
/// unit find values stored in another.
#[derive(Clone, Debug, PartialEq)]
pub struct CanonicalQuantity {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// The base-unit expression (`g.m-3`), shared between values.
    pub unit: std::sync::Arc<str>,
}

/// One index value, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue<'a> {
    /// `normalized` is lowercased with accents folded (for the default and `:contains`
    /// matches); `original` is as written (for `:exact`).
    String {
        normalized: Cow<'a, str>,
        original: Cow<'a, str>,
    },
    /// A code with its system; `text` is a display or `CodeableConcept.text` (for `:text`).
    /// A `CodeableConcept.text` alone is a token with neither system nor code.
    Token {
        system: Option<Cow<'a, str>>,
        code: Option<Cow<'a, str>>,
        text: Option<Cow<'a, str>>,
    },
    /// A reference's parts: `Patient/1/_history/2` gives type, id and version; an absolute
    /// reference keeps its `url` too; canonical references are `url` with `version` (from
    /// `url|version`); a logical reference has its `identifier` (system, value).
    Reference {
        resource_type: Option<Cow<'a, str>>,
        id: Option<Cow<'a, str>>,
        version: Option<Cow<'a, str>>,
        url: Option<Cow<'a, str>>,
        identifier: Option<(Option<Cow<'a, str>>, Cow<'a, str>)>,
    },
    /// The instants a date, period or timing covers: `[start, end)` in microseconds since the
    /// epoch, UTC. Open ends are `i64::MIN` / `i64::MAX`.
    Date {
        start: i64,
        end: i64,
    },
    /// A number as written and the range its precision implies (`100` is `[99.5, 100.5)`).
    Number {
        value: Cow<'a, str>,
        low: f64,
        high: f64,
    },
    /// A quantity: value as written with its precision range, system, code and unit, and its
    /// UCUM canonical form when the unit converts.
    Quantity {
        value: Cow<'a, str>,
        low: f64,
        high: f64,
        system: Option<Cow<'a, str>>,
        code: Option<Cow<'a, str>>,
        unit: Option<Cow<'a, str>>,
        canonical: Option<CanonicalQuantity>,
    },
    Uri(Cow<'a, str>),
    /// One tuple of a composite parameter: a value per component, in component order.
    Composite(Vec<IndexValue<'a>>),
}

/// A component of a composite search parameter.
#[derive(Debug)]
pub struct Component {
    /// The canonical URL of the component's own SearchParameter.
    pub definition: String,
    pub kind: ParamType,
    /// Evaluated with each item the composite's expression selects as its focus.
    pub expression: Expression,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub url: String,
    pub kind: ParamType,
    /// The expression restricted to this resource type.
    pub expression: Expression,
    pub components: Vec<Component>,
    /// For reference parameters: the allowed target types (empty: any).
    pub targets: Vec<String>,
}

/// A SearchParameter left out of the registry, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub url: String,
    pub code: String,
    pub reason: String,
}

/// The values one parameter extracted from a resource. Parameters that extracted nothing are
/// included too (with no values), so that `:missing` can be indexed.
#[derive(Debug)]
pub struct Extracted<'a> {
    pub param: &'a SearchParam,
    /// The values, borrowing the resource's strings where they are stored as written.
    pub values: Vec<IndexValue<'a>>,
    /// An evaluation error, when the expression failed on this resource (no values then).
    pub error: Option<String>,
}

/// The search parameters that apply to each resource type, compiled.
#[derive(Debug, Default)]
pub struct Registry {
    by_type: HashMap<String, Vec<SearchParam>>,
    skipped: Vec<Skipped>,
}

impl Registry {
    /// The core R4 SearchParameters, compiled on first use.
    pub fn r4() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            Registry::from_search_parameters(flint_fhir::definitions::search_parameters().iter())
        })
    }

    /// The core R4 parameters plus `custom` ones; a custom parameter with the URL of a core one
    /// replaces it.
    pub fn with(custom: &[Value]) -> Registry {
        let urls: Vec<&str> = custom
            .iter()
            .filter_map(|p| p.get("url").and_then(Value::as_str))
            .collect();
        let core = flint_fhir::definitions::search_parameters()
            .iter()
            .filter(|p| {
                !p.get("url")
                    .and_then(Value::as_str)
                    .is_some_and(|u| urls.contains(&u))
            });
        Registry::from_search_parameters(core.chain(custom.iter()))
    }

    /// Builds a registry from SearchParameter resources.
    pub fn from_search_parameters<'v>(params: impl Iterator<Item = &'v Value> + Clone) -> Registry {
        let model = model::r4();
        // Each parameter's type and expression, by URL, for the components of composites.
        let kinds: HashMap<&str, (ParamType, &str)> = params
            .clone()
            .filter_map(|p| {
                let url = p.get("url")?.as_str()?;
                let expression = p.get("expression").and_then(Value::as_str).unwrap_or("");
                Some((
                    url,
                    (ParamType::parse(p.get("type")?.as_str()?)?, expression),
                ))
            })
            .collect();
        let mut registry = Registry::default();
        for p in params {
            registry.add(model, p, &kinds);
        }
        registry
    }

    fn add(&mut self, model: &Model, p: &Value, kinds: &HashMap<&str, (ParamType, &str)>) {
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (url, code) = (text("url"), text("code"));
        let skip = |reason: &str| Skipped {
            url: url.clone(),
            code: code.clone(),
            reason: reason.to_string(),
        };
        let Some(kind) = p
            .get("type")
            .and_then(Value::as_str)
            .and_then(ParamType::parse)
        else {
            self.skipped.push(skip("unknown type"));
            return;
        };
        if kind == ParamType::Special {
            self.skipped.push(skip(
                "special parameters are evaluated by the search engine, not indexed",
            ));
            return;
        }
        let Some(expression) = p
            .get("expression")
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty())
        else {
            self.skipped.push(skip("no FHIRPath expression"));
            return;
        };
        let mut components = Vec::new();
        let mut raw: Vec<(&str, Option<&str>)> = p
            .get("component")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c.get("definition").and_then(Value::as_str).unwrap_or(""),
                    c.get("expression").and_then(Value::as_str),
                )
            })
            .collect();
        unswap_components(&mut raw, kinds);
        for (definition, expression) in raw {
            let Some(&(kind, _)) = kinds.get(definition) else {
                self.skipped
                    .push(skip(&format!("unknown component {definition}")));
                return;
            };
            // The R4 composites write `value.as(DateTime)` for FHIR `dateTime` values.
            let compiled = match expression
                .map(|e| e.replace("as(DateTime)", "as(dateTime)"))
                .map(|e| Expression::compile(&e))
            {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    self.skipped
                        .push(skip(&format!("component expression: {e}")));
                    return;
                }
                None => {
                    self.skipped.push(skip("component without expression"));
                    return;
                }
            };
            components.push((definition.to_string(), kind, compiled));
        }
        if kind == ParamType::Composite && components.is_empty() {
            self.skipped.push(skip("composite without components"));
            return;
        }
        let targets: Vec<String> = p
            .get("target")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let bases: Vec<&str> = p
            .get("base")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut types: Vec<&str> = Vec::new();
        for base in bases {
            if model.is_resource_type(base) {
                types.push(base);
            } else {
                types.extend(
                    model
                        .resource_types()
                        .iter()
                        .map(String::as_str)
                        .filter(|t| model.is_subtype_of(t, base)),
                );
            }
        }
        types.sort_unstable();
        types.dedup();
        for ty in types {
            let Some(restricted) = restrict(model, expression, ty) else {
                continue;
            };
            let compiled = match Expression::compile(&restricted) {
                Ok(e) => e,
                Err(e) => {
                    self.skipped.push(skip(&format!("{ty}: {e}")));
                    continue;
                }
            };
            let list = self.by_type.entry(ty.to_string()).or_default();
            list.retain(|existing| existing.code != code);
            list.push(SearchParam {
                code: code.clone(),
                url: url.clone(),
                kind,
                expression: compiled,
                components: components
                    .iter()
                    .map(|(definition, kind, e)| Component {
                        definition: definition.clone(),
                        kind: *kind,
                        expression: e.clone(),
                    })
                    .collect(),
                targets: targets.clone(),
            });
        }
    }

    /// The parameters that apply to a resource type.
    pub fn params(&self, resource_type: &str) -> &[SearchParam] {
        self.by_type.get(resource_type).map_or(&[], Vec::as_slice)
    }

    /// The parameter with this code for a resource type.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.params(resource_type).iter().find(|p| p.code == code)
    }

    /// Whether a composite parameter of `resource_type` can be searched: each component is a
    /// parameter of the type, the first a token or a reference, the others neither composite
    /// nor special.
    pub fn composite_searchable(&self, resource_type: &str, param: &SearchParam) -> bool {
        param.kind == ParamType::Composite
            && !param.components.is_empty()
            && param.components.iter().enumerate().all(|(i, c)| {
                self.params(resource_type)
                    .iter()
                    .find(|p| p.url == c.definition)
                    .is_some_and(|own| {
                        if i == 0 {
                            matches!(own.kind, ParamType::Token | ParamType::Reference)
                        } else {
                            !matches!(own.kind, ParamType::Composite | ParamType::Special)
                        }
                    })
            })
    }

    /// The SearchParameters that could not be used, with the reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Extracts the index values of every parameter that applies to the resource. A parameter
    /// that fails on it, too costly ones included, gives no values and records why in
    /// [`Extracted::error`]; use [`Registry::try_extract`] to refuse such resources instead.
    pub fn extract<'a>(&'a self, resource: &'a Value) -> Vec<Extracted<'a>> {
        // Nothing is refused, so there is no error to return.
        self.extract_all(resource, |_, _| None).unwrap_or_default()
    }

    /// Extracts the index values of every parameter that applies to the resource, as
    /// [`Registry::extract`] does, but fails when a parameter is too costly for it.
    ///
    /// # Errors
    /// 422 `too-costly`, naming the SearchParameter's code and URL, when a parameter's
    /// expression exceeds the FHIRPath evaluation budget on this resource or gives more than
    /// [`MAX_INDEX_VALUES`] values. Other evaluation errors are recorded in
    /// [`Extracted::error`], as `extract` does.
    pub fn try_extract<'a>(&'a self, resource: &'a Value) -> Result<Vec<Extracted<'a>>, Error> {
        self.extract_all(resource, |param, why| {
            Some(Error::new(
                IssueType::TooCostly,
                format!(
                    "the search parameter '{}' ({}) is too costly to index this resource: {why}",
                    param.code, param.url
                ),
            ))
        })
    }

    /// Extracts every parameter's values; `refuse` decides whether a too costly parameter
    /// stops the extraction (with its error) or is recorded and skipped.
    fn extract_all<'a>(
        &'a self,
        resource: &'a Value,
        refuse: impl Fn(&SearchParam, &str) -> Option<Error>,
    ) -> Result<Vec<Extracted<'a>>, Error> {
        let ty = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let params = self.params(ty);
        let ctx = Context::new().resolver(stubs());
        let model = model::r4();
        let focus = flint_fhirpath::json_items(resource);
        let mut cache = ComponentCache::new();
        let mut out = Vec::with_capacity(params.len());
        for param in params {
            let (values, error) =
                match param_values(model, param, resource, &ctx, &focus, &mut cache) {
                    Ok(values) => (values, None),
                    Err(Failure::Evaluation(why)) => (Vec::new(), Some(why)),
                    Err(Failure::TooCostly(why)) => match refuse(param, &why) {
                        Some(e) => return Err(e),
                        None => (Vec::new(), Some(why)),
                    },
                };
            out.push(Extracted {
                param,
                values,
                error,
            });
        }
        Ok(out)
    }
}

/// Why a parameter gives no values for a resource.
enum Failure {
    /// Its expression failed on the resource (a type error, several items where one is
    /// needed): the resource is still indexed by its other parameters.
    Evaluation(String),
    /// Its expression exceeded the evaluation budget, or it gave more than
    /// [`MAX_INDEX_VALUES`] values.
    TooCostly(String),
}

impl From<flint_fhirpath::Error> for Failure {
    fn from(e: flint_fhirpath::Error) -> Failure {
        match e.kind {
            ErrorKind::TooCostly => Failure::TooCostly(e.to_string()),
            _ => Failure::Evaluation(e.to_string()),
        }
    }
}

/// Fails once a parameter has given more than [`MAX_INDEX_VALUES`] values.
fn check_count(values: &[IndexValue]) -> Result<(), Failure> {
    if values.len() > MAX_INDEX_VALUES {
        return Err(Failure::TooCostly(format!(
            "it gives more than {MAX_INDEX_VALUES} index values"
        )));
    }
    Ok(())
}

/// The values of one parameter for a resource.
fn param_values<'a>(
    model: &'static Model,
    param: &'a SearchParam,
    resource: &'a Value,
    ctx: &Context<'a>,
    focus: &[Item<'a>],
    cache: &mut ComponentCache<'a>,
) -> Result<Vec<IndexValue<'a>>, Failure> {
    let items = param.expression.evaluate_items(resource, focus, ctx)?;
    let mut values = Vec::new();
    if param.kind == ParamType::Composite {
        composite(model, param, resource, ctx, &items, cache, &mut values)?;
    } else {
        for item in &items {
            index_values(model, param.kind, item, &mut values);
            check_count(&values)?;
        }
    }
    Ok(values)
}

/// Puts back component expressions given in the wrong order: R4's DocumentReference
/// `relationship` pairs the `relatesto` (reference, `relatesTo.target`) component with the
/// expression `code` and the `relation` (token, `relatesTo.code`) one with `target`. A
/// component whose expression is not the last step of its own parameter's expression, while
/// another component's is, takes that one's.
fn unswap_components(raw: &mut [(&str, Option<&str>)], kinds: &HashMap<&str, (ParamType, &str)>) {
    let fits = |definition: &str, expression: Option<&str>| {
        let own = kinds.get(definition).map_or("", |k| k.1);
        expression.is_some_and(|e| own.ends_with(&format!(".{e}")))
    };
    for i in 0..raw.len() {
        if fits(raw[i].0, raw[i].1) {
            continue;
        }
        let swap = (0..raw.len()).find(|&j| {
            j != i
                && fits(raw[i].0, raw[j].1)
                && fits(raw[j].0, raw[i].1)
                && !fits(raw[j].0, raw[j].1)
        });
        if let Some(j) = swap {
            let (a, b) = (raw[i].1, raw[j].1);
            raw[i].1 = b;
            raw[j].1 = a;
        }
    }
}

/// Extracts the index values of a resource with the core R4 parameters.
pub fn extract(resource: &Value) -> Vec<Extracted<'_>> {
    Registry::r4().extract(resource)
}

/// Keeps the `|`-separated parts of an expression that can apply to `ty`: a part starting
/// with another resource type's name (`Practitioner.name`) is dropped. `None` when no part
/// remains.
fn restrict(model: &Model, expression: &str, ty: &str) -> Option<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, false, 0usize);
    let bytes = expression.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quote = !quote,
            b'(' if !quote => depth += 1,
            b')' if !quote => depth -= 1,
            b'|' if !quote && depth == 0 => {
                parts.push(&expression[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&expression[start..]);
    let kept: Vec<&str> = parts
        .into_iter()
        .map(str::trim)
        .filter(|part| {
            let head = part.trim_start_matches('(');
            let name: String = head
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let names_a_type = name.starts_with(|c: char| c.is_ascii_uppercase())
                && model
                    .get(&name)
                    .is_some_and(|t| t.kind == model::TypeKind::Resource);
            !names_a_type || model.is_subtype_of(ty, &name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(" | "))
}

/// A resolver that answers `Type/id` references with a stub `{"resourceType": Type}`, so that
/// expressions such as `subject.where(resolve() is Patient)` index by the reference's type
/// without reading the target.
struct TypeStubs {
    stubs: HashMap<String, Value>,
}

fn stubs() -> &'static TypeStubs {
    static STUBS: OnceLock<TypeStubs> = OnceLock::new();
    STUBS.get_or_init(|| TypeStubs {
        stubs: model::r4()
            .resource_types()
            .iter()
            .map(|t| (t.clone(), serde_json::json!({ "resourceType": t })))
            .collect(),
    })
}

impl Resolver for TypeStubs {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let ty = parse_reference(reference).0?;
        self.stubs.get(ty)
    }
}

/// Splits a literal reference into (type, id, version), for relative (`Patient/1`,
/// `Patient/1/_history/2`) and absolute (`http://x/fhir/Patient/1`) forms.
fn parse_reference(reference: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let reference = reference.split(['?', '#']).next().unwrap_or(reference);
    let mut back = reference.rsplit('/');
    let (Some(last), Some(second)) = (back.next(), back.next()) else {
        return (None, None, None);
    };
    let (id, ty, version) = if second == "_history" {
        match (back.next(), back.next()) {
            (Some(id), Some(ty)) => (id, ty, Some(last)),
            _ => return (None, None, None),
        }
    } else {
        (last, second, None)
    };
    if !id.is_empty()
        && ty.starts_with(|c: char| c.is_ascii_uppercase())
        && model::r4().is_resource_type(ty)
    {
        return (Some(ty), Some(id), version);
    }
    (None, None, None)
}

/// A member of a JSON object. FHIR datatypes have a handful of members, which a scan finds
/// faster than hashing the key.
fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    if obj.len() > 16 {
        return obj.get(key);
    }
    obj.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<Cow<'a, str>> {
    field(v, key).and_then(Value::as_str).map(Cow::Borrowed)
}

/// The value of an Extension (`value[x]`) as an element.
fn extension_value<'a>(model: &'static Model, e: &Elem<'a>) -> Option<Item<'a>> {
    let obj = e.value?.as_object()?;
    let (key, value) = obj.iter().find(|(k, _)| k.starts_with("value"))?;
    let ty = model.child("Extension", key)?.type_code;
    Some(Item::Elem(Elem::new(Some(value), None, ty)))
}

fn index_values<'a>(
    model: &'static Model,
    kind: ParamType,
    item: &Item<'a>,
    out: &mut Vec<IndexValue<'a>>,
) {
    let e = match item {
        Item::Elem(e) if e.ty == "Extension" => {
            if let Some(v) = extension_value(model, e) {
                index_values(model, kind, &v, out);
            }
            return;
        }
        Item::Elem(e) => *e,
        other => {
            system_value(kind, other, out);
            return;
        }
    };
    let Some(v) = e.value else { return };
    match kind {
        ParamType::String => string_values(&e, v, out),
        ParamType::Token => token_values(&e, v, out),
        ParamType::Reference => reference_values(&e, v, out),
        ParamType::Date => {
            if let Some((start, end)) = date_range(e.ty, v) {
                out.push(IndexValue::Date { start, end });
            }
        }
        ParamType::Number => {
            if let Value::Number(n) = v {
                out.extend(number(Cow::Borrowed(n.as_str())));
            }
        }
        ParamType::Quantity => {
            if flint_fhirpath_quantity(e.ty) {
                quantity_value(v, out);
            }
        }
        ParamType::Uri => {
            if let Some(s) = v.as_str() {
                out.push(IndexValue::Uri(Cow::Borrowed(s)));
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn flint_fhirpath_quantity(ty: &str) -> bool {
    matches!(
        ty,
        "Quantity" | "Age" | "Duration" | "Count" | "Distance" | "SimpleQuantity" | "MoneyQuantity"
    )
}

/// Values computed by an expression rather than read from the resource (`toString()` ...).
fn system_value<'a>(kind: ParamType, item: &Item<'a>, out: &mut Vec<IndexValue<'a>>) {
    let json = item.to_typed_json();
    let value = &json["value"];
    match (kind, value) {
        (ParamType::String, Value::String(s)) => out.push(IndexValue::String {
            normalized: Cow::Owned(normalize_string(s)),
            original: Cow::Owned(s.clone()),
        }),
        (ParamType::Token, Value::String(s)) => out.push(IndexValue::Token {
            system: None,
            code: Some(Cow::Owned(s.clone())),
            text: None,
        }),
        (ParamType::Token, Value::Bool(b)) => out.push(IndexValue::Token {
            system: None,
            code: Some(boolean(*b)),
            text: None,
        }),
        (ParamType::Uri, Value::String(s)) => out.push(IndexValue::Uri(Cow::Owned(s.clone()))),
        (ParamType::Number, Value::Number(n)) => {
            out.extend(number(Cow::Owned(n.as_str().to_string())))
        }
        (ParamType::Date, Value::String(s)) => {
            if let Some(d) = datetime::parse_date_time_lenient(s) {
                out.push(IndexValue::Date {
                    start: d.start_micros(),
                    end: d.end_micros(),
                });
            }
        }
        _ => {}
    }
}

fn push_string<'a>(out: &mut Vec<IndexValue<'a>>, s: &'a str) {
    if !s.trim().is_empty() {
        out.push(IndexValue::String {
            normalized: normalize(s),
            original: Cow::Borrowed(s),
        });
    }
}

/// The normalised form, borrowed when the text is already normal (lowercase ASCII, single
/// spaces), which most codes and many names are.
fn normalize(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let normal = b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
        && b.iter().all(|c| {
            c.is_ascii() && !c.is_ascii_uppercase() && (*c == b' ' || !c.is_ascii_whitespace())
        })
        && !s.contains("  ");
    if normal {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(normalize_string(s))
    }
}

fn boolean(b: bool) -> Cow<'static, str> {
    Cow::Borrowed(if b { "true" } else { "false" })
}

fn string_values<'a>(e: &Elem<'a>, v: &'a Value, out: &mut Vec<IndexValue<'a>>) {
    match (e.ty, v) {
        (_, Value::String(s)) => push_string(out, s),
        ("HumanName", _) | ("Address", _) => {
            let keys: &[&str] = if e.ty == "HumanName" {
                &["family", "given", "prefix", "suffix", "text"]
            } else {
                &[
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                    "text",
                ]
            };
            for key in keys {
                match field(v, key) {
                    Some(Value::String(s)) => push_string(out, s),
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .for_each(|s| push_string(out, s)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn token_values<'a>(e: &Elem<'a>, v: &'a Value, out: &mut Vec<IndexValue<'a>>) {
    let coding = |c: &'a Value| IndexValue::Token {
        system: text(c, "system"),
        code: text(c, "code"),
        text: text(c, "display"),
    };
    match (e.ty, v) {
        ("Coding", _) => out.push(coding(v)),
        ("CodeableConcept", _) => {
            for c in field(v, "coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(coding(c));
            }
            if let Some(t) = text(v, "text") {
                out.push(IndexValue::Token {
                    system: None,
                    code: None,
                    text: Some(t),
                });
            }
        }
        ("Identifier", _) => {
            out.push(IndexValue::Token {
                system: text(v, "system"),
                code: text(v, "value"),
                text: field(v, "type").and_then(|t| text(t, "text")),
            });
            // For `:of-type`: each coding of the identifier's type with its value, as a
            // tuple (the type's coding, then the value), so that both match on one Identifier.
            if let Some(value) = text(v, "value") {
                for c in field(v, "type")
                    .and_then(|t| field(t, "coding"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(type_code) = text(c, "code") {
                        out.push(IndexValue::Composite(vec![
                            IndexValue::Token {
                                system: text(c, "system"),
                                code: Some(type_code),
                                text: None,
                            },
                            IndexValue::Token {
                                system: None,
                                code: Some(value.clone()),
                                text: None,
                            },
                        ]));
                    }
                }
            }
        }
        ("ContactPoint", _) => out.push(IndexValue::Token {
            system: text(v, "system"),
            code: text(v, "value"),
            text: None,
        }),
        (_, Value::String(s)) => out.push(IndexValue::Token {
            system: None,
            code: Some(Cow::Borrowed(s)),
            text: None,
        }),
        (_, Value::Bool(b)) => out.push(IndexValue::Token {
            system: None,
            code: Some(boolean(*b)),
            text: None,
        }),
        _ => {}
    }
}

fn reference_values<'a>(e: &Elem<'a>, v: &'a Value, out: &mut Vec<IndexValue<'a>>) {
    match (e.ty, v) {
        ("Reference", _) => {
            let identifier =
                field(v, "identifier").and_then(|i| Some((text(i, "system"), text(i, "value")?)));
            let reference = field(v, "reference").and_then(Value::as_str);
            let (mut ty, id, version) =
                reference.map(parse_reference).unwrap_or((None, None, None));
            if ty.is_none() {
                ty = field(v, "type").and_then(Value::as_str);
            }
            let absolute = reference.filter(|r| r.contains(':') || r.starts_with('#'));
            if reference.is_none() && identifier.is_none() {
                return;
            }
            out.push(IndexValue::Reference {
                resource_type: ty.map(Cow::Borrowed),
                id: id.map(Cow::Borrowed),
                version: version.map(Cow::Borrowed),
                url: absolute.map(Cow::Borrowed),
                identifier,
            });
        }
        // A resource itself (`Bundle.entry[0].resource`): its type and id.
        (_, Value::Object(o)) if o.contains_key("resourceType") => {
            let id = text(v, "id");
            if id.is_some() {
                out.push(IndexValue::Reference {
                    resource_type: text(v, "resourceType"),
                    id,
                    version: None,
                    url: None,
                    identifier: None,
                });
            }
        }
        (_, Value::String(s)) => {
            // canonical / uri: `url|version`
            let (url, version) = match s.split_once('|') {
                Some((u, ver)) => (u, Some(Cow::Borrowed(ver))),
                None => (s.as_str(), None),
            };
            let (ty, id, _) = parse_reference(url);
            out.push(IndexValue::Reference {
                resource_type: ty.map(Cow::Borrowed),
                id: id.map(Cow::Borrowed),
                version,
                url: Some(Cow::Borrowed(url)),
                identifier: None,
            });
        }
        _ => {}
    }
}

fn instant_range(s: &str) -> Option<(i64, i64)> {
    let d = datetime::parse_date_time_lenient(s)?;
    Some((d.start_micros(), d.end_micros()))
}

fn date_range(ty: &str, v: &Value) -> Option<(i64, i64)> {
    match ty {
        "Period" => {
            let start = field(v, "start")
                .and_then(Value::as_str)
                .and_then(instant_range)
                .map_or(i64::MIN, |r| r.0);
            let end = field(v, "end")
                .and_then(Value::as_str)
                .and_then(instant_range)
                .map_or(i64::MAX, |r| r.1);
            (start != i64::MIN || end != i64::MAX).then_some((start, end))
        }
        "Timing" => {
            let events: Vec<(i64, i64)> = field(v, "event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(instant_range)
                .collect();
            if !events.is_empty() {
                let start = events.iter().map(|r| r.0).min()?;
                let end = events.iter().map(|r| r.1).max()?;
                return Some((start, end));
            }
            let bounds = field(field(v, "repeat")?, "boundsPeriod")?;
            date_range("Period", bounds)
        }
        _ => instant_range(v.as_str()?),
    }
}

/// The half-width of the precision of a number as written: `100` → 0.5, `1.50` → 0.005. An
/// exponent out of any float's range gives 0 or infinity, never an overflow.
fn half_step(text: &str) -> f64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let exp: i64 = text
        .split_once(['e', 'E'])
        .map_or(Some(0), |(_, e)| e.trim_start_matches('+').parse().ok())
        .unwrap_or(i64::MAX);
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, f)| i64::try_from(f.len()).unwrap_or(i64::MAX));
    // 10^±400 is already 0 or infinity as a float.
    let power = exp.saturating_sub(decimals).clamp(-400, 400) as i32;
    0.5 * 10f64.powi(power)
}

/// A number's index value; `None` when it or its precision range is not a finite float
/// (`0e999999`), which no store could compare.
fn number(text: Cow<'_, str>) -> Option<IndexValue<'_>> {
    let v: f64 = text.parse().ok()?;
    let h = half_step(&text);
    let (low, high) = (v - h, v + h);
    (v.is_finite() && low.is_finite() && high.is_finite()).then_some(IndexValue::Number {
        value: text,
        low,
        high,
    })
}

/// A quantity's index value. One whose value or precision range is not a finite float is
/// left out; a canonical form that overflows (`1e300 km` in metres) is dropped, the quantity
/// still indexed in its own unit.
fn quantity_value<'a>(v: &'a Value, out: &mut Vec<IndexValue<'a>>) {
    let Some(Value::Number(n)) = field(v, "value") else {
        return;
    };
    let value = Cow::Borrowed(n.as_str());
    let Ok(f) = value.parse::<f64>() else {
        return;
    };
    let h = half_step(&value);
    let (low, high) = (f - h, f + h);
    if !(f.is_finite() && low.is_finite() && high.is_finite()) {
        return;
    }
    let system = text(v, "system");
    let code = text(v, "code");
    let canonical = match (system.as_deref(), code.as_deref()) {
        (Some("http://unitsofmeasure.org"), Some(c)) => {
            ucum::canonical(f, c).and_then(|(cv, unit)| {
                let factor = if f != 0.0 {
                    cv / f
                } else {
                    ucum::canonical(1.0, c)?.0
                };
                let (low, high) = (low * factor, high * factor);
                (cv.is_finite() && low.is_finite() && high.is_finite()).then_some(
                    CanonicalQuantity {
                        value: cv,
                        low,
                        high,
                        unit,
                    },
                )
            })
        }
        _ => None,
    };
    out.push(IndexValue::Quantity {
        value,
        low,
        high,
        system,
        code,
        unit: text(v, "unit"),
        canonical,
    });
}

/// Component values already computed during one extraction, keyed by component type,
/// expression and item: composites share components (`code` on the same Observation).
type ComponentCache<'a> = Vec<(ParamType, &'a str, *const Value, Vec<IndexValue<'a>>)>;

/// The tuples of a composite parameter: for each item the expression selects, the cartesian
/// product of its components' values (bounded, as real composites have one value each).
fn composite<'a>(
    model: &'static Model,
    param: &'a SearchParam,
    resource: &'a Value,
    ctx: &Context<'a>,
    items: &[Item<'a>],
    cache: &mut ComponentCache<'a>,
    out: &mut Vec<IndexValue<'a>>,
) -> Result<(), Failure> {
    const MAX_TUPLES: usize = 64;
    for item in items {
        let key = match item {
            Item::Elem(Elem { value: Some(v), .. }) => *v as *const Value,
            _ => std::ptr::null(),
        };
        let mut per_component: Vec<Vec<IndexValue<'a>>> = vec![Vec::new(); param.components.len()];
        // The last components (`value.as(Quantity)`) are the selective ones: try them first.
        let mut complete = true;
        for (i, component) in param.components.iter().enumerate().rev() {
            let text = component.expression.text();
            let cached = cache.iter().find(|(k, t, p, _)| {
                !key.is_null() && *k == component.kind && *p == key && *t == text
            });
            let values = match cached {
                Some((_, _, _, v)) => v.clone(),
                None => {
                    let mut values = Vec::new();
                    // A component that fails gives no values (the tuple is incomplete), unless
                    // it is too costly: that is the parameter's failure.
                    match component.expression.evaluate_items(
                        resource,
                        std::slice::from_ref(item),
                        ctx,
                    ) {
                        Ok(found) => {
                            for f in &found {
                                index_values(model, component.kind, f, &mut values);
                                check_count(&values)?;
                            }
                        }
                        Err(e) if e.kind == ErrorKind::TooCostly => return Err(e.into()),
                        Err(_) => {}
                    }
                    if !key.is_null() {
                        cache.push((component.kind, text, key, values.clone()));
                    }
                    values
                }
            };
            if values.is_empty() {
                complete = false;
                break;
            }
            per_component[i] = values;
        }
        if !complete {
            continue;
        }
        // The usual case, one value per component, is one tuple: move the values in.
        if per_component.iter().all(|v| v.len() == 1) {
            out.push(IndexValue::Composite(
                per_component.into_iter().flatten().collect(),
            ));
            check_count(out)?;
            continue;
        }
        let mut tuples: Vec<Vec<IndexValue<'a>>> = vec![Vec::new()];
        for values in &per_component {
            let mut next = Vec::new();
            for t in &tuples {
                for v in values {
                    if next.len() < MAX_TUPLES {
                        let mut t = t.clone();
                        t.push(v.clone());
                        next.push(t);
                    }
                }
            }
            tuples = next;
        }
        out.extend(tuples.into_iter().map(IndexValue::Composite));
        check_count(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values<'r>(extracted: &'r [Extracted<'r>], code: &str) -> &'r [IndexValue<'r>] {
        extracted
            .iter()
            .find(|e| e.param.code == code)
            .map_or(&[], |e| e.values.as_slice())
    }

    fn observation() -> Value {
        serde_json::from_str(include_str!("../../fhirpath/benches/observation.json")).unwrap()
    }

    #[test]
    fn registry_covers_the_core_parameters() {
        let r = Registry::r4();
        let obs = r.params("Observation");
        assert!(obs.len() >= 40, "{}", obs.len());
        assert!(r.param("Patient", "name").is_some());
        assert!(r.param("Patient", "_id").is_some());
        assert!(r.param("Patient", "_lastUpdated").is_some());
        // `Patient.name | Practitioner.name`-style expressions are cut down to the type.
        let identifier = r.param("Patient", "identifier").unwrap();
        assert_eq!(identifier.expression.text(), "Patient.identifier");
        assert!(r.skipped().iter().any(|s| s.code == "_text"));
        assert!(r.skipped().len() < 40, "{:?}", r.skipped());
    }

    #[test]
    fn observation_tokens_references_dates_and_quantities() {
        let obs = observation();
        let x = extract(&obs);
        assert!(
            x.iter().all(|e| e.error.is_none()),
            "{:?}",
            x.iter().filter(|e| e.error.is_some()).collect::<Vec<_>>()
        );
        assert!(values(&x, "code").contains(&IndexValue::Token {
            system: Some("http://loinc.org".into()),
            code: Some("85354-9".into()),
            text: Some("Blood pressure panel with all children optional".into()),
        }));
        assert!(values(&x, "code").contains(&IndexValue::Token {
            system: None,
            code: None,
            text: Some("Blood pressure systolic & diastolic".into())
        }));
        assert_eq!(
            values(&x, "status"),
            &[IndexValue::Token {
                system: None,
                code: Some("final".into()),
                text: None
            }]
        );
        assert_eq!(
            values(&x, "subject"),
            &[IndexValue::Reference {
                resource_type: Some("Patient".into()),
                id: Some("example".into()),
                version: None,
                url: None,
                identifier: None
            }]
        );
        // `subject.where(resolve() is Patient)` works without reading the target.
        assert_eq!(values(&x, "patient").len(), 1);
        let day = datetime::parse_date("2012-09-17").unwrap();
        assert_eq!(
            values(&x, "date"),
            &[IndexValue::Date {
                start: day.start_micros(),
                end: day.end_micros()
            }]
        );
        let IndexValue::Quantity {
            value,
            low,
            high,
            code,
            canonical,
            ..
        } = &values(&x, "value-quantity")[0]
        else {
            panic!()
        };
        assert_eq!((value.as_ref(), code.as_deref()), ("146.5", Some("mm[Hg]")));
        assert!((low - 146.45).abs() < 1e-9 && (high - 146.55).abs() < 1e-9);
        let c = canonical.as_ref().unwrap();
        assert_eq!(&*c.unit, "m-1.g.s-2");
        assert!((c.value - 146.5 * 133_322.387_415).abs() < 1e-3);
        assert_eq!(values(&x, "component-value-quantity").len(), 2);
        assert_eq!(values(&x, "combo-code").len(), 4);
        let cvq = values(&x, "component-code-value-quantity");
        assert_eq!(cvq.len(), 2);
        let IndexValue::Composite(parts) = &cvq[0] else {
            panic!()
        };
        assert!(matches!(&parts[0], IndexValue::Token { code: Some(c), .. } if c == "8480-6"));
        assert!(matches!(&parts[1], IndexValue::Quantity { value, .. } if value == "107"));
        assert_eq!(
            values(&x, "_id"),
            &[IndexValue::Token {
                system: None,
                code: Some("blood-pressure".into()),
                text: None
            }]
        );
        assert!(matches!(
            values(&x, "_lastUpdated"),
            [IndexValue::Date { .. }]
        ));
        assert_eq!(
            values(&x, "_profile"),
            &[IndexValue::Uri(
                "http://hl7.org/fhir/StructureDefinition/vitalsigns".into()
            )]
        );
        assert_eq!(
            values(&x, "based-on"),
            &[IndexValue::Reference {
                resource_type: None,
                id: None,
                version: None,
                url: None,
                identifier: Some((Some("https://acme.org/identifiers".into()), "1234".into())),
            }]
        );
    }

    #[test]
    fn patient_strings_tokens_and_dates() {
        let patient = json!({
            "resourceType": "Patient",
            "id": "p1",
            "active": true,
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345", "type": {"text": "MRN"}}],
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Zoë"}],
            "telecom": [{"system": "phone", "value": "(03) 5555 6473"}],
            "gender": "male",
            "birthDate": "1974-12",
            "deceasedBoolean": false,
            "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
            "generalPractitioner": [{"reference": "http://example.org/fhir/Practitioner/gp/_history/3"}],
            "managingOrganization": {"reference": "Organization/1"}
        });
        let x = extract(&patient);
        let names = values(&x, "name");
        assert!(names.contains(&IndexValue::String {
            normalized: "zoe".into(),
            original: "Zoë".into()
        }));
        assert!(names.contains(&IndexValue::String {
            normalized: "peter".into(),
            original: "Peter".into()
        }));
        assert_eq!(values(&x, "family").len(), 2);
        assert_eq!(
            values(&x, "active"),
            &[IndexValue::Token {
                system: None,
                code: Some("true".into()),
                text: None
            }]
        );
        assert_eq!(
            values(&x, "deceased"),
            &[IndexValue::Token {
                system: None,
                code: Some("false".into()),
                text: None
            }]
        );
        assert_eq!(
            values(&x, "identifier"),
            &[IndexValue::Token {
                system: Some("urn:oid:1.2.36.146.595.217.0.1".into()),
                code: Some("12345".into()),
                text: Some("MRN".into())
            }]
        );
        assert_eq!(
            values(&x, "phone"),
            &[IndexValue::Token {
                system: Some("phone".into()),
                code: Some("(03) 5555 6473".into()),
                text: None
            }]
        );
        let month = datetime::parse_date("1974-12").unwrap();
        assert_eq!(
            values(&x, "birthdate"),
            &[IndexValue::Date {
                start: month.start_micros(),
                end: month.end_micros()
            }]
        );
        assert_eq!(
            values(&x, "general-practitioner"),
            &[IndexValue::Reference {
                resource_type: Some("Practitioner".into()),
                id: Some("gp".into()),
                version: Some("3".into()),
                url: Some("http://example.org/fhir/Practitioner/gp/_history/3".into()),
                identifier: None,
            }]
        );
        assert!(values(&x, "address-city").contains(&IndexValue::String {
            normalized: "pleasantville".into(),
            original: "PleasantVille".into()
        }));
        assert!(values(&x, "address").len() >= 3);
    }

    #[test]
    fn periods_numbers_uris_and_canonicals() {
        let encounter = json!({"resourceType": "Encounter", "status": "finished", "period": {"start": "2020-01-01T10:00:00Z"}, "length": {"value": 90, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}});
        let x = extract(&encounter);
        let start = datetime::parse_date_time("2020-01-01T10:00:00Z")
            .unwrap()
            .start_micros();
        assert_eq!(
            values(&x, "date"),
            &[IndexValue::Date {
                start,
                end: i64::MAX
            }]
        );
        let IndexValue::Quantity {
            canonical: Some(c), ..
        } = &values(&x, "length")[0]
        else {
            panic!()
        };
        assert_eq!((c.value, &*c.unit), (5400.0, "s"));

        let risk = json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"}, "prediction": [{"probabilityDecimal": 0.25}]});
        let x = extract(&risk);
        let IndexValue::Number { value, low, high } = &values(&x, "probability")[0] else {
            panic!()
        };
        assert_eq!(value, "0.25");
        assert!((low - 0.245).abs() < 1e-12 && (high - 0.255).abs() < 1e-12);

        let vs = json!({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active", "compose": {"include": [{"system": "http://loinc.org"}]}});
        let x = extract(&vs);
        assert_eq!(
            values(&x, "url"),
            &[IndexValue::Uri("http://example.org/vs".into())]
        );
        assert_eq!(
            values(&x, "reference"),
            &[IndexValue::Uri("http://loinc.org".into())]
        );

        let plan = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"}, "instantiatesCanonical": ["http://example.org/PlanDefinition/x|2.0"]});
        let x = extract(&plan);
        assert_eq!(
            values(&x, "instantiates-canonical"),
            &[IndexValue::Reference {
                resource_type: Some("PlanDefinition".into()),
                id: Some("x".into()),
                version: Some("2.0".into()),
                url: Some("http://example.org/PlanDefinition/x".into()),
                identifier: None
            }]
        );
    }

    #[test]
    fn resources_inside_resources_are_referenced_by_type_and_id() {
        let bundle = json!({"resourceType": "Bundle", "type": "document", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Composition", "id": "c1", "status": "final"}}
        ]});
        let x = extract(&bundle);
        assert_eq!(
            values(&x, "composition"),
            &[IndexValue::Reference {
                resource_type: Some("Composition".into()),
                id: Some("c1".into()),
                version: None,
                url: None,
                identifier: None
            }]
        );
        assert_eq!(
            values(&x, "type"),
            &[IndexValue::Token {
                system: None,
                code: Some("document".into()),
                text: None
            }]
        );
    }

    #[test]
    fn identifier_types_and_dated_values_make_tuples() {
        let p = json!({"resourceType": "Patient", "identifier": [
            {"type": {"coding": [{"system": "http://t", "code": "MR"}, {"code": "X"}]}, "value": "12"},
            {"system": "http://s", "value": "34"}]});
        let x = extract(&p);
        let identifier = values(&x, "identifier");
        let tuples: Vec<_> = identifier
            .iter()
            .filter_map(|v| match v {
                IndexValue::Composite(parts) => Some(parts.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(identifier.len(), 4);
        assert_eq!(tuples.len(), 2);
        assert!(matches!(
            tuples[0],
            [IndexValue::Token { system: Some(s), code: Some(c), .. }, IndexValue::Token { system: None, code: Some(v), .. }]
                if s == "http://t" && c == "MR" && v == "12"
        ));
        let o = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8665-2"}]}, "valueDateTime": "2016-12-30"});
        let x = extract(&o);
        assert!(matches!(
            values(&x, "code-value-date"),
            [IndexValue::Composite(parts)] if matches!(parts[1], IndexValue::Date { .. })
        ));
        assert!(Registry::r4().composite_searchable(
            "Observation",
            Registry::r4()
                .param("Observation", "code-value-date")
                .unwrap()
        ));
        // R4 swaps DocumentReference.relationship's component expressions; put back.
        let relationship = Registry::r4()
            .param("DocumentReference", "relationship")
            .unwrap();
        let texts: Vec<&str> = relationship
            .components
            .iter()
            .map(|c| c.expression.text())
            .collect();
        assert_eq!(texts, ["target", "code"]);
        // Components already in order stay.
        let cvq = Registry::r4()
            .param("Observation", "code-value-quantity")
            .unwrap();
        assert_eq!(cvq.components[0].expression.text(), "code");
    }

    #[test]
    fn custom_parameters_join_the_registry() {
        let custom = json!({
            "resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/patient-nickname",
            "code": "nickname", "base": ["Patient"], "type": "string",
            "expression": "Patient.name.where(use = 'nickname').given"
        });
        let r = Registry::with(std::slice::from_ref(&custom));
        let p = json!({"resourceType": "Patient", "name": [{"use": "nickname", "given": ["Bob"]}]});
        let x = r.extract(&p);
        assert_eq!(
            values(&x, "nickname"),
            &[IndexValue::String {
                normalized: "bob".into(),
                original: "Bob".into()
            }]
        );
        assert!(Registry::r4().param("Patient", "nickname").is_none());
    }

    fn custom(code: &str, kind: &str, expression: &str) -> Value {
        json!({
            "resourceType": "SearchParameter", "url": format!("http://example.org/SearchParameter/{code}"),
            "code": code, "base": ["Patient"], "type": kind, "expression": expression
        })
    }

    fn named(count: usize) -> Value {
        let names: Vec<Value> = (0..count)
            .map(|i| json!({"family": format!("F{i}"), "given": ["a", "b"]}))
            .collect();
        json!({"resourceType": "Patient", "name": names})
    }

    #[test]
    fn a_parameter_fanning_out_is_too_costly_and_named() {
        let mut expression = "%resource.name".to_string();
        for _ in 0..8 {
            expression = format!("%resource.name.select({expression})");
        }
        let expression = format!("Patient.name.select({expression}).family");
        let r = Registry::with(&[custom("fan-out", "string", &expression)]);
        let p = named(10);
        let e = r.try_extract(&p).unwrap_err();
        assert_eq!((e.status(), e.code()), (422, IssueType::TooCostly));
        let text = e.to_string();
        assert!(
            text.contains("'fan-out'")
                && text.contains("http://example.org/SearchParameter/fan-out")
                && text.contains("too costly"),
            "{text}"
        );
        // `extract` skips the parameter, keeping the others.
        let x = r.extract(&p);
        let fan = x.iter().find(|e| e.param.code == "fan-out").unwrap();
        assert!(
            fan.values.is_empty()
                && fan
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("too costly"))
        );
        assert_eq!(values(&x, "family").len(), 10);
    }

    #[test]
    fn a_parameter_may_give_a_bounded_number_of_values() {
        // 60 x 60 x 60 names' given names: 432,000 values, well within the evaluation budget.
        let r = Registry::with(&[custom(
            "many",
            "string",
            "Patient.name.select(%resource.name).select(%resource.name).given",
        )]);
        let p = named(60);
        let e = r.try_extract(&p).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(
            e.to_string()
                .contains(&format!("more than {MAX_INDEX_VALUES} index values")),
            "{e}"
        );
        // A large resource's ordinary parameters are not affected.
        let p = named(2000);
        let x = r.try_extract(&p).unwrap_err();
        assert!(x.to_string().contains("'many'"));
        let x = Registry::r4().try_extract(&p).unwrap();
        assert_eq!(values(&x, "family").len(), 2000);
    }

    #[test]
    fn numbers_out_of_float_range_are_never_indexed() {
        let obs: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 1e999999, "system": "http://unitsofmeasure.org", "code": "mg"},
                "component": [
                    {"code": {"text": "a"}, "valueQuantity": {"value": 0e999999, "system": "http://unitsofmeasure.org", "code": "mg"}},
                    {"code": {"text": "b"}, "valueQuantity": {"value": 1e300, "system": "http://unitsofmeasure.org", "code": "Gm"}},
                    {"code": {"text": "c"}, "valueQuantity": {"value": 1.5e-99999999999999999999, "unit": "x"}}
                ]}"#,
        )
        .unwrap();
        let x = Registry::r4().try_extract(&obs).unwrap();
        assert!(values(&x, "value-quantity").is_empty());
        let finite = |v: &IndexValue| match v {
            IndexValue::Number { low, high, .. } => low.is_finite() && high.is_finite(),
            IndexValue::Quantity {
                low,
                high,
                canonical,
                ..
            } => {
                low.is_finite()
                    && high.is_finite()
                    && canonical.as_ref().is_none_or(|c| {
                        c.value.is_finite() && c.low.is_finite() && c.high.is_finite()
                    })
            }
            _ => true,
        };
        for e in &x {
            for v in &e.values {
                let parts = match v {
                    IndexValue::Composite(parts) => parts.as_slice(),
                    other => std::slice::from_ref(other),
                };
                assert!(parts.iter().all(finite), "{}: {v:?}", e.param.code);
            }
        }
        // 1e300 gigametres overflow in metres: indexed in their own unit only.
        let cvq = values(&x, "component-value-quantity");
        assert!(cvq.iter().any(|v| matches!(v, IndexValue::Quantity { code: Some(c), canonical: None, .. } if c == "Gm")), "{cvq:?}");
        let risk: Value = serde_json::from_str(
            r#"{"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"},
                "prediction": [{"probabilityDecimal": 0e999999}, {"probabilityDecimal": 1e999999}, {"probabilityDecimal": 0.5}]}"#,
        )
        .unwrap();
        let x = Registry::r4().try_extract(&risk).unwrap();
        assert_eq!(values(&x, "probability").len(), 1);
    }
}

//! Runtime values: an [`Item`] is either a FHIR element borrowed from the resource JSON (with
//! its FHIR type from the model and, for primitives, its `_name` extension object) or a
//! FHIRPath System value (Boolean, Integer, Decimal, String, Date, DateTime, Time, Quantity).
//! Elements become System values only when an operator needs them, so navigation never
//! copies the resource.

use std::borrow::Cow;

use serde_json::Value;

use crate::decimal::Decimal;
use crate::temporal::{Temporal, TemporalKind};

/// A FHIR element: a node of the resource JSON typed by the model.
#[derive(Clone, Copy, Debug)]
pub struct Elem<'a> {
    /// The JSON value; `None` for a primitive that only has extensions (`_birthDate`).
    pub value: Option<&'a Value>,
    /// For primitives: the `_name` object holding `id` and `extension`.
    pub ext: Option<&'a Value>,
    /// The FHIR type code (`HumanName`, `date`, `Patient`, `Patient.contact`); empty when the
    /// type is unknown (data outside the model).
    pub ty: &'a str,
    /// The type's id in the navigation index, so navigation needs no name lookup.
    pub(crate) tid: crate::nav::TypeId,
}

impl<'a> Elem<'a> {
    /// An element of the named FHIR type (`""` when unknown).
    pub fn new(value: Option<&'a Value>, ext: Option<&'a Value>, ty: &'a str) -> Elem<'a> {
        Elem {
            value,
            ext,
            ty,
            tid: crate::nav::type_id(ty),
        }
    }
}

/// A FHIRPath System Quantity: a decimal value and a unit, either a UCUM code or a calendar
/// duration keyword (`year`, `month`, `week`, `day`, ...), kept apart as FHIRPath requires.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity<'a> {
    pub value: Decimal,
    pub unit: Cow<'a, str>,
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Elem(Elem<'a>),
    Bool(bool),
    Int(i64),
    Long(i64),
    Dec(Decimal),
    Str(Cow<'a, str>),
    Date(Temporal),
    DateTime(Temporal),
    Time(Temporal),
    Quantity(Box<Quantity<'a>>),
    /// The result of `type()`: a namespace and a type name.
    TypeInfo(&'static str, Cow<'a, str>),
}

/// What System type a FHIR primitive type maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrimKind {
    Bool,
    Int,
    Long,
    Dec,
    Str,
    Date,
    DateTime,
    Time,
}

pub(crate) fn prim_kind(ty: &str) -> Option<PrimKind> {
    Some(match ty {
        "boolean" => PrimKind::Bool,
        "integer" | "positiveInt" | "unsignedInt" => PrimKind::Int,
        "integer64" => PrimKind::Long,
        "decimal" => PrimKind::Dec,
        "string" | "code" | "id" | "uri" | "url" | "canonical" | "markdown" | "oid" | "uuid"
        | "base64Binary" | "xhtml" => PrimKind::Str,
        "date" => PrimKind::Date,
        "dateTime" | "instant" => PrimKind::DateTime,
        "time" => PrimKind::Time,
        _ => return None,
    })
}

/// FHIR types that are Quantities (and convert to a System Quantity).
pub(crate) fn is_quantity_type(ty: &str) -> bool {
    matches!(
        ty,
        "Quantity" | "Age" | "Duration" | "Count" | "Distance" | "SimpleQuantity" | "MoneyQuantity"
    )
}

const UCUM: &str = "http://unitsofmeasure.org";

impl<'a> Item<'a> {
    /// The System value of an item: primitives' JSON values parsed by their FHIR type, FHIR
    /// Quantities as System Quantities; anything else is returned as it is. `None` for a
    /// primitive element with no value.
    pub fn to_system(&self) -> Option<Item<'a>> {
        let Item::Elem(e) = self else {
            return Some(self.clone());
        };
        let v = e.value?;
        // The index knows each model type's kind: no string matching on the hot path.
        let (prim, quantity) = match crate::nav::by_id(e.tid) {
            Some(t) => (t.prim, t.quantity),
            None => (prim_kind(e.ty), is_quantity_type(e.ty)),
        };
        let kind = match prim {
            Some(k) => k,
            None if quantity => {
                return Some(quantity_of(v).map_or_else(|| self.clone(), Item::Quantity))
            }
            None if e.ty.is_empty() || e.ty.starts_with("System.") => match v {
                Value::Bool(b) => return Some(Item::Bool(*b)),
                Value::String(s) => return Some(Item::Str(Cow::Borrowed(s))),
                Value::Number(n) => {
                    return Some(match n.as_i64() {
                        Some(i) if !n.as_str().contains(['.', 'e', 'E']) => Item::Int(i),
                        _ => Decimal::parse(n.as_str()).map_or(Item::Elem(*e), Item::Dec),
                    })
                }
                _ => return Some(self.clone()),
            },
            None => return Some(self.clone()),
        };
        Some(match (kind, v) {
            (PrimKind::Bool, Value::Bool(b)) => Item::Bool(*b),
            (PrimKind::Int, Value::Number(n)) => n.as_i64().map_or(Item::Elem(*e), Item::Int),
            (PrimKind::Long, Value::Number(n)) => n.as_i64().map_or(Item::Elem(*e), Item::Long),
            (PrimKind::Long, Value::String(s)) => s.parse().map_or(Item::Elem(*e), Item::Long),
            (PrimKind::Dec, Value::Number(n)) => {
                Decimal::parse(n.as_str()).map_or(Item::Elem(*e), Item::Dec)
            }
            (PrimKind::Str, Value::String(s)) => Item::Str(Cow::Borrowed(s)),
            (PrimKind::Date, Value::String(s)) => {
                Temporal::parse_date(s).map_or(Item::Str(Cow::Borrowed(s)), Item::Date)
            }
            (PrimKind::DateTime, Value::String(s)) => match Temporal::parse_date_time(s) {
                Some((t, _)) => Item::DateTime(t),
                None => Item::Str(Cow::Borrowed(s)),
            },
            (PrimKind::Time, Value::String(s)) => {
                Temporal::parse_time(s).map_or(Item::Str(Cow::Borrowed(s)), Item::Time)
            }
            (_, Value::String(s)) => Item::Str(Cow::Borrowed(s)),
            (_, Value::Bool(b)) => Item::Bool(*b),
            _ => Item::Elem(*e),
        })
    }

    /// The string value, when the item is (or holds) a string-like value.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self.to_system()? {
            Item::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The FHIRPath type of the item: `("FHIR", "HumanName")` or `("System", "Integer")`.
    pub fn type_name(&self) -> (&'static str, &str) {
        match self {
            Item::Elem(e) => ("FHIR", e.ty),
            Item::Bool(_) => ("System", "Boolean"),
            Item::Int(_) => ("System", "Integer"),
            Item::Long(_) => ("System", "Long"),
            Item::Dec(_) => ("System", "Decimal"),
            Item::Str(_) => ("System", "String"),
            Item::Date(_) => ("System", "Date"),
            Item::DateTime(_) => ("System", "DateTime"),
            Item::Time(_) => ("System", "Time"),
            Item::Quantity(_) => ("System", "Quantity"),
            Item::TypeInfo(..) => ("System", "TypeInfo"),
        }
    }

    /// The item as JSON in the shape `evaluate_to_json` documents: `{"type", "value"}`.
    pub fn to_typed_json(&self) -> Value {
        let (ty, value) = match self {
            Item::Elem(e) => {
                let v = match (e.value, e.ext) {
                    (Some(v), _) => v.clone(),
                    (None, Some(x)) => x.clone(),
                    (None, None) => Value::Null,
                };
                let ty = if e.ty.is_empty() { "unknown" } else { e.ty };
                let mut obj = serde_json::Map::new();
                obj.insert("type".into(), Value::String(ty.to_string()));
                obj.insert("value".into(), v);
                if let (Some(_), Some(x)) = (e.value, e.ext) {
                    obj.insert("extension".into(), x.clone());
                }
                return Value::Object(obj);
            }
            Item::Bool(b) => ("boolean", Value::Bool(*b)),
            Item::Int(i) => ("integer", Value::from(*i)),
            Item::Long(i) => ("integer64", Value::String(i.to_string())),
            Item::Dec(d) => ("decimal", decimal_json(d)),
            Item::Str(s) => ("string", Value::String(s.to_string())),
            Item::Date(t) => ("date", Value::String(t.date_time_text(TemporalKind::Date))),
            Item::DateTime(t) => (
                "dateTime",
                Value::String(t.date_time_text(TemporalKind::DateTime)),
            ),
            Item::Time(t) => ("time", Value::String(t.clock_text())),
            Item::Quantity(q) => {
                let mut obj = serde_json::Map::new();
                obj.insert("value".into(), decimal_json(&q.value));
                obj.insert("unit".into(), Value::String(q.unit.to_string()));
                if !is_calendar_unit(&q.unit) {
                    obj.insert("system".into(), Value::String(UCUM.into()));
                    obj.insert("code".into(), Value::String(q.unit.to_string()));
                }
                ("Quantity", Value::Object(obj))
            }
            Item::TypeInfo(ns, name) => {
                let mut obj = serde_json::Map::new();
                obj.insert("namespace".into(), Value::String((*ns).to_string()));
                obj.insert("name".into(), Value::String(name.to_string()));
                ("TypeInfo", Value::Object(obj))
            }
        };
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), Value::String(ty.into()));
        obj.insert("value".into(), value);
        Value::Object(obj)
    }
}

/// A decimal as a JSON number keeping its digits (the workspace's serde_json keeps number
/// text as written).
pub(crate) fn decimal_json(d: &Decimal) -> Value {
    serde_json::from_str::<Value>(&d.to_string()).unwrap_or(Value::Null)
}

/// Whether a unit is a FHIRPath calendar duration keyword.
pub fn is_calendar_unit(u: &str) -> bool {
    matches!(
        u,
        "year"
            | "years"
            | "month"
            | "months"
            | "week"
            | "weeks"
            | "day"
            | "days"
            | "hour"
            | "hours"
            | "minute"
            | "minutes"
            | "second"
            | "seconds"
            | "millisecond"
            | "milliseconds"
    )
}

/// A FHIR Quantity's JSON as a System Quantity: the UCUM code when the system is UCUM, else
/// the human unit.
pub(crate) fn quantity_of(v: &Value) -> Option<Box<Quantity<'_>>> {
    let value = match v.get("value")? {
        Value::Number(n) => Decimal::parse(n.as_str())?,
        _ => return None,
    };
    let code = v.get("code").and_then(Value::as_str);
    let system = v.get("system").and_then(Value::as_str);
    let unit = match (system, code) {
        (Some(UCUM), Some(c)) => c,
        _ => v
            .get("unit")
            .and_then(Value::as_str)
            .or(code)
            .unwrap_or("1"),
    };
    Some(Box::new(Quantity {
        value,
        unit: Cow::Borrowed(unit),
    }))
}

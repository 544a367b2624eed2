//! The search query every backend executes: a FHIR-level description (no SQL) of which
//! resources match, in which order, from which snapshot and keyset position.

use crate::TxNumber;

/// Comparison prefixes of number, date and quantity parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    pub fn parse(s: &str) -> Option<Prefix> {
        Some(match s {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            _ => return None,
        })
    }
}

/// How a string parameter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringMatch {
    /// The default: the normalized value starts with the normalized search text.
    Prefix,
    /// `:exact`: the value as written equals the search text.
    Exact,
    /// `:contains`: the normalized value contains the normalized search text.
    Contains,
}

/// How a uri parameter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    /// `:below`: the stored URI starts with the search URI.
    Below,
    /// `:above`: the search URI starts with the stored URI.
    Above,
}

/// One condition on a resource. `param` is a search parameter code of the searched type.
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    /// `_id`.
    Id(String),
    /// `_lastUpdated` against `[start, end)` microseconds.
    LastUpdated {
        prefix: Prefix,
        start: i64,
        end: i64,
    },
    String {
        param: String,
        value: String,
        how: StringMatch,
    },
    /// `system` is `None` for any system, `Some(None)` for no system (`|code`).
    Token {
        param: String,
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// `:text` on a token: the normalized display or text starts with `text`.
    TokenText { param: String, text: String },
    /// Any of the keys (`Type/id`, `U:url`, `I:system|value`, as the index writes them).
    Reference { param: String, keys: Vec<String> },
    Date {
        param: String,
        prefix: Prefix,
        start: i64,
        end: i64,
    },
    /// A number or the numeric part of a quantity, with the range its precision implies.
    Number {
        param: String,
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        param: String,
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri {
        param: String,
        value: String,
        how: UriMatch,
    },
    /// A composite parameter (`code-value-quantity=loinc|1234$gt5`): every component holds
    /// on the same element (one tuple). `components` are in the parameter's component order,
    /// each a `Token`, `Reference`, `String`, `Date`, `Number`, `Quantity` or `Uri` predicate
    /// whose own `param` names the component's parameter; the first is a `Token` or a
    /// `Reference`.
    Composite {
        param: String,
        components: Vec<Predicate>,
    },
    /// `:missing=true|false`.
    Missing { param: String, missing: bool },
    /// Holds for no resource (an empty value set, a type outside a compartment).
    Nothing,
    /// `_text` (the narrative, `narrative` true) or `_content` (all the resource's text):
    /// every word of `words` appears (case and accents ignored).
    FullText { narrative: bool, words: Vec<String> },
    /// `:not`: none of the alternatives holds.
    Not(Vec<Predicate>),
    /// A chained parameter (`subject:Patient.name=x`): the reference `param` points at a
    /// `target_type` resource for which every clause of `inner` holds.
    Chain {
        param: String,
        target_type: String,
        inner: Vec<Vec<Predicate>>,
    },
    /// Reverse chaining (`_has:Observation:subject:code=x`): some `source_type` resource whose
    /// reference `param` points at this one satisfies every clause of `inner`.
    Has {
        source_type: String,
        param: String,
        inner: Vec<Vec<Predicate>>,
    },
}

/// The order of results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// No `_sort`: an order of the store's choosing, stable across the pages of a session
    /// (oldest change first, unless the driving index has a cheaper order of its own).
    #[default]
    Any,
    /// Oldest change first (`_sort=_lastUpdated`).
    LastUpdated,
    /// Newest change first (`_sort=-_lastUpdated`).
    LastUpdatedDesc,
    /// By id (`_sort=_id` / `-_id`).
    Id,
    IdDesc,
}

/// What a `_sort` key sorts by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortBy {
    Id,
    LastUpdated,
    /// A search parameter with the table kind it is indexed in (string, date, number,
    /// quantity, uri); a resource with several values sorts by its lowest (ascending) or
    /// highest (descending), and resources without one come last.
    Param {
        code: String,
        kind: crate::ParamType,
    },
}

/// One `_sort` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

/// Where a page starts: after this key of the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    Seq(u64),
    /// For searches sorted by parameters: how many results came before.
    Offset(u64),
    Id(String),
    /// After this (index value, `seq`) of a walk in index order (see [`Order::Any`]).
    Key(String, u64),
}

/// A search over one resource type.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    pub resource_type: String,
    /// Every clause must hold; a clause holds when any of its predicates does.
    pub clauses: Vec<Vec<Predicate>>,
    pub order: Order,
    /// `_sort` by parameters; when present it decides the order (ties broken by `order`) and
    /// pages are counted by offset.
    pub sort: Vec<SortKey>,
    /// The snapshot to read; `None` reads the latest committed state.
    pub snapshot: Option<TxNumber>,
    pub after: Option<Position>,
    pub limit: usize,
    /// System search: the types searched, each with its own clauses (parameters mean
    /// different things per type); results of all of them are merged in `order`. Empty for a
    /// search of `resource_type` alone.
    pub types: Vec<(String, Vec<Vec<Predicate>>)>,
    /// System search over every type with type-independent clauses (`_id`, `_lastUpdated`).
    pub all_types: bool,
    /// When the search must stop (its time limit, or its client gone).
    pub interrupt: crate::Interrupt,
}

/// A page of matches in order, with the position of the next page.
#[derive(Clone, Debug)]
pub struct SearchPage {
    pub versions: Vec<crate::Version>,
    pub next: Option<Position>,
}

//! Search: the URL's parameters become a [`SearchQuery`] (checked against the search
//! parameters of the type), the store runs it, and the caller gets a page, the total and the
//! paging position.

use flint_fhir::{datetime, Error, Result};
use flint_search::{ParamType, Registry};
use flint_store::search::{
    Order, Position, Predicate, Prefix, SearchQuery, SortBy, SortKey, StringMatch, UriMatch,
};
use flint_store::{Store, TxNumber, Version};

use crate::{Context, Engine};

/// `_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalMode {
    /// No `_total`: the total when it costs nothing, that is when the first page holds every
    /// match (a paging link carries it on). Counting a large result costs as much as the page
    /// itself, so it is done only when asked for.
    Auto,
    None,
    Estimate,
    Accurate,
}

/// A parsed search request.
#[derive(Clone, Debug)]
pub struct ParsedSearch {
    pub query: SearchQuery,
    pub total: TotalMode,
    /// `_summary=count`: the total only.
    pub count_only: bool,
    /// The parameters that were understood and applied, for the `self` link.
    pub applied: Vec<(String, String)>,
    /// Parameters that were not understood (ignored under lenient handling).
    pub ignored: Vec<String>,
    pub includes: Vec<Include>,
}

/// An `_include` or `_revinclude`.
#[derive(Clone, Debug, PartialEq)]
pub struct Include {
    pub reverse: bool,
    /// The type whose reference parameter is followed.
    pub source_type: String,
    /// The reference parameter; `None` for `*` (every reference parameter).
    pub param: Option<String>,
    /// For `_include`: only references to this type.
    pub target: Option<String>,
    /// `:iterate`: also follow from included resources.
    pub iterate: bool,
}

/// A page of results.
pub struct SearchOutcome {
    pub versions: Vec<Version>,
    pub total: Option<u64>,
    /// The snapshot this page was read from, and where the next page starts.
    pub snapshot: TxNumber,
    pub next: Option<Position>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<Version>,
    /// Why the page is incomplete, when it is (the includes were cut at their limit).
    pub truncated: Option<String>,
}

/// Most parameters one search takes (each one is a clause the store must join).
pub const MAX_PARAMETERS: usize = 100;
/// Most values one parameter may list (OR, separated by commas).
pub const MAX_OR_VALUES: usize = 500;

/// Refuses searches whose size alone would make them too costly to run (the store's SQL
/// has limits on expression depth, and the query's cost grows with each term).
fn check_size(params: &[(String, String)]) -> Result<()> {
    let counted = params
        .iter()
        .filter(|(k, _)| !TRANSPORT_PARAMS.contains(&k.split(':').next().unwrap_or(k)))
        .count();
    if counted > MAX_PARAMETERS {
        return Err(Error::new(
            flint_fhir::IssueType::TooCostly,
            format!("the search has {counted} parameters; at most {MAX_PARAMETERS} are accepted"),
        )
        .with_status(400));
    }
    for (name, value) in params {
        // Commas separate values; `\,` is a comma inside one.
        let values = 1 + value.matches(',').count() - value.matches("\\,").count();
        if values > MAX_OR_VALUES {
            return Err(Error::new(
                flint_fhir::IssueType::TooCostly,
                format!(
                    "the parameter '{name}' lists {values} values; at most {MAX_OR_VALUES} are accepted"
                ),
            )
            .with_status(400)
            .at(name.clone()));
        }
    }
    Ok(())
}

/// The index entry every contained resource has under `#Type` (see `index_values`).
pub const CONTAINED_MARKER: &str = "_contained";

/// Whether a parameter's values are Identifiers, read off simple path expressions
/// (`Patient.identifier | Patient.link.other.identifier`); `None` when the expression is not
/// made of plain paths the model resolves.
fn identifier_typed(
    model: &flint_fhir::Model,
    resource_type: &str,
    expression: &str,
) -> Option<bool> {
    let mut any = false;
    for part in expression.split('|').map(str::trim) {
        let mut segments = part.split('.');
        let mut owner = segments.next()?.to_string();
        if owner != resource_type {
            return None;
        }
        let mut last = None;
        for segment in segments {
            if segment.is_empty() || !segment.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            let child = model.child(&owner, segment)?;
            // Backbone elements are types named by their path.
            owner = if model.child(&format!("{owner}.{segment}"), "id").is_some() {
                format!("{owner}.{segment}")
            } else {
                child.type_code.to_string()
            };
            last = Some(child.type_code.to_string());
        }
        any |= last.as_deref() == Some("Identifier");
    }
    Some(any)
}

/// `_contained`: which resources a search looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contained {
    /// Top-level resources only (the default).
    No,
    /// Resources contained in others, returned as their containers.
    Only,
    /// Both.
    Both,
}

/// Parameters that shape the result rather than select resources.
const RESULT_PARAMS: [&str; 9] = [
    "_include",
    "_revinclude",
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_contained",
    "_containedType",
];
/// Parameters handled outside search (format, paging state).
const TRANSPORT_PARAMS: [&str; 4] = ["_format", "_pretty", "__snapshot", "__after"];
/// Set by the server for compartment searches (`Patient/123/Observation`): `Type/id`.
const COMPARTMENT_PARAM: &str = "__compartment";

fn unsupported(what: String) -> Error {
    Error::not_supported(what)
}

/// Decodes a query string (`a=b&c=d`) into its parameters, in order, repeats kept.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits a parameter value on commas not escaped with `\`, unescaping `\,` `\|` `\$` `\\`.
pub fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$' | '|' | '\\')) => {
                    if let Some(last) = out.last_mut() {
                        if n == '|' {
                            // Kept escaped: the token parser splits on unescaped bars.
                            last.push('\\');
                        }
                        last.push(n);
                    }
                }
                Some(n) => {
                    if let Some(last) = out.last_mut() {
                        last.push('\\');
                        last.push(n);
                    }
                }
                None => {}
            },
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// Most codes a value set or a subsumption search may expand to: each is one alternative of
/// the query (and two bound values).
const MAX_EXPANDED_CODES: usize = 5000;

fn check_expansion_size(code: &str, n: usize) -> Result<()> {
    if n > MAX_EXPANDED_CODES {
        return Err(unsupported(format!(
            "'{code}' expands to {n} codes; at most {MAX_EXPANDED_CODES} are supported"
        )));
    }
    Ok(())
}

/// Splits on every unescaped `sep`, keeping every escape in the parts (for composites: the
/// tuples on `,`, then the components on `$`; each part is unescaped when parsed).
fn split_raw(value: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in value.chars() {
        if c == sep && !escaped {
            out.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// Splits `system|code` on the first unescaped bar.
fn split_bar(value: &str) -> (Option<String>, String) {
    let mut prev_backslash = false;
    for (i, c) in value.char_indices() {
        if c == '|' && !prev_backslash {
            return (
                Some(value[..i].replace("\\|", "|")),
                value[i + 1..].replace("\\|", "|"),
            );
        }
        prev_backslash = c == '\\';
    }
    (None, value.replace("\\|", "|"))
}

fn prefix_and_rest(value: &str) -> (Prefix, &str) {
    // `get` rather than indexing: the value may start with a multi-byte character.
    if let (Some(head), Some(rest)) = (value.get(..2), value.get(2..)) {
        if let Some(p) = Prefix::parse(head) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
                return (p, rest);
            }
        }
    }
    (Prefix::Eq, value)
}

/// A decimal and the range its written precision implies (`100` is `[99.5, 100.5)`).
fn decimal_range(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some((value, value - half, value + half))
}

fn date_range(text: &str) -> Option<(i64, i64)> {
    let d = datetime::parse_date_time_lenient(text)?;
    Some((d.start_micros(), d.end_micros()))
}

impl<S: Store> Engine<S> {
    /// Parses search parameters for `resource_type`. Unknown parameters are collected in
    /// `ignored`, or refused when `strict`.
    ///
    /// # Errors
    /// A malformed value (400), an unknown parameter under strict handling (400), a feature
    /// this server does not support yet (400 not-supported).
    pub fn parse_search(
        &self,
        ctx: &Context,
        resource_type: &str,
        params: &[(String, String)],
        strict: bool,
        max_count: usize,
        default_count: usize,
    ) -> Result<ParsedSearch> {
        self.check_type(resource_type)?;
        check_size(params)?;
        let registry = self.registry();
        let registry = &*registry;
        let mut query = SearchQuery {
            resource_type: resource_type.to_string(),
            limit: default_count,
            ..Default::default()
        };
        let mut contained = Contained::No;
        let mut parsed = ParsedSearch {
            query: SearchQuery::default(),
            total: TotalMode::Auto,
            count_only: false,
            applied: Vec::new(),
            ignored: Vec::new(),
            includes: Vec::new(),
        };
        for (name, value) in params {
            let code = name.split(':').next().unwrap_or(name);
            if TRANSPORT_PARAMS.contains(&code) {
                continue;
            }
            if code == COMPARTMENT_PARAM {
                let (compartment, id) = value
                    .split_once('/')
                    .ok_or_else(|| Error::invalid("bad compartment"))?;
                // A type outside the compartment has nothing in it.
                query.clauses.push(
                    compartment_clause(compartment, id, resource_type)
                        .unwrap_or_else(|| vec![Predicate::Nothing]),
                );
                parsed.applied.push((name.clone(), value.clone()));
                continue;
            }
            if RESULT_PARAMS.contains(&code) {
                match code {
                    "_count" => {
                        let n: usize = value.parse().map_err(|_| {
                            Error::invalid(format!("_count '{value}' is not a number"))
                        })?;
                        query.limit = n.min(max_count);
                        // `_count=0` asks for the total alone, as `_summary=count` does.
                        if n == 0 {
                            parsed.count_only = true;
                        }
                    }
                    "_sort" => {
                        let keys: Vec<&str> = value
                            .split(',')
                            .map(str::trim)
                            .filter(|k| !k.is_empty())
                            .collect();
                        match keys.as_slice() {
                            // One key on the version itself: keyset paging.
                            ["_lastUpdated"] => query.order = Order::LastUpdated,
                            ["-_lastUpdated"] => query.order = Order::LastUpdatedDesc,
                            ["_id"] => query.order = Order::Id,
                            ["-_id"] => query.order = Order::IdDesc,
                            _ => {
                                for key in keys {
                                    query
                                        .sort
                                        .push(self.sort_key(registry, resource_type, key)?);
                                }
                            }
                        }
                    }
                    "_total" => {
                        parsed.total = match value.as_str() {
                            "none" => TotalMode::None,
                            "estimate" => TotalMode::Estimate,
                            "accurate" => TotalMode::Accurate,
                            other => {
                                return Err(Error::invalid(format!(
                                    "_total must be none, estimate or accurate, not '{other}'"
                                )))
                            }
                        }
                    }
                    "_summary" => parsed.count_only |= value == "count",
                    "_include" | "_revinclude" => {
                        let modifier = name.split_once(':').map(|(_, m)| m);
                        parsed.includes.push(self.include(
                            registry,
                            code == "_revinclude",
                            modifier,
                            value,
                        )?);
                    }
                    "_contained" => {
                        contained = match value.as_str() {
                            "false" => Contained::No,
                            "true" => Contained::Only,
                            "both" => Contained::Both,
                            other => {
                                return Err(Error::invalid(format!(
                                    "_contained must be true, false or both, not '{other}'"
                                )))
                            }
                        }
                    }
                    "_containedType" => match value.as_str() {
                        "container" => {}
                        "contained" => {
                            return Err(unsupported(
                                "_containedType=contained is not supported: contained matches \
                                 are returned inside their containers"
                                    .into(),
                            ))
                        }
                        other => {
                            return Err(Error::invalid(format!(
                                "_containedType must be container or contained, not '{other}'"
                            )))
                        }
                    },
                    _ => {}
                }
                parsed.applied.push((name.clone(), value.clone()));
                continue;
            }
            let clause = match self.clause_for(ctx, registry, resource_type, name, value, 0)? {
                Some(clause) => clause,
                None if strict => {
                    return Err(Error::invalid(format!(
                        "unknown search parameter '{name}' for {resource_type}"
                    )))
                }
                None => {
                    parsed.ignored.push(name.clone());
                    continue;
                }
            };
            query.clauses.push(clause);
            parsed.applied.push((name.clone(), value.clone()));
        }
        if contained != Contained::No {
            // Contained resources are indexed under `#Type` (see `index_values`); a match
            // is found as its container, which is what is returned.
            let on_version = |p: &Predicate| {
                matches!(
                    p,
                    Predicate::Id(_) | Predicate::LastUpdated { .. } | Predicate::FullText { .. }
                )
            };
            if query.clauses.iter().flatten().any(on_version) {
                return Err(unsupported(
                    "_id, _lastUpdated, _text and _content cannot be combined with _contained"
                        .into(),
                ));
            }
            let inside = format!("#{resource_type}");
            // Holds for a container of at least one resource of the type (so that a search
            // with no other parameter does not match every resource).
            // Last: the client's first parameter, more selective, drives.
            let mut inside_clauses = query.clauses.clone();
            inside_clauses.push(vec![Predicate::Token {
                param: CONTAINED_MARKER.into(),
                system: None,
                code: Some(resource_type.to_string()),
            }]);
            if contained == Contained::Both {
                query.types = vec![
                    (resource_type.to_string(), query.clauses.clone()),
                    (inside, inside_clauses),
                ];
            } else {
                query.resource_type = inside;
                query.clauses = inside_clauses;
            }
        }
        parsed.query = query;
        Ok(parsed)
    }

    /// `_list=id[,id]`: the resources of the type that the List's entries point at.
    fn list_members(&self, resource_type: &str, value: &str) -> Result<Vec<Predicate>> {
        let mut alternatives = Vec::new();
        for list_id in split_or(value) {
            if list_id.starts_with('$') {
                return Err(unsupported(format!(
                    "functional lists ('_list={list_id}') are not supported"
                )));
            }
            let Some(list) = self.store().read("List", &list_id)? else {
                continue;
            };
            let Some(json) = &list.json else { continue };
            let list: serde_json::Value = serde_json::from_slice(json).map_err(Error::internal)?;
            for entry in list["entry"].as_array().into_iter().flatten() {
                let Some(reference) = entry["item"]["reference"].as_str() else {
                    continue;
                };
                // Relative (`Type/id`) or absolute (`…/Type/id`), possibly versioned.
                let path = reference.split("/_history/").next().unwrap_or(reference);
                let mut segments = path.rsplit('/');
                if let (Some(id), Some(rt)) = (segments.next(), segments.next()) {
                    if rt == resource_type && !id.is_empty() {
                        alternatives.push(Predicate::Id(id.to_string()));
                    }
                }
            }
        }
        if alternatives.is_empty() {
            alternatives.push(Predicate::Nothing);
        }
        Ok(alternatives)
    }

    fn sort_key(&self, registry: &Registry, resource_type: &str, key: &str) -> Result<SortKey> {
        let (descending, code) = match key.strip_prefix('-') {
            Some(code) => (true, code),
            None => (false, key),
        };
        let by = match code {
            "_id" => SortBy::Id,
            "_lastUpdated" => SortBy::LastUpdated,
            _ => match registry.param(resource_type, code) {
                Some(p)
                    if matches!(
                        p.kind,
                        ParamType::String
                            | ParamType::Date
                            | ParamType::Number
                            | ParamType::Quantity
                            | ParamType::Uri
                            // Tokens by system, then code (as HAPI FHIR does); references
                            // by the reference (`Type/id`, else the URL or identifier value).
                            | ParamType::Token
                            | ParamType::Reference
                    ) =>
                {
                    SortBy::Param {
                        code: code.to_string(),
                        kind: p.kind,
                    }
                }
                Some(p) => {
                    return Err(unsupported(format!(
                        "sorting by the {} parameter '{code}' is not supported yet",
                        p.kind.code()
                    )))
                }
                None => {
                    return Err(Error::invalid(format!(
                        "cannot sort by '{code}': not a search parameter of {resource_type}"
                    )))
                }
            },
        };
        Ok(SortKey { by, descending })
    }

    fn include(
        &self,
        registry: &Registry,
        reverse: bool,
        modifier: Option<&str>,
        value: &str,
    ) -> Result<Include> {
        let iterate = match modifier {
            None => false,
            Some("iterate" | "recurse") => true,
            Some(m) => {
                return Err(Error::invalid(format!(
                    "':{m}' is not a modifier of _include/_revinclude"
                )))
            }
        };
        let what = if reverse { "_revinclude" } else { "_include" };
        if value == "*" {
            return Err(unsupported(format!(
                "{what}=* needs a source type: write Type:*"
            )));
        }
        let mut parts = value.splitn(3, ':');
        let source = parts.next().unwrap_or("");
        let param = parts
            .next()
            .ok_or_else(|| Error::invalid(format!("{what}={value}: expected Type:parameter")))?;
        let target = parts.next().map(str::to_string);
        if !self.model().is_resource_type(source) {
            return Err(Error::invalid(format!(
                "{what}={value}: '{source}' is not a resource type"
            )));
        }
        if let Some(t) = &target {
            if !self.model().is_resource_type(t) {
                return Err(Error::invalid(format!(
                    "{what}={value}: '{t}' is not a resource type"
                )));
            }
        }
        let param = if param == "*" {
            None
        } else {
            match registry.param(source, param) {
                Some(p) if p.kind == ParamType::Reference => Some(param.to_string()),
                _ => {
                    return Err(Error::invalid(format!(
                        "{what}={value}: '{param}' is not a reference parameter of {source}"
                    )))
                }
            }
        };
        Ok(Include {
            reverse,
            source_type: source.to_string(),
            param,
            target,
            iterate,
        })
    }

    /// The resources the page's includes bring in, following `:iterate` up to three levels,
    /// at most `[search] max_include` of them (and then a note saying the page is cut).
    fn included(
        &self,
        includes: &[Include],
        matches: &[Version],
        page: &SearchQuery,
    ) -> Result<(Vec<Version>, Option<String>)> {
        let snapshot = page.snapshot;
        let max = self.limits.max_included;
        let cut = || {
            Some(format!(
                "_include/_revinclude matched more than {max} resources; only the first {max} \
                 are included ([search] max_include); ask for fewer results per page"
            ))
        };
        let registry = self.registry();
        let registry = &*registry;
        let mut seen: std::collections::HashSet<(String, String)> = matches
            .iter()
            .map(|v| (v.resource_type.clone(), v.id.clone()))
            .collect();
        let mut out: Vec<Version> = Vec::new();
        let mut frontier: Vec<Version> = matches.to_vec();
        for round in 0..3 {
            let mut found: Vec<Version> = Vec::new();
            for inc in includes.iter().filter(|i| round == 0 || i.iterate) {
                if inc.reverse {
                    let keys: Vec<String> = frontier
                        .iter()
                        .map(|v| format!("{}/{}", v.resource_type, v.id))
                        .collect();
                    if keys.is_empty() {
                        continue;
                    }
                    let params: Vec<String> = match &inc.param {
                        Some(p) => vec![p.clone()],
                        None => registry
                            .params(&inc.source_type)
                            .iter()
                            .filter(|p| p.kind == ParamType::Reference)
                            .map(|p| p.code.clone())
                            .collect(),
                    };
                    let clause = params
                        .into_iter()
                        .map(|param| Predicate::Reference {
                            param,
                            keys: keys.clone(),
                        })
                        .collect();
                    let room = max.saturating_sub(out.len() + found.len());
                    let query = SearchQuery {
                        resource_type: inc.source_type.clone(),
                        clauses: vec![clause],
                        snapshot,
                        // One more than there is room for, to know when to say so.
                        limit: room + 1,
                        interrupt: page.interrupt.clone(),
                        ..Default::default()
                    };
                    for v in self.store().search(&query)?.versions {
                        if seen.insert((v.resource_type.clone(), v.id.clone())) {
                            if out.len() + found.len() >= max {
                                out.extend(found);
                                return Ok((out, cut()));
                            }
                            found.push(v);
                        }
                    }
                } else {
                    for v in frontier
                        .iter()
                        .filter(|v| v.resource_type == inc.source_type)
                    {
                        let Ok(resource) = crate::parse_stored(v) else {
                            continue;
                        };
                        for e in registry.extract(&resource) {
                            let wanted = match &inc.param {
                                Some(p) => e.param.code == *p,
                                None => e.param.kind == ParamType::Reference,
                            };
                            if !wanted {
                                continue;
                            }
                            for value in &e.values {
                                let flint_search::IndexValue::Reference {
                                    resource_type: Some(t),
                                    id: Some(id),
                                    ..
                                } = value
                                else {
                                    continue;
                                };
                                if inc
                                    .target
                                    .as_deref()
                                    .is_some_and(|target| target != t.as_ref())
                                {
                                    continue;
                                }
                                if !seen.insert((t.to_string(), id.to_string())) {
                                    continue;
                                }
                                page.interrupt.check()?;
                                if let Some(target) =
                                    self.store().read(t, id)?.filter(|v| !v.is_deleted())
                                {
                                    if out.len() + found.len() >= max {
                                        out.extend(found);
                                        return Ok((out, cut()));
                                    }
                                    found.push(target);
                                }
                            }
                        }
                    }
                }
            }
            if found.is_empty() {
                break;
            }
            out.extend(found.iter().cloned());
            frontier = found;
        }
        Ok((out, None))
    }

    /// The clause of a parameter name as written: reverse chains (`_has:Type:param:...`),
    /// chains (`subject:Patient.name`, several levels), or a plain parameter with its modifier.
    fn clause_for(
        &self,
        ctx: &Context,
        registry: &Registry,
        resource_type: &str,
        name: &str,
        value: &str,
        depth: usize,
    ) -> Result<Option<Vec<Predicate>>> {
        if depth > 4 {
            return Err(Error::invalid(format!(
                "'{name}' chains too deeply (at most 4 levels)"
            )));
        }
        if let Some(rest) = name.strip_prefix("_has:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(source), Some(param), Some(inner)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::invalid(format!(
                    "'{name}' is not of the form _has:Type:parameter:parameter"
                )));
            };
            if !self.model().is_resource_type(source) {
                return Err(Error::invalid(format!(
                    "'{source}' in '{name}' is not a resource type"
                )));
            }
            match registry.param(source, param) {
                Some(p) if p.kind == ParamType::Reference => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "'{param}' is not a reference parameter of {source}"
                    )))
                }
            }
            let Some(inner_clause) =
                self.clause_for(ctx, registry, source, inner, value, depth + 1)?
            else {
                return Err(Error::invalid(format!(
                    "'{inner}' is not a search parameter of {source}"
                )));
            };
            return Ok(Some(vec![Predicate::Has {
                source_type: source.to_string(),
                param: param.to_string(),
                inner: vec![inner_clause],
            }]));
        }
        if let Some((head, rest)) = name.split_once('.') {
            let (code, target) = match head.split_once(':') {
                Some((c, t)) => (c, Some(t)),
                None => (head, None),
            };
            let Some(param) = registry.param(resource_type, code) else {
                return Ok(None);
            };
            if param.kind != ParamType::Reference {
                return Err(Error::invalid(format!(
                    "'{code}' is not a reference parameter, so it cannot be chained"
                )));
            }
            let targets: Vec<String> = match target {
                Some(t) if self.model().is_resource_type(t) => vec![t.to_string()],
                Some(t) => {
                    return Err(Error::invalid(format!(
                        "'{t}' in '{name}' is not a resource type"
                    )))
                }
                None if !param.targets.is_empty() => param.targets.clone(),
                None => self.model().resource_types().to_vec(),
            };
            let first = rest.split(['.', ':']).next().unwrap_or(rest);
            let mut alternatives = Vec::new();
            for t in targets {
                // Only target types that have the chained parameter take part.
                let known = first.starts_with('_') || registry.param(&t, first).is_some();
                if !known {
                    continue;
                }
                if let Some(inner) = self.clause_for(ctx, registry, &t, rest, value, depth + 1)? {
                    alternatives.push(Predicate::Chain {
                        param: code.to_string(),
                        target_type: t,
                        inner: vec![inner],
                    });
                }
            }
            return Ok((!alternatives.is_empty()).then_some(alternatives));
        }
        let (code, modifier) = match name.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (name, None),
        };
        self.clause(ctx, registry, resource_type, code, modifier, value)
    }

    /// One parameter's clause (its comma-separated alternatives); `None` when the parameter is
    /// not known for the type.
    fn clause(
        &self,
        ctx: &Context,
        registry: &Registry,
        resource_type: &str,
        code: &str,
        modifier: Option<&str>,
        value: &str,
    ) -> Result<Option<Vec<Predicate>>> {
        if code.contains('.') || modifier.is_some_and(|m| m.contains('.')) {
            return Err(unsupported(format!(
                "chained parameters ('{code}') are not supported yet"
            )));
        }
        if matches!(code, "_has" | "_query" | "_filter" | "_type") {
            return Err(unsupported(format!("'{code}' is not supported yet")));
        }
        if code == "_text" || code == "_content" {
            if let Some(m) = modifier {
                return Err(Error::invalid(format!(
                    "modifier ':{m}' is not valid on {code}"
                )));
            }
            let alternatives: Vec<Predicate> = split_or(value)
                .iter()
                .map(|v| Predicate::FullText {
                    narrative: code == "_text",
                    words: crate::fulltext::words(v),
                })
                .collect();
            if alternatives
                .iter()
                .any(|p| matches!(p, Predicate::FullText { words, .. } if words.is_empty()))
            {
                return Err(Error::invalid(format!("{code} needs at least one word")));
            }
            return Ok(Some(alternatives));
        }
        if code == "_list" {
            if let Some(m) = modifier {
                return Err(Error::invalid(format!(
                    "modifier ':{m}' is not valid on _list"
                )));
            }
            return self.list_members(resource_type, value).map(Some);
        }
        if code == "_id" {
            let values = split_or(value);
            return Ok(Some(match modifier {
                None => values.into_iter().map(Predicate::Id).collect(),
                Some("not") => vec![Predicate::Not(
                    values.into_iter().map(Predicate::Id).collect(),
                )],
                Some(m) => {
                    return Err(Error::invalid(format!(
                        "modifier ':{m}' is not valid on _id"
                    )))
                }
            }));
        }
        if code == "_lastUpdated" {
            if let Some(m) = modifier {
                return Err(Error::invalid(format!(
                    "modifier ':{m}' is not valid on _lastUpdated"
                )));
            }
            let mut alternatives = Vec::new();
            for v in split_or(value) {
                let (prefix, rest) = prefix_and_rest(&v);
                let (start, end) = date_range(rest).ok_or_else(|| {
                    Error::invalid(format!("'{v}' is not a date for _lastUpdated"))
                })?;
                alternatives.push(Predicate::LastUpdated { prefix, start, end });
            }
            return Ok(Some(alternatives));
        }
        let Some(param) = registry.param(resource_type, code) else {
            return Ok(None);
        };
        let code = code.to_string();
        if modifier == Some("missing") {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(Error::invalid(format!(
                        "{code}:missing must be true or false"
                    )))
                }
            };
            return Ok(Some(vec![Predicate::Missing {
                param: code,
                missing,
            }]));
        }
        let bad_modifier = |m: &str| {
            Error::invalid(format!(
                "modifier ':{m}' is not valid on the {} parameter '{code}'",
                param.kind.code()
            ))
        };
        let mut alternatives = Vec::new();
        match param.kind {
            ParamType::String => {
                let how = match modifier {
                    None => StringMatch::Prefix,
                    Some("exact") => StringMatch::Exact,
                    Some("contains") => StringMatch::Contains,
                    Some("text") => {
                        return Err(unsupported(format!("{code}:text is not supported yet")))
                    }
                    Some(m) => return Err(bad_modifier(m)),
                };
                for v in split_or(value) {
                    let value = if how == StringMatch::Exact {
                        v
                    } else {
                        flint_search::normalize_string(&v)
                    };
                    alternatives.push(Predicate::String {
                        param: code.clone(),
                        value,
                        how,
                    });
                }
            }
            ParamType::Token => {
                let not = match modifier {
                    None => false,
                    Some("not") => true,
                    Some("text") => {
                        for v in split_or(value) {
                            alternatives.push(Predicate::TokenText {
                                param: code.clone(),
                                text: v,
                            });
                        }
                        return Ok(Some(alternatives));
                    }
                    Some(m @ ("in" | "not-in")) => {
                        for v in split_or(value) {
                            let codes = self.expand(&v)?;
                            alternatives.extend(codes.into_iter().map(|(system, c)| {
                                Predicate::Token {
                                    param: code.clone(),
                                    system: Some(Some(system)),
                                    code: c,
                                }
                            }));
                        }
                        check_expansion_size(&code, alternatives.len())?;
                        if alternatives.is_empty() {
                            // An empty value set: nothing is in it.
                            alternatives.push(Predicate::Nothing);
                        }
                        return Ok(Some(if m == "in" {
                            alternatives
                        } else {
                            vec![Predicate::Not(alternatives)]
                        }));
                    }
                    Some(m @ ("above" | "below")) => {
                        for v in split_or(value) {
                            let (system, c) = match split_bar(&v) {
                                (Some(s), c) if !s.is_empty() && !c.is_empty() => (s, c),
                                _ => {
                                    return Err(Error::invalid(format!(
                                    "{code}:{m} needs a system and a code (system|code), not '{v}'"
                                )))
                                }
                            };
                            let h = self.hierarchy(&system)?;
                            let codes = if m == "below" {
                                h.descendants(&c, true)
                            } else {
                                h.ancestors(&c, true)
                            };
                            alternatives.extend(codes.into_iter().map(|c| Predicate::Token {
                                param: code.clone(),
                                system: Some(Some(system.clone())),
                                code: Some(c),
                            }));
                        }
                        check_expansion_size(&code, alternatives.len())?;
                        return Ok(Some(alternatives));
                    }
                    Some("of-type") => {
                        if identifier_typed(self.model(), resource_type, param.expression.text())
                            == Some(false)
                        {
                            return Err(Error::invalid(format!(
                                ":of-type applies to Identifier parameters, and '{code}' is not one"
                            )));
                        }
                        for v in split_or(value) {
                            let (type_system, rest) = split_bar(&v);
                            let (type_code, id_value) = split_bar(&rest);
                            let (Some(type_system), Some(type_code)) = (type_system, type_code)
                            else {
                                return Err(Error::invalid(format!(
                                    "{code}:of-type takes type-system|type-code|value, not '{v}'"
                                )));
                            };
                            if type_code.is_empty() || id_value.is_empty() {
                                return Err(Error::invalid(format!(
                                    "{code}:of-type needs a type code and a value, not '{v}'"
                                )));
                            }
                            alternatives.push(Predicate::Composite {
                                param: code.clone(),
                                components: vec![
                                    Predicate::Token {
                                        param: code.clone(),
                                        system: Some(
                                            (!type_system.is_empty()).then_some(type_system),
                                        ),
                                        code: Some(type_code),
                                    },
                                    Predicate::Token {
                                        param: code.clone(),
                                        system: None,
                                        code: Some(id_value),
                                    },
                                ],
                            });
                        }
                        return Ok(Some(alternatives));
                    }
                    Some(m) => return Err(bad_modifier(m)),
                };
                for v in split_or(value) {
                    let (system, code_part) = split_bar(&v);
                    let token = match system {
                        None => Predicate::Token {
                            param: code.clone(),
                            system: None,
                            code: Some(code_part),
                        },
                        Some(s) if s.is_empty() => Predicate::Token {
                            param: code.clone(),
                            system: Some(None),
                            code: Some(code_part),
                        },
                        Some(s) => Predicate::Token {
                            param: code.clone(),
                            system: Some(Some(s)),
                            code: (!code_part.is_empty()).then_some(code_part),
                        },
                    };
                    alternatives.push(token);
                }
                if not {
                    // None of the values may match.
                    return Ok(Some(vec![Predicate::Not(alternatives)]));
                }
            }
            ParamType::Reference => {
                for v in split_or(value) {
                    let keys = match modifier {
                        Some("identifier") => {
                            let (system, value) = split_bar(&v);
                            match system {
                                Some(s) if !s.is_empty() => vec![format!("I:{s}|{value}")],
                                _ => vec![format!("I:|{value}")],
                            }
                        }
                        Some(
                            m @ ("above" | "below" | "missing" | "text" | "contains" | "exact"
                            | "not" | "in" | "not-in" | "of-type"),
                        ) => return Err(bad_modifier(m)),
                        Some(target) => {
                            if !self.model().is_resource_type(target) {
                                return Err(Error::invalid(format!(
                                    "':{target}' is not a resource type"
                                )));
                            }
                            vec![format!("{target}/{}", v.rsplit('/').next().unwrap_or(&v))]
                        }
                        None => {
                            reference_keys(ctx, &v, &param.targets, self.model().resource_types())
                        }
                    };
                    alternatives.push(Predicate::Reference {
                        param: code.clone(),
                        keys,
                    });
                }
            }
            ParamType::Date => {
                if let Some(m) = modifier {
                    return Err(bad_modifier(m));
                }
                for v in split_or(value) {
                    let (prefix, rest) = prefix_and_rest(&v);
                    let (start, end) = date_range(rest).ok_or_else(|| {
                        Error::invalid(format!("'{v}' is not a valid date for {code}"))
                    })?;
                    alternatives.push(Predicate::Date {
                        param: code.clone(),
                        prefix,
                        start,
                        end,
                    });
                }
            }
            ParamType::Number => {
                if let Some(m) = modifier {
                    return Err(bad_modifier(m));
                }
                for v in split_or(value) {
                    let (prefix, rest) = prefix_and_rest(&v);
                    let (value, low, high) = decimal_range(rest).ok_or_else(|| {
                        Error::invalid(format!("'{v}' is not a number for {code}"))
                    })?;
                    alternatives.push(Predicate::Number {
                        param: code.clone(),
                        prefix,
                        value,
                        low,
                        high,
                    });
                }
            }
            ParamType::Quantity => {
                if let Some(m) = modifier {
                    return Err(bad_modifier(m));
                }
                for v in split_or(value) {
                    let (prefix, rest) = prefix_and_rest(&v);
                    let mut parts = rest.splitn(3, '|');
                    let number = parts.next().unwrap_or("");
                    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
                    let unit = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
                    let (value, low, high) = decimal_range(number).ok_or_else(|| {
                        Error::invalid(format!("'{v}' is not a quantity for {code}"))
                    })?;
                    alternatives.push(Predicate::Quantity {
                        param: code.clone(),
                        prefix,
                        value,
                        low,
                        high,
                        system,
                        code: unit,
                    });
                }
            }
            ParamType::Uri => {
                let how = match modifier {
                    None => UriMatch::Exact,
                    Some("below") => UriMatch::Below,
                    Some("above") => UriMatch::Above,
                    Some(m) => return Err(bad_modifier(m)),
                };
                for v in split_or(value) {
                    alternatives.push(Predicate::Uri {
                        param: code.clone(),
                        value: v,
                        how,
                    });
                }
            }
            ParamType::Composite => {
                if let Some(m) = modifier {
                    return Err(bad_modifier(m));
                }
                for tuple in split_raw(value, ',') {
                    let parts = split_raw(&tuple, '$');
                    if parts.len() != param.components.len() {
                        return Err(Error::invalid(format!(
                            "'{tuple}' has {} part(s) but the composite parameter '{code}' has {} components separated by '$'",
                            parts.len(),
                            param.components.len()
                        )));
                    }
                    let mut components = Vec::with_capacity(parts.len());
                    for (i, (part, component)) in parts.iter().zip(&param.components).enumerate() {
                        let Some(own) = registry
                            .params(resource_type)
                            .iter()
                            .find(|p| p.url == component.definition)
                        else {
                            return Err(unsupported(format!(
                                "the component {} of '{code}' is not a search parameter of {resource_type} on this server",
                                component.definition
                            )));
                        };
                        let allowed = if i == 0 {
                            matches!(own.kind, ParamType::Token | ParamType::Reference)
                        } else {
                            !matches!(own.kind, ParamType::Composite | ParamType::Special)
                        };
                        if !allowed {
                            return Err(unsupported(format!(
                                "composite parameters whose component {} is a {} parameter are not supported ('{code}')",
                                i + 1,
                                own.kind.code()
                            )));
                        }
                        let predicate = self
                            .clause(ctx, registry, resource_type, &own.code, None, part)?
                            .filter(|c| c.len() == 1)
                            .and_then(|mut c| c.pop())
                            .ok_or_else(|| {
                                Error::invalid(format!(
                                    "'{part}' is not a value of the component '{}' of '{code}'",
                                    own.code
                                ))
                            })?;
                        components.push(predicate);
                    }
                    alternatives.push(Predicate::Composite {
                        param: code.clone(),
                        components,
                    });
                }
            }
            ParamType::Special => {
                return Err(unsupported(format!(
                    "{} parameters ('{code}') are not supported yet",
                    param.kind.code()
                )))
            }
        }
        Ok(Some(alternatives))
    }

    /// Parses a system search (`GET [base]?_type=Patient,Observation&...`): the parameters are
    /// read against each named type. Without `_type`, only type-independent parameters
    /// (`_id`, `_lastUpdated`) are accepted, over every type.
    ///
    /// # Errors
    /// As [`Engine::parse_search`]; an unknown type in `_type`; `_sort` by a parameter that
    /// some type lacks or types differently.
    pub fn parse_system_search(
        &self,
        ctx: &Context,
        params: &[(String, String)],

        max_count: usize,
        default_count: usize,
    ) -> Result<ParsedSearch> {
        let types: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "_type")
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_string()))
            .filter(|t| !t.is_empty())
            .collect();
        for t in &types {
            self.check_type(t).map_err(|_| {
                Error::invalid(format!("_type names '{t}', which is not a resource type"))
            })?;
        }
        let rest: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "_type")
            .cloned()
            .collect();
        let type_independent =
            |p: &Predicate| matches!(p, Predicate::Id(_) | Predicate::LastUpdated { .. });
        let Some(first) = types.first() else {
            // Every type: parse against one, then insist nothing depended on it.
            let mut parsed =
                self.parse_search(ctx, "Basic", &rest, true, max_count, default_count)?;
            if !parsed.query.clauses.iter().flatten().all(type_independent)
                || !parsed.query.sort.is_empty()
            {
                return Err(Error::invalid(
                    "a system search without _type accepts only _id and _lastUpdated; name the types with _type",
                ));
            }
            parsed.query.all_types = true;
            return Ok(parsed);
        };
        // Every parameter must mean something for every type named (one ignored for a type
        // would return all of that type), so parameters are read strictly whatever the
        // `Prefer: handling` asked.
        let mut parsed = self.parse_search(ctx, first, &rest, true, max_count, default_count)?;
        let mut per_type = vec![(first.clone(), parsed.query.clauses.clone())];
        for t in &types[1..] {
            let other = self.parse_search(ctx, t, &rest, true, max_count, default_count)?;
            // `_sort` keys are read against every type (an unknown one was refused there);
            // a parameter sorts the same way only if it has the same type everywhere.
            if other.query.sort != parsed.query.sort {
                return Err(Error::invalid(format!(
                    "_sort names a parameter whose type differs between {first} and {t}"
                )));
            }
            per_type.push((t.clone(), other.query.clauses));
        }
        parsed.query.types = per_type;
        parsed.applied.push(("_type".into(), types.join(",")));
        Ok(parsed)
    }

    /// Runs a parsed search: one page, and the total unless `_total=none`. `known_total` is
    /// the total a paging link carries from its first page (the snapshot fixes it).
    ///
    /// # Errors
    /// A store fault.
    pub fn run_search(
        &self,
        parsed: &ParsedSearch,
        snapshot: Option<TxNumber>,
        after: Option<Position>,
        known_total: Option<u64>,
    ) -> Result<SearchOutcome> {
        let snapshot = match snapshot {
            Some(s) => s,
            None => self.store().last_tx()?,
        };
        let mut query = parsed.query.clone();
        query.snapshot = Some(snapshot);
        let first_page = after.is_none();
        query.after = after;
        if parsed.count_only {
            return Ok(SearchOutcome {
                versions: Vec::new(),
                total: Some(self.store().search_count(&query)?),
                snapshot,
                next: None,
                included: Vec::new(),
                truncated: None,
            });
        }
        let page = self.store().search(&query)?;
        let total = match parsed.total {
            TotalMode::None => None,
            _ if known_total.is_some() => known_total,
            TotalMode::Auto if !first_page => None,
            // A first page that holds every match is its own count.
            _ if first_page && page.next.is_none() && query.limit > 0 => {
                Some(page.versions.len() as u64)
            }
            TotalMode::Auto => None,
            TotalMode::Accurate | TotalMode::Estimate => Some(self.store().search_count(&query)?),
        };
        let (included, truncated) = if parsed.includes.is_empty() {
            (Vec::new(), None)
        } else {
            self.included(&parsed.includes, &page.versions, &query)?
        };
        Ok(SearchOutcome {
            versions: page.versions,
            total,
            snapshot,
            next: page.next,
            included,
            truncated,
        })
    }
}

/// The index keys a reference search value can match.
fn reference_keys(
    ctx: &Context,
    value: &str,
    targets: &[String],
    all_types: &[String],
) -> Vec<String> {
    let base = format!("{}/", ctx.base_url);
    if let Some(local) = value.strip_prefix(&base) {
        return vec![local.to_string()];
    }
    if value.starts_with("http://") || value.starts_with("https://") || value.starts_with("urn:") {
        return vec![format!("U:{value}")];
    }
    if value.contains('/') {
        return vec![value.to_string()];
    }
    let types: &[String] = if targets.is_empty() {
        all_types
    } else {
        targets
    };
    types.iter().map(|t| format!("{t}/{value}")).collect()
}

/// The clause that restricts a search to a compartment (`Patient/123/Observation`): any of
/// the parameters the R4 CompartmentDefinition lists for the type references the compartment's
/// owner. `None` when the type is not part of that compartment.
pub fn compartment_clause(
    compartment: &str,
    id: &str,
    resource_type: &str,
) -> Option<Vec<Predicate>> {
    let definition = flint_fhir::definitions::compartment_definitions()
        .iter()
        .find(|d| d.get("code").and_then(serde_json::Value::as_str) == Some(compartment))?;
    let entry = definition
        .get("resource")?
        .as_array()?
        .iter()
        .find(|r| r.get("code").and_then(serde_json::Value::as_str) == Some(resource_type))?;
    let params: Vec<&str> = entry
        .get("param")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let key = format!("{compartment}/{id}");
    // The compartment's own resource is in it too.
    let own = (resource_type == compartment).then(|| Predicate::Id(id.to_string()));
    let clause: Vec<Predicate> = params
        .into_iter()
        .map(|p| {
            if p == "{def}" {
                Predicate::Id(id.to_string())
            } else {
                Predicate::Reference {
                    param: p.to_string(),
                    keys: vec![key.clone()],
                }
            }
        })
        .chain(own)
        .collect();
    (!clause.is_empty()).then_some(clause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_parameters_are_recognised_from_their_paths() {
        let model = flint_fhir::model::r4();
        assert_eq!(
            identifier_typed(model, "Patient", "Patient.identifier"),
            Some(true)
        );
        assert_eq!(
            identifier_typed(model, "Patient", "Patient.gender"),
            Some(false)
        );
        assert_eq!(
            identifier_typed(model, "Patient", "Patient.generalPractitioner"),
            Some(false)
        );
        assert_eq!(
            identifier_typed(
                model,
                "Encounter",
                "Encounter.identifier | Encounter.status"
            ),
            Some(true)
        );
        assert_eq!(
            identifier_typed(model, "Patient", "Patient.name.where(use = 'official')"),
            None
        );
    }

    #[test]
    fn values_split_on_unescaped_commas_and_bars() {
        assert_eq!(split_or("a,b\\,c"), vec!["a", "b,c"]);
        assert_eq!(
            split_bar("http://loinc.org|1234-5"),
            (Some("http://loinc.org".into()), "1234-5".into())
        );
        assert_eq!(split_bar("|x"), (Some(String::new()), "x".into()));
        assert_eq!(split_bar("a\\|b"), (None, "a|b".into()));
        assert_eq!(split_raw("a$b\\$c,d", ','), vec!["a$b\\$c", "d"]);
        assert_eq!(split_raw("a$b\\$c", '$'), vec!["a", "b\\$c"]);
        assert_eq!(split_raw("a\\\\$b", '$'), vec!["a\\\\", "b"]);
    }

    #[test]
    fn decimal_precision_ranges() {
        assert_eq!(decimal_range("100"), Some((100.0, 99.5, 100.5)));
        let (_, low, high) = decimal_range("100.00").unwrap();
        assert!((low - 99.995).abs() < 1e-9 && (high - 100.005).abs() < 1e-9);
        assert!(decimal_range("abc").is_none());
        assert_eq!(prefix_and_rest("ge2020").0, Prefix::Ge);
        assert_eq!(prefix_and_rest("2020").0, Prefix::Eq);
    }
}

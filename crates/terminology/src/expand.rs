//! `ValueSet/$expand`: a value set's codes enumerated, narrowed by a text filter and
//! `activeOnly`, displayed in a language, paged by `offset` and `count`, and written out as
//! the expanded `ValueSet` (flat: no nested `contains`).
//!
//! The text filter: the filter is split on whitespace into terms, and a code matches when
//! every term occurs, ignoring case, in its code or its display (the display of the code
//! system or value set, or the one chosen for `displayLanguage`).

use flint_fhir::{Error, IssueType, Result};
use serde_json::{json, Map, Value};

use crate::coding::Definition;
use std::collections::HashMap;

use crate::compose::{Evaluator, Mode, Versions};
use crate::hierarchy::Designation;
use crate::json::split_canonical;
use crate::source::Resource;
use crate::{Source, Terminology};

/// One code of an expansion (`ValueSet.expansion.contains`).
#[derive(Clone, Debug, PartialEq)]
pub struct Contains {
    pub system: String,
    /// The code system version, where known.
    pub version: Option<String>,
    pub code: String,
    pub display: Option<String>,
    /// The language of `display` where known (the code system's `language`).
    pub display_language: Option<String>,
    /// The concept's designations; in the output only with `includeDesignations`.
    pub designations: Vec<Designation>,
    pub inactive: bool,
    pub abstract_: bool,
}

impl Contains {
    /// The entry as `expansion.contains` JSON, elements in their R4 order.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("system".into(), Value::String(self.system.clone()));
        if self.abstract_ {
            out.insert("abstract".into(), Value::Bool(true));
        }
        if self.inactive {
            out.insert("inactive".into(), Value::Bool(true));
        }
        if let Some(v) = &self.version {
            out.insert("version".into(), Value::String(v.clone()));
        }
        out.insert("code".into(), Value::String(self.code.clone()));
        if let Some(d) = &self.display {
            out.insert("display".into(), Value::String(d.clone()));
        }
        if !self.designations.is_empty() {
            out.insert(
                "designation".into(),
                Value::Array(self.designations.iter().map(Designation::to_json).collect()),
            );
        }
        Value::Object(out)
    }

    /// The display in `language`: the display when it is in that language (or its language is
    /// not known and no designation is), else a designation in exactly that language, else one
    /// in the same base language (`de` for `de-CH`, and the reverse).
    pub(crate) fn display_in(&self, language: &str) -> Option<&str> {
        let language = language.trim();
        if self
            .display_language
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(language))
        {
            return self.display.as_deref();
        }
        let base = |l: &str| l.split('-').next().unwrap_or(l).to_ascii_lowercase();
        let exact = self.designations.iter().find(|d| {
            d.language
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(language))
        });
        let near = || {
            self.designations.iter().find(|d| {
                d.language
                    .as_deref()
                    .is_some_and(|l| base(l) == base(language))
            })
        };
        if let Some(d) = exact {
            return Some(&d.value);
        }
        if self
            .display_language
            .as_deref()
            .is_some_and(|l| base(l) == base(language))
        {
            return self.display.as_deref();
        }
        near().map(|d| d.value.as_str()).or(self.display.as_deref())
    }
}

/// The inputs of `$expand`.
#[derive(Clone, Debug)]
pub struct ExpandRequest {
    /// `url` (+ `valueSetVersion`), or the `valueSet` given, or the instance invoked on.
    pub value_set: Definition,
    /// `filter`: see the module documentation for the rule.
    pub filter: Option<String>,
    /// `offset`: codes to skip (0 when absent).
    pub offset: usize,
    /// `count`: the most codes to return. Without it, an expansion larger than
    /// [`crate::Limits::max_expansion`] is refused as too costly.
    pub count: Option<usize>,
    /// `displayLanguage`.
    pub display_language: Option<String>,
    /// `activeOnly`.
    pub active_only: bool,
    /// `includeDesignations`.
    pub include_designations: bool,
    /// `includeDefinition`: keep `compose` in the output.
    pub include_definition: bool,
    /// `excludeNotForUI`: leave out abstract (not selectable) codes.
    pub exclude_not_for_ui: bool,
    /// `exclude-system`: code systems (`url` or `url|version`) whose codes are left out.
    pub exclude_systems: Vec<String>,
    /// `system-version`: `url|version` of a code system, for includes that name no version.
    pub system_versions: Vec<String>,
    /// `force-system-version`: `url|version`, whatever the includes name.
    pub force_system_versions: Vec<String>,
    /// `check-system-version`: `url|version`; an include naming another version is an error.
    pub check_system_versions: Vec<String>,
}

impl ExpandRequest {
    /// An expansion of the whole value set, with no options.
    pub fn new(value_set: Definition) -> ExpandRequest {
        ExpandRequest {
            value_set,
            filter: None,
            offset: 0,
            count: None,
            display_language: None,
            active_only: false,
            include_designations: false,
            include_definition: false,
            exclude_not_for_ui: false,
            exclude_systems: Vec::new(),
            system_versions: Vec::new(),
            force_system_versions: Vec::new(),
            check_system_versions: Vec::new(),
        }
    }

    /// The version rules, each `url|version`.
    fn versions(&self) -> Result<Versions> {
        let read = |list: &[String], name: &str| -> Result<HashMap<String, String>> {
            list.iter()
                .map(|canonical| match split_canonical(canonical) {
                    (url, Some(version)) => Ok((url.to_string(), version.to_string())),
                    _ => Err(Error::invalid(format!(
                        "{name} takes a code system URL and a version (url|version), not '{canonical}'"
                    ))),
                })
                .collect()
        };
        Ok(Versions {
            default: read(&self.system_versions, "system-version")?,
            force: read(&self.force_system_versions, "force-system-version")?,
            check: read(&self.check_system_versions, "check-system-version")?,
        })
    }

    /// The `expansion.parameter` entries echoing the options that shaped the expansion.
    fn echo(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(f) = &self.filter {
            out.push(json!({"name": "filter", "valueString": f}));
        }
        if let Some(c) = self.count {
            out.push(json!({"name": "count", "valueInteger": c}));
        }
        if self.offset > 0 || self.count.is_some() {
            out.push(json!({"name": "offset", "valueInteger": self.offset}));
        }
        if let Some(l) = &self.display_language {
            out.push(json!({"name": "displayLanguage", "valueCode": l}));
        }
        if self.active_only {
            out.push(json!({"name": "activeOnly", "valueBoolean": true}));
        }
        if self.include_designations {
            out.push(json!({"name": "includeDesignations", "valueBoolean": true}));
        }
        if self.include_definition {
            out.push(json!({"name": "includeDefinition", "valueBoolean": true}));
        }
        if self.exclude_not_for_ui {
            out.push(json!({"name": "excludeNotForUI", "valueBoolean": true}));
        }
        for (name, list) in [
            ("exclude-system", &self.exclude_systems),
            ("system-version", &self.system_versions),
            ("force-system-version", &self.force_system_versions),
            ("check-system-version", &self.check_system_versions),
        ] {
            for canonical in list {
                out.push(json!({"name": name, "valueUri": canonical}));
            }
        }
        out
    }
}

/// The result of `$expand`: one page of the codes, with the size of the whole.
#[derive(Clone, Debug)]
pub struct Expansion {
    /// The value set expanded, as defined.
    pub value_set: Resource,
    /// How many codes the whole expansion has (after the filter), whatever the page.
    pub total: usize,
    /// Where this page starts.
    pub offset: usize,
    /// The codes of this page.
    pub contains: Vec<Contains>,
    /// `expansion.parameter`: the options echoed, and a `version` (`system|version`) for each
    /// code system version the expansion read.
    pub parameters: Vec<Value>,
    /// Whether the output keeps the value set's `compose`.
    pub include_definition: bool,
}

impl Expansion {
    /// The expanded `ValueSet`: the definition's metadata (without `text`, `meta`, and
    /// without `compose` and `contained` unless `includeDefinition`), and an `expansion` with
    /// this identifier and timestamp (the caller's: this crate has no clock), `total`,
    /// `offset`, `parameter` and a flat `contains`.
    pub fn to_value_set(&self, identifier: &str, timestamp: &str) -> Value {
        let mut vs = match &*self.value_set {
            Value::Object(o) => o.clone(),
            _ => Map::new(),
        };
        vs.insert("resourceType".into(), Value::String("ValueSet".into()));
        for key in ["text", "meta", "expansion"] {
            vs.remove(key);
        }
        if !self.include_definition {
            vs.remove("compose");
            vs.remove("contained");
        }
        let mut expansion = Map::new();
        expansion.insert("identifier".into(), Value::String(identifier.into()));
        expansion.insert("timestamp".into(), Value::String(timestamp.into()));
        expansion.insert("total".into(), json!(self.total));
        expansion.insert("offset".into(), json!(self.offset));
        if !self.parameters.is_empty() {
            expansion.insert("parameter".into(), Value::Array(self.parameters.clone()));
        }
        if !self.contains.is_empty() {
            expansion.insert(
                "contains".into(),
                Value::Array(self.contains.iter().map(Contains::to_json).collect()),
            );
        }
        vs.insert("expansion".into(), Value::Object(expansion));
        Value::Object(vs)
    }
}

/// Whether an entry matches every (lower-cased) term of a text filter.
fn matches_filter(entry: &Contains, shown: Option<&str>, terms: &[String]) -> bool {
    let code = entry.code.to_lowercase();
    let display = entry.display.as_deref().map(str::to_lowercase);
    let shown = shown.map(str::to_lowercase);
    terms.iter().all(|t| {
        code.contains(t.as_str())
            || display.as_deref().is_some_and(|d| d.contains(t.as_str()))
            || shown.as_deref().is_some_and(|d| d.contains(t.as_str()))
    })
}

impl<S: Source + ?Sized> Terminology<'_, S> {
    /// `ValueSet/$expand`.
    ///
    /// # Errors
    /// Not found for an unknown value set; not supported when it needs a code system not
    /// held in full (a whole code system, filters) or something else not supported; too
    /// costly over the limits (without `count`, more than `max_expansion` codes); invalid
    /// for a malformed or cyclic value set.
    pub fn expand(&self, request: &ExpandRequest) -> Result<Expansion> {
        let vs = self.value_set_of(&request.value_set)?;
        let mut ev = Evaluator::new(self, Mode::Expand, &vs)?;
        ev.versions = request.versions()?;
        let set = ev.value_set(&vs)?;
        let excluded: Vec<(&str, Option<&str>)> = request
            .exclude_systems
            .iter()
            .map(|c| split_canonical(c))
            .collect();
        let terms: Vec<String> = request
            .filter
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let language = request
            .display_language
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let mut entries = set.entries;
        entries.retain_mut(|e| {
            if (request.active_only && e.inactive) || (request.exclude_not_for_ui && e.abstract_) {
                return false;
            }
            if excluded.iter().any(|(system, version)| {
                *system == e.system && version.is_none_or(|v| e.version.as_deref() == Some(v))
            }) {
                return false;
            }
            let shown = language.and_then(|l| e.display_in(l)).map(str::to_string);
            if !terms.is_empty() && !matches_filter(e, shown.as_deref(), &terms) {
                return false;
            }
            if let (Some(l), Some(shown)) = (language, shown) {
                if e.display.as_deref() != Some(shown.as_str()) {
                    e.display = Some(shown);
                    e.display_language = Some(l.to_string());
                }
            }
            true
        });
        let total = entries.len();
        let max = self.limits().max_expansion;
        if request.count.is_none() && total > max {
            return Err(Error::new(
                IssueType::TooCostly,
                format!(
                    "the expansion of '{}' has {total} codes, more than the {max} returned at once; page through it with count and offset, or narrow it with filter",
                    value_set_name(&vs)
                ),
            ));
        }
        let start = request.offset.min(total);
        let end = request
            .count
            .map_or(total, |count| start.saturating_add(count).min(total));
        entries.truncate(end);
        let mut contains = entries.split_off(start);
        if !request.include_designations {
            for e in &mut contains {
                e.designations.clear();
            }
        }
        let mut parameters = request.echo();
        for (system, version) in &ev.used {
            if let Some(v) = version {
                parameters.push(json!({"name": "version", "valueUri": format!("{system}|{v}")}));
            }
        }
        Ok(Expansion {
            value_set: vs,
            total,
            offset: request.offset,
            contains,
            parameters,
            include_definition: request.include_definition,
        })
    }
}

/// The value set's URL for messages, else a description.
pub(crate) fn value_set_name(vs: &Value) -> String {
    vs.get("url")
        .and_then(Value::as_str)
        .map_or_else(|| "the value set given".to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, Limits, Resources};

    fn codes(e: &Expansion) -> Vec<&str> {
        e.contains.iter().map(|c| c.code.as_str()).collect()
    }

    fn expand_url(t: &Terminology<'_, impl Source>, url: &str) -> Result<Expansion> {
        t.expand(&ExpandRequest::new(Definition::url(url)))
    }

    fn source() -> Resources {
        Resources::new([
            json!({
                "resourceType": "CodeSystem",
                "url": "http://example.org/colours",
                "version": "2",
                "language": "en",
                "content": "complete",
                "concept": [
                    {"code": "warm", "display": "Warm colours", "property": [{"code": "notSelectable", "valueBoolean": true}],
                     "concept": [
                        {"code": "red", "display": "Red", "designation": [{"language": "de", "value": "Rot"}, {"language": "fr-CA", "value": "Rouge"}]},
                        {"code": "orange", "display": "Orange"}
                    ]},
                    {"code": "blue", "display": "Blue", "designation": [{"language": "de", "value": "Blau"}]},
                    {"code": "mauve", "display": "Mauve", "property": [{"code": "status", "valueCode": "retired"}]}
                ]
            }),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/colours", "version": "1",
                   "name": "Colours", "status": "active", "text": {"status": "generated", "div": "<div/>"},
                   "compose": {"include": [{"system": "http://example.org/colours"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/warm",
                   "compose": {"include": [{"system": "http://example.org/colours",
                       "filter": [{"property": "concept", "op": "descendent-of", "value": "warm"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/listed",
            "compose": {"include": [
                {"system": "http://example.org/colours", "concept": [{"code": "blue", "display": "Sky"}, {"code": "red"}]},
                {"system": "http://snomed.info/sct", "concept": [{"code": "123", "display": "Something"}]}
            ]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/warm-listed",
                   "compose": {"include": [{"valueSet": ["http://example.org/vs/warm", "http://example.org/vs/listed"]}],
                               "exclude": [{"system": "http://snomed.info/sct"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/not-warm",
                   "compose": {"include": [{"valueSet": ["http://example.org/vs/colours"]}],
                               "exclude": [{"valueSet": ["http://example.org/vs/warm"]}, {"system": "http://example.org/colours", "concept": [{"code": "warm"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/all-snomed",
                   "compose": {"include": [{"system": "http://snomed.info/sct"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/stored",
            "expansion": {"timestamp": "2020-01-01", "contains": [
                {"system": "http://snomed.info/sct", "code": "1", "display": "One", "contains": [
                    {"system": "http://snomed.info/sct", "code": "2", "display": "Two", "inactive": true}]},
                {"display": "a header without a code"}
            ]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/stored-part",
                   "expansion": {"timestamp": "2020-01-01", "total": 10, "contains": [
                       {"system": "http://snomed.info/sct", "code": "1"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/snomed-with-expansion",
                   "compose": {"include": [{"system": "http://snomed.info/sct", "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}]},
                   "expansion": {"timestamp": "2020-01-01", "contains": [{"system": "http://snomed.info/sct", "code": "1"}]}}),
        ])
    }

    #[test]
    fn expands_whole_systems_filters_and_listed_codes() {
        let s = source();
        let t = Terminology::new(&s);
        let all = expand_url(&t, "http://example.org/vs/colours").unwrap();
        assert_eq!(codes(&all), ["warm", "red", "orange", "blue", "mauve"]);
        assert_eq!(all.total, 5);
        assert!(all.contains[0].abstract_);
        assert!(all.contains[4].inactive);
        assert_eq!(all.contains[1].version.as_deref(), Some("2"));
        let warm = expand_url(&t, "http://example.org/vs/warm").unwrap();
        assert_eq!(codes(&warm), ["red", "orange"]);
        let listed = expand_url(&t, "http://example.org/vs/listed").unwrap();
        assert_eq!(codes(&listed), ["blue", "red", "123"]);
        assert_eq!(listed.contains[0].display.as_deref(), Some("Sky"));
        assert_eq!(listed.contains[1].display.as_deref(), Some("Red"));
        assert_eq!(listed.contains[2].display.as_deref(), Some("Something"));
        let both = expand_url(&t, "http://example.org/vs/warm-listed").unwrap();
        assert_eq!(codes(&both), ["red"]);
        let rest = expand_url(&t, "http://example.org/vs/not-warm").unwrap();
        assert_eq!(codes(&rest), ["blue", "mauve"]);
        // Intersections and excludes with all of a code system not held need none of it.
        let vs = json!({"resourceType": "ValueSet", "compose": {
            "include": [{"system": "http://snomed.info/sct", "concept": [{"code": "123"}, {"code": "456"}],
                         "valueSet": ["http://example.org/vs/all-snomed"]},
                        {"valueSet": ["http://example.org/vs/listed"]}],
            "exclude": [{"valueSet": ["http://example.org/vs/all-snomed"]}]}});
        let e = t
            .expand(&ExpandRequest::new(Definition::resource(vs)))
            .unwrap();
        assert_eq!(codes(&e), ["blue", "red"]);
    }

    #[test]
    fn stored_expansions_serve_when_compose_cannot() {
        let s = source();
        let t = Terminology::new(&s);
        let stored = expand_url(&t, "http://example.org/vs/stored").unwrap();
        assert_eq!(codes(&stored), ["1", "2"]);
        assert!(stored.contains[1].inactive);
        let fallback = expand_url(&t, "http://example.org/vs/snomed-with-expansion").unwrap();
        assert_eq!(codes(&fallback), ["1"]);
        let part = expand_url(&t, "http://example.org/vs/stored-part").unwrap_err();
        assert_eq!(part.code(), IssueType::NotSupported);
        let snomed = expand_url(&t, "http://example.org/vs/all-snomed").unwrap_err();
        assert_eq!(snomed.code(), IssueType::NotSupported);
        assert!(snomed.to_string().contains("snomed"), "{snomed}");
    }

    #[test]
    fn filter_paging_language_and_active_only() {
        let s = source();
        let t = Terminology::new(&s);
        let mut r = ExpandRequest::new(Definition::url("http://example.org/vs/colours|1"));
        r.filter = Some("  WARM col ".into());
        assert_eq!(codes(&t.expand(&r).unwrap()), ["warm"]);
        r.filter = Some("re".into());
        assert_eq!(codes(&t.expand(&r).unwrap()), ["red"]);
        r.filter = Some("rot".into());
        r.display_language = Some("de-AT".into());
        let de = t.expand(&r).unwrap();
        assert_eq!(codes(&de), ["red"]);
        assert_eq!(de.contains[0].display.as_deref(), Some("Rot"));
        r.filter = None;
        r.display_language = Some("fr".into());
        r.include_designations = true;
        let fr = t.expand(&r).unwrap();
        assert_eq!(fr.contains[1].display.as_deref(), Some("Rouge"));
        assert_eq!(fr.contains[2].display.as_deref(), Some("Orange"));
        assert_eq!(fr.contains[1].designations.len(), 2);
        r.display_language = Some("en-GB".into());
        assert_eq!(
            t.expand(&r).unwrap().contains[1].display.as_deref(),
            Some("Red")
        );
        r.display_language = None;
        r.include_designations = false;
        r.active_only = true;
        r.offset = 1;
        r.count = Some(2);
        let page = t.expand(&r).unwrap();
        assert_eq!(page.total, 4);
        assert_eq!(codes(&page), ["red", "orange"]);
        assert!(page.contains.iter().all(|c| c.designations.is_empty()));
        r.offset = 10;
        assert!(t.expand(&r).unwrap().contains.is_empty());
        r.count = Some(0);
        r.offset = 0;
        let size = t.expand(&r).unwrap();
        assert_eq!((size.total, size.contains.len()), (4, 0));
    }

    #[test]
    fn system_options() {
        let s = source();
        let t = Terminology::new(&s);
        let mut r = ExpandRequest::new(Definition::url("http://example.org/vs/listed"));
        r.exclude_systems = vec!["http://snomed.info/sct".into()];
        assert_eq!(codes(&t.expand(&r).unwrap()), ["blue", "red"]);
        r.exclude_systems = vec!["http://example.org/colours|1".into()];
        assert_eq!(
            codes(&t.expand(&r).unwrap()).len(),
            3,
            "another version is not excluded"
        );
        let mut ui = ExpandRequest::new(Definition::url("http://example.org/vs/colours"));
        ui.exclude_not_for_ui = true;
        assert_eq!(
            codes(&t.expand(&ui).unwrap()),
            ["red", "orange", "blue", "mauve"]
        );
        let mut pinned = ExpandRequest::new(Definition::url("http://example.org/vs/colours"));
        pinned.system_versions = vec!["http://example.org/colours|2".into()];
        assert_eq!(t.expand(&pinned).unwrap().total, 5);
        pinned.force_system_versions = vec!["http://example.org/colours|3".into()];
        assert_eq!(
            t.expand(&pinned).unwrap_err().code(),
            IssueType::NotSupported
        );
        pinned.force_system_versions = vec!["http://example.org/colours".into()];
        assert_eq!(t.expand(&pinned).unwrap_err().status(), 400);
        let vs = json!({"resourceType": "ValueSet", "url": "http://example.org/vs/v2",
            "compose": {"include": [{"system": "http://example.org/colours", "version": "2"}]}});
        let mut checked = ExpandRequest::new(Definition::resource(vs));
        checked.check_system_versions = vec!["http://example.org/colours|2".into()];
        assert_eq!(t.expand(&checked).unwrap().total, 5);
        checked.check_system_versions = vec!["http://example.org/colours|1".into()];
        assert_eq!(t.expand(&checked).unwrap_err().status(), 400);
    }

    #[test]
    fn output_value_set() {
        let s = source();
        let t = Terminology::new(&s);
        let mut r = ExpandRequest::new(Definition::url("http://example.org/vs/colours"));
        r.count = Some(1);
        r.filter = Some("r".into());
        let out = t
            .expand(&r)
            .unwrap()
            .to_value_set("urn:uuid:1", "2024-01-01T00:00:00Z");
        assert_eq!(out["resourceType"], "ValueSet");
        assert_eq!(out["name"], "Colours");
        assert!(out.get("text").is_none() && out.get("compose").is_none());
        let e = &out["expansion"];
        assert_eq!(e["identifier"], "urn:uuid:1");
        assert_eq!(e["timestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(e["total"], 3);
        assert_eq!(e["offset"], 0);
        assert_eq!(
            e["parameter"],
            json!([
                {"name": "filter", "valueString": "r"},
                {"name": "count", "valueInteger": 1},
                {"name": "offset", "valueInteger": 0},
                {"name": "version", "valueUri": "http://example.org/colours|2"}
            ])
        );
        assert_eq!(
            e["contains"],
            json!([{"system": "http://example.org/colours", "abstract": true, "version": "2", "code": "warm", "display": "Warm colours"}])
        );
        r.include_definition = true;
        let with = t.expand(&r).unwrap().to_value_set("i", "t");
        assert!(with.get("compose").is_some());
    }

    #[test]
    fn too_costly_without_count() {
        let s = source();
        let t = Terminology::new(&s).with_limits(Limits {
            max_expansion: 3,
            ..Limits::default()
        });
        let err = expand_url(&t, "http://example.org/vs/colours").unwrap_err();
        assert_eq!(err.code(), IssueType::TooCostly);
        assert_eq!(err.status(), 422);
        let mut r = ExpandRequest::new(Definition::url("http://example.org/vs/colours"));
        r.count = Some(3);
        assert_eq!(t.expand(&r).unwrap().total, 5);
        let tiny = Terminology::new(&s).with_limits(Limits {
            max_codes: 2,
            ..Limits::default()
        });
        assert_eq!(
            tiny.expand(&r).unwrap_err().code(),
            IssueType::TooCostly,
            "past max_codes even when paged"
        );
    }

    #[test]
    fn bad_inputs() {
        let s = source();
        let t = Terminology::new(&s);
        assert_eq!(
            expand_url(&t, "http://example.org/nope")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            expand_url(&t, "http://example.org/vs/colours|9")
                .unwrap_err()
                .status(),
            404
        );
        let given = ExpandRequest::new(Definition::resource(json!({"resourceType": "Patient"})));
        assert_eq!(t.expand(&given).unwrap_err().status(), 400);
        let odd = ExpandRequest::new(Definition::resource(json!({"resourceType": "ValueSet",
            "compose": {"include": [{"system": "http://example.org/colours",
                "filter": [{"property": "concept", "op": "is-a"}]}]}})));
        assert_eq!(t.expand(&odd).unwrap_err().status(), 400);
    }

    #[test]
    fn given_value_sets_with_contained_code_systems() {
        let t = Terminology::new(&Core);
        let vs = json!({"resourceType": "ValueSet", "contained": [{"resourceType": "CodeSystem", "url": "http://example.org/inner",
            "content": "complete", "concept": [{"code": "x", "display": "X"}, {"code": "y"}]}],
            "compose": {"include": [{"system": "http://example.org/inner"}]}});
        let e = t
            .expand(&ExpandRequest::new(Definition::resource(vs)))
            .unwrap();
        assert_eq!(codes(&e), ["x", "y"]);
        let core = expand_url(&t, "http://hl7.org/fhir/ValueSet/example-hierarchical").unwrap();
        assert!(core.total > 10, "{}", core.total);
    }

    #[test]
    fn core_value_sets() {
        let t = Terminology::new(&Core);
        let gender = expand_url(&t, "http://hl7.org/fhir/ValueSet/administrative-gender").unwrap();
        assert_eq!(codes(&gender), ["male", "female", "other", "unknown"]);
        assert_eq!(gender.contains[0].display.as_deref(), Some("Male"));
        assert_eq!(gender.contains[0].version.as_deref(), Some("4.0.1"));
        let status = expand_url(&t, "http://hl7.org/fhir/ValueSet/observation-status").unwrap();
        assert_eq!(
            codes(&status),
            [
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown"
            ]
        );
        // Nested includes: the value set of v2 0136 (in code system order) and a listed
        // data-absent-reason code.
        let yes_no = expand_url(&t, "http://hl7.org/fhir/ValueSet/yesnodontknow").unwrap();
        assert_eq!(codes(&yes_no), ["N", "Y", "asked-unknown"]);
        assert_eq!(yes_no.contains[2].display.as_deref(), Some("Don't know"));
        // Filters and excludes over v3 hierarchies.
        let act_encounter = expand_url(
            &t,
            "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode",
        )
        .unwrap();
        assert!(act_encounter.total > 5);
        assert!(
            act_encounter
                .contains
                .iter()
                .all(|c| !c.code.starts_with('_')),
            "the abstract root is excluded"
        );
        // The whole of SNOMED CT is not held here.
        let snomed = expand_url(&t, "http://hl7.org/fhir/ValueSet/clinical-findings").unwrap_err();
        assert_eq!(snomed.code(), IssueType::NotSupported);
    }

    #[test]
    fn every_core_value_set_expands_or_is_refused_cleanly() {
        let t = Terminology::new(&Core);
        let mut expanded = 0;
        for vs in flint_fhir::definitions::terminology() {
            if vs["resourceType"] != "ValueSet" {
                continue;
            }
            let r = ExpandRequest::new(Definition::resource(Resource::Core(vs)));
            match t.expand(&r) {
                Ok(e) => {
                    assert_eq!(e.total, e.contains.len());
                    expanded += 1;
                }
                Err(e) => assert!(
                    matches!(e.code(), IssueType::NotSupported | IssueType::TooCostly),
                    "{}: {e}",
                    vs["url"]
                ),
            }
        }
        assert!(expanded > 1000, "{expanded}");
    }
}

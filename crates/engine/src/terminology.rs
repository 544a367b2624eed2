//! Code systems and value sets for the token modifiers: subsumption (`:above`, `:below`) from
//! a CodeSystem's concept hierarchy, and value set expansion (`:in`, `:not-in`) from a
//! ValueSet's `compose` (concepts, whole code systems, filters, other value sets, excludes).
//!
//! Both read the CodeSystem and ValueSet resources stored in the server first, then the core
//! ones embedded in the definitions. Code systems whose content is not in such a resource
//! (SNOMED CT, LOINC, ...) cannot be reasoned about here: those requests are refused as not
//! supported rather than answered wrongly.

use std::collections::{HashMap, HashSet, VecDeque};

use flint_fhir::{Error, Result};
use flint_store::search::{Order, Predicate, SearchQuery, UriMatch};
use flint_store::Store;
use serde_json::Value;

use crate::Engine;

fn unsupported(what: String) -> Error {
    Error::not_supported(what)
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn array<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// A code system's concepts with their subsumption links and properties.
#[derive(Debug, Default)]
pub(crate) struct Hierarchy {
    pub system: String,
    /// Every code, in the order the code system lists them.
    pub codes: Vec<String>,
    parents: HashMap<String, Vec<String>>,
    children: HashMap<String, Vec<String>>,
    /// Each concept's properties as (property code, value as text).
    properties: HashMap<String, Vec<(String, String)>>,
}

impl Hierarchy {
    /// Reads the hierarchy of a CodeSystem resource: nested concepts, and the `parent`,
    /// `child` and `subsumedBy` properties. Refused when the resource does not hold the whole
    /// code system or its hierarchy does not mean subsumption.
    pub fn of(cs: &Value) -> Result<Hierarchy> {
        let system = str_of(cs, "url").unwrap_or("").to_string();
        match str_of(cs, "content") {
            Some("complete") => {}
            other => {
                return Err(unsupported(format!(
                    "the code system '{system}' is not held here in full (content {}); its concepts cannot be reasoned about",
                    other.unwrap_or("missing")
                )))
            }
        }
        match str_of(cs, "hierarchyMeaning") {
            None | Some("is-a") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "the hierarchy of the code system '{system}' means '{other}', not subsumption"
                )))
            }
        }
        let mut h = Hierarchy {
            system,
            ..Default::default()
        };
        let mut stack: Vec<(&Value, Option<String>)> = array(cs, "concept")
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|c| (c, None))
            .collect();
        while let Some((concept, parent)) = stack.pop() {
            let Some(code) = str_of(concept, "code") else {
                continue;
            };
            let code = code.to_string();
            h.codes.push(code.clone());
            if let Some(p) = parent {
                h.link(&p, &code);
            }
            for property in array(concept, "property") {
                let Some(name) = str_of(property, "code") else {
                    continue;
                };
                let value = property
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                    .map(|(_, v)| match v {
                        Value::String(s) => s.clone(),
                        Value::Object(o) => o
                            .get("code")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                match name {
                    "parent" | "subsumedBy" => h.link(&value, &code),
                    "child" => h.link(&code, &value),
                    _ => {}
                }
                h.properties
                    .entry(code.clone())
                    .or_default()
                    .push((name.to_string(), value));
            }
            for child in array(concept, "concept")
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                stack.push((child, Some(code.clone())));
            }
        }
        Ok(h)
    }

    fn link(&mut self, parent: &str, child: &str) {
        if parent.is_empty() || child.is_empty() || parent == child {
            return;
        }
        let children = self.children.entry(parent.to_string()).or_default();
        if !children.iter().any(|c| c == child) {
            children.push(child.to_string());
        }
        let parents = self.parents.entry(child.to_string()).or_default();
        if !parents.iter().any(|p| p == parent) {
            parents.push(parent.to_string());
        }
    }

    fn walk(links: &HashMap<String, Vec<String>>, code: &str, with_self: bool) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        let mut queue: VecDeque<&str> = VecDeque::from([code]);
        seen.insert(code);
        if with_self {
            out.push(code.to_string());
        }
        while let Some(c) = queue.pop_front() {
            for next in links.get(c).into_iter().flatten() {
                if seen.insert(next) {
                    out.push(next.clone());
                    queue.push_back(next);
                }
            }
        }
        out
    }

    /// The code and every code it subsumes (`with_self` false: without the code).
    pub fn descendants(&self, code: &str, with_self: bool) -> Vec<String> {
        Hierarchy::walk(&self.children, code, with_self)
    }

    /// The code and every code that subsumes it.
    pub fn ancestors(&self, code: &str, with_self: bool) -> Vec<String> {
        Hierarchy::walk(&self.parents, code, with_self)
    }

    /// The codes a ValueSet filter (`property op value`) selects.
    pub fn filter(&self, property: &str, op: &str, value: &str) -> Result<Vec<String>> {
        let listed =
            |v: &str| -> HashSet<String> { v.split(',').map(|s| s.trim().to_string()).collect() };
        let all_but = |excluded: HashSet<String>| -> Vec<String> {
            self.codes
                .iter()
                .filter(|c| !excluded.contains(*c))
                .cloned()
                .collect()
        };
        let has = |code: &str, test: &dyn Fn(&str) -> bool| {
            self.properties
                .get(code)
                .is_some_and(|ps| ps.iter().any(|(n, v)| n == property && test(v)))
        };
        let concept = matches!(property, "concept" | "code");
        Ok(match (concept, op) {
            (true, "is-a") => self.descendants(value, true),
            (true, "descendent-of") => self.descendants(value, false),
            (true, "is-not-a") => all_but(self.descendants(value, true).into_iter().collect()),
            (true, "generalizes") => self.ancestors(value, true),
            (true, "=") => self.codes.iter().filter(|c| *c == value).cloned().collect(),
            (true, "in") => {
                let set = listed(value);
                self.codes
                    .iter()
                    .filter(|c| set.contains(*c))
                    .cloned()
                    .collect()
            }
            (true, "not-in") => all_but(listed(value)),
            // The hierarchy itself, nested or by property: the direct children of `value`
            // (`parent = value`) or its direct parents (`child = value`).
            (false, "=") if property == "parent" => {
                self.children.get(value).cloned().unwrap_or_default()
            }
            (false, "=") if property == "child" => {
                self.parents.get(value).cloned().unwrap_or_default()
            }
            (false, "=") => self
                .codes
                .iter()
                .filter(|c| has(c, &|v| v == value))
                .cloned()
                .collect(),
            (false, "in") => {
                let set = listed(value);
                self.codes
                    .iter()
                    .filter(|c| has(c, &|v| set.contains(v)))
                    .cloned()
                    .collect()
            }
            (false, "not-in") => {
                let set = listed(value);
                self.codes
                    .iter()
                    .filter(|c| !has(c, &|v| set.contains(v)))
                    .cloned()
                    .collect()
            }
            (_, "regex") => {
                let re = regex_lite::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    Error::invalid(format!(
                        "the value set filter regex '{value}' on '{}' is not valid: {e}",
                        self.system
                    ))
                })?;
                self.codes
                    .iter()
                    .filter(|c| {
                        if concept {
                            re.is_match(c)
                        } else {
                            has(c, &|v| re.is_match(v))
                        }
                    })
                    .cloned()
                    .collect()
            }
            (false, "exists") => {
                let wanted = value != "false";
                self.codes
                    .iter()
                    .filter(|c| has(c, &|_| true) == wanted)
                    .cloned()
                    .collect()
            }
            _ => {
                return Err(unsupported(format!(
                    "the value set filter '{property} {op} {value}' on '{}' is not supported",
                    self.system
                )))
            }
        })
    }
}

/// The (system, code) pairs of a value set; a code of `None` stands for every code of the
/// system.
pub(crate) type Expansion = Vec<(String, Option<String>)>;

/// `a ∩ b`, where a whole-system entry stands for every code of its system.
fn intersect(a: &Expansion, b: &Expansion) -> Expansion {
    let mut out = Expansion::new();
    for (sa, ca) in a {
        for (sb, cb) in b {
            if sa != sb {
                continue;
            }
            let both = match (ca, cb) {
                (None, c) | (c, None) => c.clone(),
                (Some(x), Some(y)) if x == y => Some(x.clone()),
                _ => continue,
            };
            let entry = (sa.clone(), both);
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

impl<S: Store> Engine<S> {
    /// The newest stored resource of `resource_type` with this canonical URL (`url|version`
    /// picks a version), else the core one of that type; `Type/id` reads a stored one by id.
    pub(crate) fn conformance_resource(
        &self,
        resource_type: &str,
        canonical: &str,
    ) -> Result<Option<Value>> {
        // A relative reference (`ValueSet/123`) names a stored resource by id.
        if let Some(id) = canonical
            .strip_prefix(resource_type)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            return match self.store().read(resource_type, id)? {
                Some(v) if !v.is_deleted() => Ok(crate::parse_stored(&v).ok()),
                _ => Ok(None),
            };
        }
        let (url, version) = match canonical.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (canonical, None),
        };
        let query = SearchQuery {
            resource_type: resource_type.to_string(),
            clauses: vec![vec![Predicate::Uri {
                param: "url".into(),
                value: url.to_string(),
                how: UriMatch::Exact,
            }]],
            // Oldest change first, so that the last one kept is the newest.
            order: Order::LastUpdated,
            limit: 100,
            ..Default::default()
        };
        let mut found: Option<Value> = None;
        for v in self.store().search(&query)?.versions {
            let Ok(resource) = crate::parse_stored(&v) else {
                continue;
            };
            if version.is_some_and(|want| str_of(&resource, "version") != Some(want)) {
                continue;
            }
            // The latest stored wins (results come oldest change first).
            found = Some(resource);
        }
        if found.is_some() {
            return Ok(found);
        }
        Ok(flint_fhir::definitions::by_url(url)
            .filter(|r| str_of(r, "resourceType") == Some(resource_type))
            .filter(|r| version.is_none_or(|want| str_of(r, "version") == Some(want)))
            .cloned())
    }

    /// The hierarchy of a code system known to this server, or a not-supported error.
    pub(crate) fn hierarchy(&self, system: &str) -> Result<Hierarchy> {
        let cs = self.conformance_resource("CodeSystem", system)?.ok_or_else(|| {
            unsupported(format!(
                "the code system '{system}' is not known to this server, so subsumption and filters on it cannot be evaluated"
            ))
        })?;
        Hierarchy::of(&cs)
    }

    /// Expands a value set by canonical URL (see [`Expansion`]).
    pub(crate) fn expand(&self, url: &str) -> Result<Expansion> {
        self.expand_at(url, 0)
    }

    fn expand_at(&self, url: &str, depth: usize) -> Result<Expansion> {
        if depth > 8 {
            return Err(unsupported(format!(
                "the value set '{url}' nests other value sets too deeply"
            )));
        }
        let vs = self.conformance_resource("ValueSet", url)?.ok_or_else(|| {
            unsupported(format!("the value set '{url}' is not known to this server"))
        })?;
        let Some(compose) = vs.get("compose") else {
            // A value set stored with its expansion only.
            if let Some(expansion) = vs.get("expansion") {
                let mut out = Expansion::new();
                let mut stack: Vec<&Value> = array(expansion, "contains").collect();
                while let Some(c) = stack.pop() {
                    if let (Some(s), Some(code)) = (str_of(c, "system"), str_of(c, "code")) {
                        out.push((s.to_string(), Some(code.to_string())));
                    }
                    stack.extend(array(c, "contains"));
                }
                return Ok(out);
            }
            return Err(unsupported(format!(
                "the value set '{url}' has neither compose nor expansion"
            )));
        };
        let mut out = Expansion::new();
        for include in array(compose, "include") {
            for entry in self.compose_part(url, include, depth)? {
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        for exclude in array(compose, "exclude") {
            let removed = self.compose_part(url, exclude, depth)?;
            let mut kept = Expansion::new();
            for (system, code) in out {
                if removed
                    .iter()
                    .any(|(s, c)| *s == system && (c.is_none() || *c == code))
                {
                    continue;
                }
                match code {
                    Some(code) => kept.push((system, Some(code))),
                    None => {
                        // A whole code system minus some of its codes: list the rest.
                        let excluded: HashSet<&str> = removed
                            .iter()
                            .filter(|(s, _)| *s == system)
                            .filter_map(|(_, c)| c.as_deref())
                            .collect();
                        if excluded.is_empty() {
                            kept.push((system, None));
                            continue;
                        }
                        let h = self.hierarchy(&system)?;
                        kept.extend(
                            h.codes
                                .iter()
                                .filter(|c| !excluded.contains(c.as_str()))
                                .map(|c| (system.clone(), Some(c.clone()))),
                        );
                    }
                }
            }
            out = kept;
        }
        Ok(out)
    }

    /// The codes one `compose.include` or `compose.exclude` names: its system part (listed
    /// concepts, filters, or the whole system) intersected with each value set it names.
    fn compose_part(&self, url: &str, part: &Value, depth: usize) -> Result<Expansion> {
        let mut result: Option<Expansion> = None;
        if let Some(system) = str_of(part, "system") {
            let concepts: Vec<&str> = array(part, "concept")
                .filter_map(|c| str_of(c, "code"))
                .collect();
            let filters: Vec<&Value> = array(part, "filter").collect();
            let codes: Expansion = if !concepts.is_empty() {
                concepts
                    .into_iter()
                    .map(|c| (system.to_string(), Some(c.to_string())))
                    .collect()
            } else if !filters.is_empty() {
                let h = self.hierarchy(system)?;
                let mut selected: Option<Vec<String>> = None;
                for f in filters {
                    let (Some(property), Some(op), Some(value)) =
                        (str_of(f, "property"), str_of(f, "op"), str_of(f, "value"))
                    else {
                        return Err(unsupported(format!(
                            "the value set '{url}' has an incomplete filter"
                        )));
                    };
                    let codes = h.filter(property, op, value)?;
                    selected = Some(match selected {
                        None => codes,
                        Some(before) => before.into_iter().filter(|c| codes.contains(c)).collect(),
                    });
                }
                selected
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (system.to_string(), Some(c)))
                    .collect()
            } else {
                vec![(system.to_string(), None)]
            };
            result = Some(codes);
        } else if part.get("concept").is_some() || part.get("filter").is_some() {
            return Err(unsupported(format!(
                "the value set '{url}' lists codes without a system"
            )));
        }
        for vs in array(part, "valueSet").filter_map(Value::as_str) {
            let codes = self.expand_at(vs, depth + 1)?;
            result = Some(match result {
                None => codes,
                Some(before) => intersect(&before, &codes),
            });
        }
        Ok(result.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code_system() -> Value {
        json!({
            "resourceType": "CodeSystem",
            "url": "http://example.org/cs",
            "content": "complete",
            "concept": [
                {"code": "a", "concept": [
                    {"code": "a1", "concept": [{"code": "a1x"}]},
                    {"code": "a2", "property": [{"code": "colour", "valueCode": "red"}]}
                ]},
                {"code": "b", "property": [{"code": "parent", "valueCode": "a1"}]},
                {"code": "c", "property": [{"code": "colour", "valueCode": "blue"}]}
            ]
        })
    }

    #[test]
    fn nesting_and_parent_properties_are_subsumption() {
        let h = Hierarchy::of(&code_system()).unwrap();
        assert_eq!(h.codes, ["a", "a1", "a1x", "a2", "b", "c"]);
        let mut below = h.descendants("a", true);
        below.sort();
        assert_eq!(below, ["a", "a1", "a1x", "a2", "b"]);
        assert_eq!(h.descendants("a1", false), ["a1x", "b"]);
        assert_eq!(h.ancestors("b", true), ["b", "a1", "a"]);
        assert_eq!(h.ancestors("c", true), ["c"]);
    }

    #[test]
    fn filters() {
        let h = Hierarchy::of(&code_system()).unwrap();
        assert_eq!(h.filter("concept", "is-not-a", "a").unwrap(), ["c"]);
        assert_eq!(h.filter("colour", "=", "red").unwrap(), ["a2"]);
        assert_eq!(h.filter("colour", "exists", "true").unwrap(), ["a2", "c"]);
        assert_eq!(h.filter("concept", "in", "c,a2").unwrap(), ["a2", "c"]);
        assert_eq!(h.filter("parent", "=", "a").unwrap(), ["a1", "a2"]);
        assert_eq!(h.filter("parent", "=", "a1").unwrap(), ["a1x", "b"]);
        assert_eq!(h.filter("child", "=", "b").unwrap(), ["a1"]);
        assert_eq!(
            h.filter("code", "regex", "a[0-9].*").unwrap(),
            ["a1", "a1x", "a2"]
        );
        assert_eq!(h.filter("colour", "regex", "r.d").unwrap(), ["a2"]);
        assert!(h.filter("code", "regex", "(").is_err());
        assert!(h.filter("concept", "before", "a").is_err());
    }

    #[test]
    fn incomplete_or_non_subsumption_code_systems_are_refused() {
        let mut cs = code_system();
        cs["content"] = json!("example");
        assert!(Hierarchy::of(&cs).is_err());
        let mut cs = code_system();
        cs["hierarchyMeaning"] = json!("part-of");
        assert!(Hierarchy::of(&cs).is_err());
    }

    #[test]
    fn intersection_with_whole_systems() {
        let a = vec![("s".to_string(), None), ("t".to_string(), Some("1".into()))];
        let b = vec![
            ("s".to_string(), Some("x".into())),
            ("t".to_string(), Some("2".into())),
        ];
        assert_eq!(intersect(&a, &b), vec![("s".to_string(), Some("x".into()))]);
    }
}

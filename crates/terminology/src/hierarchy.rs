//! A CodeSystem read once into an index: its concepts in order, each with display,
//! definition, designations, properties and status, the subsumption links between them
//! (nested concepts and the `parent`, `child` and `subsumedBy` properties), and the ValueSet
//! filters (`compose.include.filter`) evaluated over them.

use std::collections::{HashMap, HashSet, VecDeque};

use flint_fhir::{Error, IssueType, Result};
use serde_json::Value;

use crate::json::{array, bool_of, str_of, value_x};

/// The longest regular expression a `regex` filter may have.
const MAX_REGEX_LEN: usize = 1_000;

/// How much of a code system a CodeSystem resource holds (`CodeSystem.content`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Every concept: absence of a code means it is not in the code system.
    Complete,
    /// Some concepts (`fragment`, `example`): what is present is true, what is absent is unknown.
    Partial,
    /// No concepts at all (`not-present`: SNOMED CT, LOINC, ... described but not held).
    NotPresent,
}

/// A designation of a concept: another display, in a language or for a use.
#[derive(Clone, Debug, PartialEq)]
pub struct Designation {
    pub language: Option<String>,
    /// The `use` Coding as JSON.
    pub use_: Option<Value>,
    pub value: String,
}

impl Designation {
    /// Reads a `designation` element; `None` without a value.
    pub(crate) fn from_json(v: &Value) -> Option<Designation> {
        Some(Designation {
            language: str_of(v, "language").map(str::to_string),
            use_: v.get("use").filter(|u| u.is_object()).cloned(),
            value: str_of(v, "value")?.to_string(),
        })
    }

    /// The designation as FHIR JSON (`language`, `use`, `value`).
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(l) = &self.language {
            out.insert("language".into(), Value::String(l.clone()));
        }
        if let Some(u) = &self.use_ {
            out.insert("use".into(), u.clone());
        }
        out.insert("value".into(), Value::String(self.value.clone()));
        Value::Object(out)
    }
}

/// One property of a concept, typed as the code system wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub code: String,
    /// The JSON key of the value: `valueCode`, `valueCoding`, `valueString`, `valueInteger`,
    /// `valueBoolean`, `valueDateTime` or `valueDecimal`.
    pub key: String,
    pub value: Value,
}

impl Property {
    /// The value as text, for filters: a string as is, a Coding by its code, a number or a
    /// boolean as written.
    pub fn text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            other => other.to_string(),
        }
    }
}

/// A property the code system declares (`CodeSystem.property`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyDefinition {
    pub code: String,
    pub uri: Option<String>,
    pub description: Option<String>,
    /// `code`, `Coding`, `string`, `integer`, `boolean`, `dateTime` or `decimal`.
    pub type_: Option<String>,
}

/// One concept of a code system.
#[derive(Clone, Debug, PartialEq)]
pub struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub designations: Vec<Designation>,
    pub properties: Vec<Property>,
    /// Not for current use: property `inactive` true, or `status` `retired` or `inactive`.
    pub inactive: bool,
    /// Only a grouper (property `notSelectable` or `abstract` true).
    pub abstract_: bool,
}

impl Concept {
    fn read(v: &Value, code: &str) -> Concept {
        let properties: Vec<Property> = array(v, "property")
            .filter_map(|p| {
                let code = str_of(p, "code")?;
                let (key, value) = value_x(p)?;
                Some(Property {
                    code: code.to_string(),
                    key: key.to_string(),
                    value: value.clone(),
                })
            })
            .collect();
        let flag = |names: &[&str]| {
            properties
                .iter()
                .any(|p| names.contains(&p.code.as_str()) && is_true(&p.value))
        };
        let inactive = flag(&["inactive"])
            || properties
                .iter()
                .any(|p| p.code == "status" && matches!(p.text().as_str(), "retired" | "inactive"));
        let abstract_ = flag(&["notSelectable", "abstract"]);
        Concept {
            code: code.to_string(),
            display: str_of(v, "display").map(str::to_string),
            definition: str_of(v, "definition").map(str::to_string),
            designations: array(v, "designation")
                .filter_map(Designation::from_json)
                .collect(),
            properties,
            inactive,
            abstract_,
        }
    }

    /// The values of one property of this concept.
    pub fn property<'c>(&'c self, code: &'c str) -> impl Iterator<Item = &'c Property> + 'c {
        self.properties.iter().filter(move |p| p.code == code)
    }
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str() == Some("true")
}

/// A code system's concepts with their subsumption links and properties.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// The code system's canonical URL.
    pub system: String,
    pub version: Option<String>,
    /// `CodeSystem.name`, else its `title`.
    pub name: Option<String>,
    /// The language of the displays (`CodeSystem.language`).
    pub language: Option<String>,
    pub content: Content,
    pub case_sensitive: bool,
    /// `CodeSystem.hierarchyMeaning`; absent means is-a.
    pub hierarchy_meaning: Option<String>,
    /// The declared properties.
    pub properties: Vec<PropertyDefinition>,
    concepts: Vec<Concept>,
    /// Code (lower-cased when the code system is not case sensitive) → position.
    index: HashMap<String, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
}

impl Hierarchy {
    /// Reads a CodeSystem resource whatever its content, for lookups and validation.
    ///
    /// # Errors
    /// Invalid when it is not a CodeSystem; not supported for a supplement, which is no code
    /// system of its own.
    pub fn read(cs: &Value) -> Result<Hierarchy> {
        if str_of(cs, "resourceType") != Some("CodeSystem") {
            return Err(Error::invalid(
                "the resource given as a code system is not a CodeSystem",
            ));
        }
        let system = str_of(cs, "url").unwrap_or("").to_string();
        let content = match str_of(cs, "content") {
            Some("complete") => Content::Complete,
            Some("fragment" | "example") => Content::Partial,
            Some("not-present") => Content::NotPresent,
            Some("supplement") => {
                return Err(Error::not_supported(format!(
                    "'{system}' is a code system supplement, not a code system; supplements are not supported"
                )))
            }
            other => {
                return Err(Error::invalid(format!(
                    "the code system '{system}' has no valid content code ({})",
                    other.unwrap_or("missing")
                )))
            }
        };
        let mut h = Hierarchy {
            system,
            version: str_of(cs, "version").map(str::to_string),
            name: str_of(cs, "name")
                .or_else(|| str_of(cs, "title"))
                .map(str::to_string),
            language: str_of(cs, "language").map(str::to_string),
            content,
            case_sensitive: bool_of(cs, "caseSensitive").unwrap_or(true),
            hierarchy_meaning: str_of(cs, "hierarchyMeaning").map(str::to_string),
            properties: array(cs, "property")
                .filter_map(|p| {
                    Some(PropertyDefinition {
                        code: str_of(p, "code")?.to_string(),
                        uri: str_of(p, "uri").map(str::to_string),
                        description: str_of(p, "description").map(str::to_string),
                        type_: str_of(p, "type").map(str::to_string),
                    })
                })
                .collect(),
            concepts: Vec::new(),
            index: HashMap::new(),
            parents: Vec::new(),
            children: Vec::new(),
        };
        // Depth first, in the order written, without recursion; links by code are resolved
        // once every code is known, since a property may name a later concept.
        let mut links: Vec<(usize, String, bool)> = Vec::new();
        let mut nested: Vec<(usize, usize)> = Vec::new();
        let mut stack: Vec<(&Value, Option<usize>)> =
            array(cs, "concept").rev().map(|c| (c, None)).collect();
        while let Some((v, parent)) = stack.pop() {
            let Some(code) = str_of(v, "code").filter(|c| !c.is_empty()) else {
                continue;
            };
            let key = h.key(code);
            let at = match h.index.get(&key) {
                // A code listed twice (a polyhierarchy written out): one concept, more links.
                Some(&at) => at,
                None => {
                    let at = h.concepts.len();
                    let concept = Concept::read(v, code);
                    for p in &concept.properties {
                        match p.code.as_str() {
                            "parent" | "subsumedBy" => links.push((at, p.text(), true)),
                            "child" => links.push((at, p.text(), false)),
                            _ => {}
                        }
                    }
                    h.concepts.push(concept);
                    h.index.insert(key, at);
                    at
                }
            };
            if let Some(p) = parent {
                nested.push((p, at));
            }
            stack.extend(array(v, "concept").rev().map(|c| (c, Some(at))));
        }
        h.parents = vec![Vec::new(); h.concepts.len()];
        h.children = vec![Vec::new(); h.concepts.len()];
        for (parent, child) in nested {
            h.link(parent, child);
        }
        for (at, other, is_parent) in links {
            if let Some(other) = h.find(&other) {
                if is_parent {
                    h.link(other, at);
                } else {
                    h.link(at, other);
                }
            }
        }
        Ok(h)
    }

    /// Reads a CodeSystem for reasoning over subsumption: refused (not supported) unless it
    /// holds the whole code system and its hierarchy means is-a.
    ///
    /// # Errors
    /// See [`Hierarchy::read`], [`Hierarchy::require_complete`] and
    /// [`Hierarchy::require_subsumption`].
    pub fn of(cs: &Value) -> Result<Hierarchy> {
        let h = Hierarchy::read(cs)?;
        h.require_complete()?;
        h.require_subsumption()?;
        Ok(h)
    }

    /// Not supported unless the resource holds every concept.
    ///
    /// # Errors
    /// Not supported when `content` is not `complete`.
    pub fn require_complete(&self) -> Result<()> {
        match self.content {
            Content::Complete => Ok(()),
            Content::Partial => Err(Error::not_supported(format!(
                "the code system '{}' is held here only in part (content fragment or example); its concepts cannot all be reasoned about",
                self.system
            ))),
            Content::NotPresent => Err(Error::not_supported(format!(
                "the concepts of the code system '{}' are not held here (content not-present)",
                self.system
            ))),
        }
    }

    /// Not supported unless the hierarchy means subsumption (`hierarchyMeaning` is-a or absent).
    ///
    /// # Errors
    /// Not supported for `grouped-by`, `part-of` and `classified-with` hierarchies.
    pub fn require_subsumption(&self) -> Result<()> {
        match self.hierarchy_meaning.as_deref() {
            None | Some("is-a") => Ok(()),
            Some(other) => Err(Error::not_supported(format!(
                "the hierarchy of the code system '{}' means '{other}', not subsumption",
                self.system
            ))),
        }
    }

    fn key(&self, code: &str) -> String {
        if self.case_sensitive {
            code.to_string()
        } else {
            code.to_lowercase()
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        if parent == child {
            return;
        }
        if !self.children[parent].contains(&child) {
            self.children[parent].push(child);
        }
        if !self.parents[child].contains(&parent) {
            self.parents[child].push(parent);
        }
    }

    /// The position of a code (ignoring case when the code system does).
    pub fn find(&self, code: &str) -> Option<usize> {
        if self.case_sensitive {
            self.index.get(code).copied()
        } else {
            self.index.get(&code.to_lowercase()).copied()
        }
    }

    /// The concept with this code.
    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.find(code).map(|at| &self.concepts[at])
    }

    /// Every concept, in the order the code system lists them (depth first).
    pub fn concepts(&self) -> &[Concept] {
        &self.concepts
    }

    /// Every code, in the order the code system lists them.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.concepts.iter().map(|c| c.code.as_str())
    }

    /// The number of concepts.
    pub fn len(&self) -> usize {
        self.concepts.len()
    }

    /// Whether the resource lists no concepts.
    pub fn is_empty(&self) -> bool {
        self.concepts.is_empty()
    }

    /// The direct parents of a concept.
    pub fn parents_of(&self, code: &str) -> impl Iterator<Item = &Concept> {
        self.neighbours(&self.parents, code)
    }

    /// The direct children of a concept.
    pub fn children_of(&self, code: &str) -> impl Iterator<Item = &Concept> {
        self.neighbours(&self.children, code)
    }

    fn neighbours<'h>(
        &'h self,
        links: &'h [Vec<usize>],
        code: &str,
    ) -> impl Iterator<Item = &'h Concept> {
        self.find(code)
            .into_iter()
            .flat_map(move |at| links[at].iter().map(|&i| &self.concepts[i]))
    }

    /// Breadth first from `start` along `links`, each concept once.
    fn walk(links: &[Vec<usize>], start: usize, with_self: bool) -> Vec<usize> {
        let mut seen: HashSet<usize> = HashSet::from([start]);
        let mut out = Vec::new();
        if with_self {
            out.push(start);
        }
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for &next in &links[at] {
                if seen.insert(next) {
                    out.push(next);
                    queue.push_back(next);
                }
            }
        }
        out
    }

    fn walk_codes(&self, links: &[Vec<usize>], code: &str, with_self: bool) -> Vec<String> {
        match self.find(code) {
            Some(at) => Hierarchy::walk(links, at, with_self)
                .into_iter()
                .map(|i| self.concepts[i].code.clone())
                .collect(),
            // A code the code system does not list subsumes nothing but itself.
            None if with_self => vec![code.to_string()],
            None => Vec::new(),
        }
    }

    /// The code and every code it subsumes, nearest first (`with_self` false: without the
    /// code). A code not in the code system gives only itself.
    pub fn descendants(&self, code: &str, with_self: bool) -> Vec<String> {
        self.walk_codes(&self.children, code, with_self)
    }

    /// The code and every code that subsumes it, nearest first.
    pub fn ancestors(&self, code: &str, with_self: bool) -> Vec<String> {
        self.walk_codes(&self.parents, code, with_self)
    }

    /// Whether `ancestor` subsumes `descendant` (or is it). Both must be in the code system.
    pub fn subsumes(&self, ancestor: usize, descendant: usize) -> bool {
        ancestor == descendant
            || Hierarchy::walk(&self.parents, descendant, false).contains(&ancestor)
    }

    /// The concepts a ValueSet filter (`property op value`) selects, in code system order.
    ///
    /// `concept` (or `code`) with `is-a`, `descendent-of`, `is-not-a`, `generalizes`, `=`,
    /// `in`, `not-in` and `regex` works on the hierarchy and the codes; `parent = x` and
    /// `child = x` select the direct children and parents of `x`; `display` with `=`, `in`,
    /// `not-in` and `regex` works on displays, unless the code system declares a property of
    /// that name; any other property works on the concepts' property values with `=`, `in`,
    /// `not-in`, `regex` and `exists`. A regex must match the whole value.
    ///
    /// # Errors
    /// Invalid for a regex that does not compile or a bad `exists` value; not supported for
    /// any other combination, and for subsumption filters on a hierarchy that is not is-a.
    pub fn filter(&self, property: &str, op: &str, value: &str) -> Result<Vec<&Concept>> {
        Ok(self
            .select(property, op, value)?
            .into_iter()
            .map(|i| &self.concepts[i])
            .collect())
    }

    /// [`Hierarchy::filter`] as positions, in code system order.
    pub(crate) fn select(&self, property: &str, op: &str, value: &str) -> Result<Vec<usize>> {
        let all = 0..self.concepts.len();
        let listed = || -> HashSet<&str> { value.split(',').map(str::trim).collect() };
        let concept = matches!(property, "concept" | "code");
        let display = property == "display" && !self.properties.iter().any(|p| p.code == "display");
        let has = |at: usize, test: &dyn Fn(&str) -> bool| {
            self.concepts[at]
                .property(property)
                .any(|p| test(&p.text()))
        };
        // What a comparison filter compares: the code, the display, or a property value.
        let matches = |at: usize, test: &dyn Fn(&str) -> bool| {
            let c = &self.concepts[at];
            if concept {
                test(&c.code)
            } else if display {
                c.display.as_deref().is_some_and(test)
            } else {
                has(at, test)
            }
        };
        let sorted = |mut v: Vec<usize>| {
            v.sort_unstable();
            v
        };
        let mut selected: Vec<usize> = match op {
            "is-a" | "descendent-of" | "is-not-a" | "generalizes" if concept => {
                self.require_subsumption()?;
                let Some(at) = self.find(value) else {
                    return Ok(if op == "is-not-a" {
                        all.collect()
                    } else {
                        Vec::new()
                    });
                };
                match op {
                    "is-a" => sorted(Hierarchy::walk(&self.children, at, true)),
                    "descendent-of" => sorted(Hierarchy::walk(&self.children, at, false)),
                    "generalizes" => sorted(Hierarchy::walk(&self.parents, at, true)),
                    _ => {
                        let below: HashSet<usize> = Hierarchy::walk(&self.children, at, true)
                            .into_iter()
                            .collect();
                        all.filter(|i| !below.contains(i)).collect()
                    }
                }
            }
            // The hierarchy itself, nested or by property: the direct children of `value`
            // (`parent = value`) or its direct parents (`child = value`).
            "=" if property == "parent" || property == "child" => {
                let links = if property == "parent" {
                    &self.children
                } else {
                    &self.parents
                };
                self.find(value)
                    .map(|at| sorted(links[at].clone()))
                    .unwrap_or_default()
            }
            "=" => all.filter(|&i| matches(i, &|v| v == value)).collect(),
            "in" => {
                let set = listed();
                all.filter(|&i| matches(i, &|v| set.contains(v))).collect()
            }
            "not-in" => {
                let set = listed();
                all.filter(|&i| !matches(i, &|v| set.contains(v))).collect()
            }
            "regex" => {
                if value.len() > MAX_REGEX_LEN {
                    return Err(Error::new(
                        IssueType::TooCostly,
                        format!(
                            "the value set filter regex on '{}' is longer than {MAX_REGEX_LEN} characters",
                            self.system
                        ),
                    ));
                }
                let re = regex_lite::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "the value set filter regex '{value}' on '{}' is not valid: {e}",
                            self.system
                        ))
                    })?;
                all.filter(|&i| matches(i, &|v| re.is_match(v))).collect()
            }
            "exists" if !concept && !display => {
                let wanted = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::invalid(format!(
                            "the value of an 'exists' filter is true or false, not '{value}'"
                        )))
                    }
                };
                all.filter(|&i| has(i, &|_| true) == wanted).collect()
            }
            _ => {
                return Err(Error::not_supported(format!(
                    "the value set filter '{property} {op} {value}' on '{}' is not supported",
                    self.system
                )))
            }
        };
        selected.dedup();
        Ok(selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn code_system() -> Value {
        json!({
            "resourceType": "CodeSystem",
            "url": "http://example.org/cs",
            "content": "complete",
            "concept": [
                {"code": "a", "display": "Alpha", "concept": [
                    {"code": "a1", "concept": [{"code": "a1x"}]},
                    {"code": "a2", "property": [{"code": "colour", "valueCode": "red"}]}
                ]},
                {"code": "b", "property": [{"code": "parent", "valueCode": "a1"}]},
                {"code": "c", "property": [{"code": "colour", "valueCode": "blue"}]}
            ]
        })
    }

    fn codes(concepts: Vec<&Concept>) -> Vec<&str> {
        concepts.into_iter().map(|c| c.code.as_str()).collect()
    }

    #[test]
    fn nesting_and_parent_properties_are_subsumption() {
        let h = Hierarchy::of(&code_system()).unwrap();
        assert_eq!(
            h.codes().collect::<Vec<_>>(),
            ["a", "a1", "a1x", "a2", "b", "c"]
        );
        let mut below = h.descendants("a", true);
        below.sort();
        assert_eq!(below, ["a", "a1", "a1x", "a2", "b"]);
        assert_eq!(h.descendants("a1", false), ["a1x", "b"]);
        assert_eq!(h.ancestors("b", true), ["b", "a1", "a"]);
        assert_eq!(h.ancestors("c", true), ["c"]);
        assert_eq!(h.descendants("zzz", true), ["zzz"]);
        assert!(h.descendants("zzz", false).is_empty());
        let (a, b, c) = (
            h.find("a").unwrap(),
            h.find("b").unwrap(),
            h.find("c").unwrap(),
        );
        assert!(h.subsumes(a, b));
        assert!(!h.subsumes(b, a));
        assert!(!h.subsumes(a, c));
    }

    #[test]
    fn filters() {
        let h = Hierarchy::of(&code_system()).unwrap();
        let f = |p, o, v| codes(h.filter(p, o, v).unwrap());
        assert_eq!(f("concept", "is-not-a", "a"), ["c"]);
        assert_eq!(f("concept", "is-a", "a1"), ["a1", "a1x", "b"]);
        assert_eq!(f("concept", "descendent-of", "a1"), ["a1x", "b"]);
        assert_eq!(f("concept", "generalizes", "b"), ["a", "a1", "b"]);
        assert_eq!(f("concept", "is-a", "nope"), Vec::<&str>::new());
        assert_eq!(f("concept", "=", "c"), ["c"]);
        assert_eq!(f("colour", "=", "red"), ["a2"]);
        assert_eq!(f("colour", "exists", "true"), ["a2", "c"]);
        assert_eq!(f("colour", "exists", "false"), ["a", "a1", "a1x", "b"]);
        assert_eq!(f("concept", "in", "c,a2"), ["a2", "c"]);
        assert_eq!(f("concept", "not-in", "c, a2"), ["a", "a1", "a1x", "b"]);
        assert_eq!(f("colour", "not-in", "red"), ["a", "a1", "a1x", "b", "c"]);
        assert_eq!(f("parent", "=", "a"), ["a1", "a2"]);
        assert_eq!(f("parent", "=", "a1"), ["a1x", "b"]);
        assert_eq!(f("child", "=", "b"), ["a1"]);
        assert_eq!(f("code", "regex", "a[0-9].*"), ["a1", "a1x", "a2"]);
        assert_eq!(f("colour", "regex", "r.d"), ["a2"]);
        assert_eq!(f("display", "regex", "(?i)alp.*"), ["a"]);
        assert!(h.filter("code", "regex", "(").is_err());
        assert!(h.filter("code", "regex", &"a".repeat(2000)).is_err());
        assert!(h.filter("colour", "exists", "maybe").is_err());
        assert_eq!(
            h.filter("concept", "before", "a").unwrap_err().status(),
            400
        );
        assert!(h.filter("colour", "is-a", "red").is_err());
    }

    #[test]
    fn incomplete_or_non_subsumption_code_systems_are_refused() {
        let mut cs = code_system();
        cs["content"] = json!("example");
        assert!(Hierarchy::of(&cs).is_err());
        assert_eq!(Hierarchy::read(&cs).unwrap().content, Content::Partial);
        let mut cs = code_system();
        cs["hierarchyMeaning"] = json!("part-of");
        assert!(Hierarchy::of(&cs).is_err());
        let h = Hierarchy::read(&cs).unwrap();
        assert!(h.filter("concept", "is-a", "a").is_err());
        assert_eq!(codes(h.filter("parent", "=", "a").unwrap()), ["a1", "a2"]);
        let mut cs = code_system();
        cs["content"] = json!("supplement");
        assert_eq!(
            Hierarchy::read(&cs).unwrap_err().code(),
            IssueType::NotSupported
        );
        assert!(Hierarchy::read(&json!({"resourceType": "ValueSet"})).is_err());
        assert!(Hierarchy::read(&json!({"resourceType": "CodeSystem"})).is_err());
    }

    #[test]
    fn status_properties_and_case() {
        let cs = json!({
            "resourceType": "CodeSystem",
            "url": "http://example.org/ci",
            "content": "complete",
            "caseSensitive": false,
            "concept": [
                {"code": "Old", "property": [{"code": "status", "valueCode": "retired"}]},
                {"code": "Group", "property": [{"code": "notSelectable", "valueBoolean": true}],
                 "designation": [{"language": "de", "value": "Gruppe"}, {"language": "fr"}],
                 "concept": [{"code": "Leaf", "property": [{"code": "child", "valueCode": "Old"}]}]},
                {"code": 7},
                "not a concept"
            ]
        });
        let h = Hierarchy::read(&cs).unwrap();
        assert_eq!(h.len(), 3);
        assert!(h.concept("old").unwrap().inactive);
        assert!(h.concept("GROUP").unwrap().abstract_);
        assert_eq!(h.concept("group").unwrap().designations.len(), 1);
        assert_eq!(h.ancestors("Old", true), ["Old", "Leaf", "Group"]);
        assert_eq!(
            h.children_of("group")
                .map(|c| c.code.as_str())
                .collect::<Vec<_>>(),
            ["Leaf"]
        );
    }

    #[test]
    fn cycles_end() {
        let cs = json!({
            "resourceType": "CodeSystem",
            "url": "http://example.org/cycle",
            "content": "complete",
            "concept": [
                {"code": "x", "property": [{"code": "parent", "valueCode": "y"}]},
                {"code": "y", "property": [{"code": "parent", "valueCode": "x"}, {"code": "parent", "valueCode": "y"}]}
            ]
        });
        let h = Hierarchy::of(&cs).unwrap();
        assert_eq!(h.descendants("x", true), ["x", "y"]);
        assert_eq!(h.ancestors("x", false), ["y"]);
    }
}

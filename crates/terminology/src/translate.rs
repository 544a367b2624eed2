//! `ConceptMap/$translate`: the codes a ConceptMap maps a code to (or, `reverse`, from),
//! with their equivalence, from one named map or from every map the [`Source`] finds for
//! the code's system and the value set scopes.
//!
//! A target with `dependsOn` matches only when every dependency is given (`dependency`
//! parameters whose element is the `property` and whose concept has the `value` as a code).
//! `group.unmapped` applies to a code a group has no element for: `provided` gives the code
//! itself in the group's target system (equivalence `equivalent`), `fixed` gives the
//! unmapped code (equivalence `inexact`: a fallback, not a mapping of meaning), `other-map`
//! translates the code with the map it names. Reverse translation reads the elements only
//! (unmapped rules describe the forward direction), with the equivalence turned around
//! (`wider` ↔ `narrower`, `subsumes` ↔ `specializes`).

use flint_fhir::{Error, IssueType, Result};
use serde_json::{json, Value};

use crate::coding::{Coding, Definition};
use crate::json::{array, split_canonical, str_of, strip_version};
use crate::parameters;
use crate::source::{MapQuery, Resource};
use crate::{Source, Terminology};

/// One `dependency` input: an element and its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dependency {
    /// `element`: the `dependsOn.property` it answers.
    pub element: Option<String>,
    /// The codings of `concept`.
    pub concept: Vec<Coding>,
}

/// The inputs of `$translate`.
#[derive(Clone, Debug, Default)]
pub struct TranslateRequest {
    /// `url` (+ `conceptMapVersion`), the `conceptMap` given, or the instance invoked on;
    /// `None` to use every map the source finds.
    pub concept_map: Option<Definition>,
    /// The code to translate (`code` + `system` + `version`, or `coding`), or the codings of
    /// `codeableConcept`.
    pub codings: Vec<Coding>,
    /// `source`: the value set the code was chosen from.
    pub source: Option<String>,
    /// `target`: the value set a translation is sought in.
    pub target: Option<String>,
    /// `targetsystem`: the code system a translation is sought in.
    pub target_system: Option<String>,
    /// `dependency`.
    pub dependencies: Vec<Dependency>,
    /// `reverse`.
    pub reverse: bool,
}

impl TranslateRequest {
    /// A translation of one coding with every map found.
    pub fn coding(coding: Coding) -> TranslateRequest {
        TranslateRequest {
            codings: vec![coding],
            ..Default::default()
        }
    }
}

/// A `match.product`: another element the mapping produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub element: Option<String>,
    pub concept: Coding,
}

/// One `match` of the `$translate` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// A ConceptMapEquivalence code.
    pub equivalence: String,
    /// The code mapped to (none for `unmatched` targets without a code).
    pub concept: Option<Coding>,
    pub products: Vec<Product>,
    /// The canonical URL of the map the match comes from.
    pub source: Option<String>,
}

/// The result of `$translate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Whether any match has an equivalence other than `unmatched` or `disjoint`.
    pub result: bool,
    pub message: Option<String>,
    pub matches: Vec<Match>,
}

impl Translation {
    /// The output `Parameters`: `result`, `message`, and each `match` (parts `equivalence`,
    /// `concept`, `product` (parts `element`, `concept`), `source`).
    pub fn to_parameters(&self) -> Value {
        let mut entries = vec![parameters::value(
            "result",
            "valueBoolean",
            json!(self.result),
        )];
        if let Some(m) = &self.message {
            entries.push(parameters::string("message", m));
        }
        for m in &self.matches {
            let mut parts = vec![parameters::code("equivalence", &m.equivalence)];
            if let Some(c) = &m.concept {
                parts.push(parameters::value("concept", "valueCoding", c.to_json()));
            }
            for p in &m.products {
                let mut product = Vec::new();
                if let Some(e) = &p.element {
                    product.push(parameters::value("element", "valueUri", json!(e)));
                }
                product.push(parameters::value(
                    "concept",
                    "valueCoding",
                    p.concept.to_json(),
                ));
                parts.push(parameters::parts("product", product));
            }
            if let Some(s) = &m.source {
                parts.push(parameters::value("source", "valueUri", json!(s)));
            }
            entries.push(parameters::parts("match", parts));
        }
        parameters::resource(entries)
    }
}

/// The equivalence seen from the other side of the map.
fn reversed(equivalence: &str) -> &str {
    match equivalence {
        "wider" => "narrower",
        "narrower" => "wider",
        "subsumes" => "specializes",
        "specializes" => "subsumes",
        other => other,
    }
}

fn coding_of(
    system: Option<&str>,
    version: Option<&str>,
    code: &str,
    display: Option<&str>,
) -> Coding {
    Coding {
        system: system.map(str::to_string),
        version: version.map(str::to_string),
        code: Some(code.to_string()),
        display: display.map(str::to_string),
    }
}

/// What one translation pass gathers.
#[derive(Default)]
struct Found {
    matches: Vec<Match>,
    /// Targets left out because their dependencies were not given.
    needing_dependencies: usize,
}

impl Found {
    fn push(&mut self, m: Match) {
        if !self.matches.contains(&m) {
            self.matches.push(m);
        }
    }
}

impl<S: Source + ?Sized> Terminology<'_, S> {
    /// `ConceptMap/$translate`.
    ///
    /// # Errors
    /// Invalid without a code and system, or for a `conceptMap` that is not one; not found
    /// for an unknown named map; not supported for an `other-map` rule whose map is unknown;
    /// too costly when maps defer to each other too deeply.
    pub fn translate(&self, request: &TranslateRequest) -> Result<Translation> {
        if request.codings.is_empty() {
            return Err(Error::invalid(
                "$translate needs a code, a coding or a codeableConcept",
            ));
        }
        let mut pairs = Vec::new();
        for coding in &request.codings {
            match coding.require("$translate") {
                Ok(pair) => pairs.push((coding, pair)),
                // A codeableConcept may carry codings without a system; they translate to
                // nothing, but the others still count.
                Err(_) if request.codings.len() > 1 => {}
                Err(e) => return Err(e),
            }
        }
        if pairs.is_empty() {
            return Err(Error::invalid(
                "$translate: no coding has both a system and a code",
            ));
        }
        let mut found = Found::default();
        for (coding, (system, code)) in pairs {
            let maps = match &request.concept_map {
                Some(d) => vec![self.concept_map_of(d)?],
                None => {
                    let (map_source, map_target) = if request.reverse {
                        (request.target.as_deref(), request.source.as_deref())
                    } else {
                        (request.source.as_deref(), request.target.as_deref())
                    };
                    let query = if request.reverse {
                        MapQuery {
                            source_scope: map_source,
                            target_scope: map_target,
                            source_system: request.target_system.as_deref(),
                            target_system: Some(system),
                        }
                    } else {
                        MapQuery {
                            source_scope: map_source,
                            target_scope: map_target,
                            source_system: Some(system),
                            target_system: request.target_system.as_deref(),
                        }
                    };
                    self.source()
                        .concept_maps(&query)?
                        .into_iter()
                        .filter(|m| query.matches(m))
                        .collect()
                }
            };
            for map in &maps {
                if request.reverse {
                    translate_reverse(map, system, code, request, &mut found);
                } else {
                    self.translate_forward(map, coding, system, code, request, &mut found, 0)?;
                }
            }
        }
        let result = found
            .matches
            .iter()
            .any(|m| !matches!(m.equivalence.as_str(), "unmatched" | "disjoint"));
        let message = (!result).then(|| {
            let codes: Vec<String> = request.codings.iter().map(Coding::label).collect();
            let mut m = format!("no mapping was found for {}", codes.join(", "));
            if found.needing_dependencies > 0 {
                m.push_str(&format!(
                    "; {} mapping(s) depend on other elements that were not given as dependency parameters",
                    found.needing_dependencies
                ));
            }
            m
        });
        Ok(Translation {
            result,
            message,
            matches: found.matches,
        })
    }

    fn concept_map_of(&self, definition: &Definition) -> Result<Resource> {
        let map = match definition {
            Definition::Resource(map) => map.clone(),
            Definition::Url { url, version } => self
                .source()
                .concept_map(url, version.as_deref())?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "the concept map '{url}' is not known to this server"
                    ))
                })?,
        };
        if str_of(&map, "resourceType") != Some("ConceptMap") {
            return Err(Error::invalid(
                "the resource given as a concept map is not a ConceptMap",
            ));
        }
        Ok(map)
    }

    #[allow(clippy::too_many_arguments)]
    fn translate_forward(
        &self,
        map: &Value,
        coding: &Coding,
        system: &str,
        code: &str,
        request: &TranslateRequest,
        found: &mut Found,
        depth: usize,
    ) -> Result<()> {
        if depth > self.limits().max_depth {
            return Err(Error::new(
                IssueType::TooCostly,
                "concept maps defer to other maps (group.unmapped other-map) too deeply",
            ));
        }
        let map_url = str_of(map, "url").map(str::to_string);
        for group in array(map, "group") {
            if str_of(group, "source").map(strip_version) != Some(system) {
                continue;
            }
            let target_system = str_of(group, "target");
            if let Some(want) = request.target_system.as_deref() {
                if target_system.map(strip_version) != Some(strip_version(want)) {
                    continue;
                }
            }
            if let (Some(want), Some(have)) =
                (coding.version.as_deref(), str_of(group, "sourceVersion"))
            {
                if want != have {
                    continue;
                }
            }
            let target_version = str_of(group, "targetVersion");
            let elements: Vec<&Value> = array(group, "element")
                .filter(|e| str_of(e, "code") == Some(code))
                .collect();
            for element in &elements {
                for target in array(element, "target") {
                    if !dependencies_met(target, &request.dependencies) {
                        found.needing_dependencies += 1;
                        continue;
                    }
                    let equivalence = str_of(target, "equivalence").unwrap_or("equivalent");
                    found.push(Match {
                        equivalence: equivalence.to_string(),
                        concept: str_of(target, "code").map(|c| {
                            coding_of(target_system, target_version, c, str_of(target, "display"))
                        }),
                        products: products(target),
                        source: map_url.clone(),
                    });
                }
            }
            if !elements.is_empty() {
                continue;
            }
            let Some(unmapped) = group.get("unmapped") else {
                continue;
            };
            match str_of(unmapped, "mode") {
                Some("provided") => found.push(Match {
                    equivalence: "equivalent".into(),
                    concept: Some(coding_of(
                        target_system.or(Some(system)),
                        target_version,
                        code,
                        None,
                    )),
                    products: Vec::new(),
                    source: map_url.clone(),
                }),
                Some("fixed") => {
                    if let Some(fixed) = str_of(unmapped, "code") {
                        found.push(Match {
                            equivalence: "inexact".into(),
                            concept: Some(coding_of(
                                target_system,
                                target_version,
                                fixed,
                                str_of(unmapped, "display"),
                            )),
                            products: Vec::new(),
                            source: map_url.clone(),
                        });
                    }
                }
                Some("other-map") => {
                    let Some(other) = str_of(unmapped, "url") else {
                        continue;
                    };
                    let (url, version) = split_canonical(other);
                    let other_map = self.source().concept_map(url, version)?.ok_or_else(|| {
                        Error::not_supported(format!(
                            "the concept map '{}' defers unmapped codes to the map '{other}', which is not known to this server",
                            map_url.as_deref().unwrap_or("given")
                        ))
                    })?;
                    self.translate_forward(
                        &other_map,
                        coding,
                        system,
                        code,
                        request,
                        found,
                        depth + 1,
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn translate_reverse(
    map: &Value,
    system: &str,
    code: &str,
    request: &TranslateRequest,
    found: &mut Found,
) {
    let map_url = str_of(map, "url").map(str::to_string);
    for group in array(map, "group") {
        if str_of(group, "target").map(strip_version) != Some(system) {
            continue;
        }
        let source_system = str_of(group, "source");
        if let Some(want) = request.target_system.as_deref() {
            if source_system.map(strip_version) != Some(strip_version(want)) {
                continue;
            }
        }
        let source_version = str_of(group, "sourceVersion");
        for element in array(group, "element") {
            let Some(element_code) = str_of(element, "code") else {
                continue;
            };
            for target in array(element, "target").filter(|t| str_of(t, "code") == Some(code)) {
                if !dependencies_met(target, &request.dependencies) {
                    found.needing_dependencies += 1;
                    continue;
                }
                let equivalence = str_of(target, "equivalence").unwrap_or("equivalent");
                found.push(Match {
                    equivalence: reversed(equivalence).to_string(),
                    concept: Some(coding_of(
                        source_system,
                        source_version,
                        element_code,
                        str_of(element, "display"),
                    )),
                    products: Vec::new(),
                    source: map_url.clone(),
                });
            }
        }
    }
}

/// Whether every `dependsOn` of a target is answered by a given dependency.
fn dependencies_met(target: &Value, given: &[Dependency]) -> bool {
    array(target, "dependsOn").all(|d| {
        let property = str_of(d, "property");
        let value = str_of(d, "value");
        let system = str_of(d, "system");
        given.iter().any(|g| {
            g.element.as_deref() == property
                && g.concept.iter().any(|c| {
                    c.code.as_deref() == value
                        && (system.is_none() || c.system.is_none() || c.system.as_deref() == system)
                })
        })
    })
}

fn products(target: &Value) -> Vec<Product> {
    array(target, "product")
        .filter_map(|p| {
            Some(Product {
                element: str_of(p, "property").map(str::to_string),
                concept: coding_of(
                    str_of(p, "system"),
                    None,
                    str_of(p, "value")?,
                    str_of(p, "display"),
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, Core, Resources};

    fn source() -> Resources {
        Resources::new([
            json!({
                "resourceType": "ConceptMap", "url": "http://example.org/cm", "version": "1",
                "sourceUri": "http://example.org/vs/a", "targetUri": "http://example.org/vs/b",
                "group": [{
                    "source": "http://example.org/a", "target": "http://example.org/b", "targetVersion": "2",
                    "element": [
                        {"code": "1", "display": "One", "target": [{"code": "uno", "display": "Uno", "equivalence": "equal"}]},
                        {"code": "2", "target": [
                            {"code": "dos", "equivalence": "wider"},
                            {"code": "deux", "equivalence": "narrower",
                             "dependsOn": [{"property": "http://example.org/lang", "value": "fr"}],
                             "product": [{"property": "http://example.org/note", "system": "http://example.org/notes", "value": "n"}]}
                        ]},
                        {"code": "3", "target": [{"equivalence": "unmatched"}]},
                        {"code": "4", "target": [{"code": "x", "equivalence": "disjoint"}]}
                    ],
                    "unmapped": {"mode": "fixed", "code": "other", "display": "Other"}
                }, {
                    "source": "http://example.org/a", "target": "http://example.org/c",
                    "element": [{"code": "1", "target": [{"code": "I", "equivalence": "equivalent"}]}],
                    "unmapped": {"mode": "provided"}
                }, {
                    "source": "http://example.org/a", "target": "http://example.org/d",
                    "unmapped": {"mode": "other-map", "url": "http://example.org/cm2"}
                }]
            }),
            json!({
                "resourceType": "ConceptMap", "url": "http://example.org/cm2",
                "group": [{"source": "http://example.org/a", "target": "http://example.org/d",
                    "element": [{"code": "9", "target": [{"code": "nine", "equivalence": "relatedto"}]}]}]
            }),
            json!({
                "resourceType": "ConceptMap", "url": "http://example.org/loop",
                "group": [{"source": "http://example.org/a", "unmapped": {"mode": "other-map", "url": "http://example.org/loop"}}]
            }),
            json!({
                "resourceType": "ConceptMap", "url": "http://example.org/dangling",
                "group": [{"source": "http://example.org/a", "unmapped": {"mode": "other-map", "url": "http://example.org/none"}}]
            }),
        ])
    }

    fn with_map(map: &str, coding: Coding) -> TranslateRequest {
        TranslateRequest {
            concept_map: Some(Definition::url(map)),
            ..TranslateRequest::coding(coding)
        }
    }

    fn concepts(t: &Translation) -> Vec<(String, String)> {
        t.matches
            .iter()
            .map(|m| {
                (
                    m.equivalence.clone(),
                    m.concept
                        .as_ref()
                        .and_then(|c| c.code.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn forward_translation() {
        let s = source();
        let t = Terminology::new(&s);
        let cm = "http://example.org/cm";
        let one = t
            .translate(&with_map(cm, Coding::new("http://example.org/a", "1")))
            .unwrap();
        assert!(one.result);
        assert_eq!(
            concepts(&one),
            pairs(&[("equal", "uno"), ("equivalent", "I")])
        );
        assert_eq!(
            one.matches[0].concept,
            Some(
                Coding::new("http://example.org/b", "uno")
                    .with_version("2")
                    .with_display("Uno")
            )
        );
        assert_eq!(one.matches[0].source.as_deref(), Some(cm));
        let two = t
            .translate(&with_map(cm, Coding::new("http://example.org/a", "2")))
            .unwrap();
        assert_eq!(
            concepts(&two),
            pairs(&[("wider", "dos"), ("equivalent", "2")])
        );
        let mut french = with_map(cm, Coding::new("http://example.org/a", "2"));
        french.dependencies = vec![Dependency {
            element: Some("http://example.org/lang".into()),
            concept: vec![Coding {
                code: Some("fr".into()),
                ..Default::default()
            }],
        }];
        french.target_system = Some("http://example.org/b".into());
        let fr = t.translate(&french).unwrap();
        assert_eq!(
            concepts(&fr),
            pairs(&[("wider", "dos"), ("narrower", "deux")])
        );
        assert_eq!(fr.matches[1].products[0].concept.code.as_deref(), Some("n"));
        let unmatched = t.translate(&with_map(cm, Coding::new("http://example.org/a", "3")));
        let mut r = unmatched.unwrap();
        r.matches.retain(|m| {
            m.concept.as_ref().and_then(|c| c.system.as_deref()) != Some("http://example.org/c")
        });
        assert_eq!(concepts(&r), pairs(&[("unmatched", "")]));
        let mut only_b = with_map(cm, Coding::new("http://example.org/a", "4"));
        only_b.target_system = Some("http://example.org/b".into());
        let disjoint = t.translate(&only_b).unwrap();
        assert!(!disjoint.result);
        assert!(disjoint.message.is_some());
    }

    #[test]
    fn unmapped_codes() {
        let s = source();
        let t = Terminology::new(&s);
        let nine = t
            .translate(&with_map(
                "http://example.org/cm",
                Coding::new("http://example.org/a", "9"),
            ))
            .unwrap();
        assert_eq!(
            concepts(&nine),
            pairs(&[
                ("inexact", "other"),
                ("equivalent", "9"),
                ("relatedto", "nine")
            ])
        );
        assert_eq!(
            nine.matches[1].concept.as_ref().unwrap().system.as_deref(),
            Some("http://example.org/c")
        );
        let looped = t
            .translate(&with_map(
                "http://example.org/loop",
                Coding::new("http://example.org/a", "1"),
            ))
            .unwrap_err();
        assert_eq!(looped.code(), IssueType::TooCostly);
        let dangling = t
            .translate(&with_map(
                "http://example.org/dangling",
                Coding::new("http://example.org/a", "1"),
            ))
            .unwrap_err();
        assert_eq!(dangling.code(), IssueType::NotSupported);
    }

    #[test]
    fn reverse_translation() {
        let s = source();
        let t = Terminology::new(&s);
        let mut r = with_map(
            "http://example.org/cm",
            Coding::new("http://example.org/b", "dos"),
        );
        r.reverse = true;
        let back = t.translate(&r).unwrap();
        assert_eq!(concepts(&back), pairs(&[("narrower", "2")]));
        let mut found = TranslateRequest::coding(Coding::new("http://example.org/b", "uno"));
        found.reverse = true;
        found.source = Some("http://example.org/vs/b".into());
        let back = t.translate(&found).unwrap();
        assert_eq!(concepts(&back), pairs(&[("equal", "1")]));
        assert_eq!(
            back.matches[0].concept.as_ref().unwrap().display.as_deref(),
            Some("One")
        );
    }

    #[test]
    fn maps_found_by_scope_and_system() {
        let s = source();
        let t = Terminology::new(&s);
        let mut r = TranslateRequest::coding(Coding::new("http://example.org/a", "1"));
        r.target = Some("http://example.org/vs/b".into());
        assert_eq!(
            concepts(&t.translate(&r).unwrap()),
            pairs(&[("equal", "uno"), ("equivalent", "I")])
        );
        r.target = Some("http://example.org/vs/zzz".into());
        let none = t.translate(&r).unwrap();
        assert!(!none.result && none.matches.is_empty());
        let p = none.to_parameters();
        assert_eq!(
            p["parameter"][0],
            json!({"name": "result", "valueBoolean": false})
        );
    }

    #[test]
    fn bad_inputs() {
        let s = source();
        let t = Terminology::new(&s);
        assert_eq!(
            t.translate(&TranslateRequest::default())
                .unwrap_err()
                .status(),
            400
        );
        let bare = TranslateRequest::coding(Coding {
            code: Some("1".into()),
            ..Default::default()
        });
        assert_eq!(t.translate(&bare).unwrap_err().status(), 400);
        let unknown = with_map(
            "http://example.org/none",
            Coding::new("http://example.org/a", "1"),
        );
        assert_eq!(t.translate(&unknown).unwrap_err().status(), 404);
        let not_a_map = TranslateRequest {
            concept_map: Some(Definition::resource(json!({"resourceType": "ValueSet"}))),
            ..TranslateRequest::coding(Coding::new("http://example.org/a", "1"))
        };
        assert_eq!(t.translate(&not_a_map).unwrap_err().status(), 400);
        let cc = TranslateRequest {
            codings: vec![
                Coding {
                    code: Some("x".into()),
                    ..Default::default()
                },
                Coding::new("http://example.org/a", "1"),
            ],
            concept_map: Some(Definition::url("http://example.org/cm")),
            ..Default::default()
        };
        assert!(t.translate(&cc).unwrap().result);
    }

    #[test]
    fn core_maps() {
        let t = Terminology::new(&Core);
        let r = with_map(
            "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2",
            Coding::new("http://hl7.org/fhir/administrative-gender", "other"),
        );
        let other = t.translate(&r).unwrap();
        assert!(other.result);
        assert_eq!(concepts(&other), pairs(&[("wider", "A"), ("wider", "O")]));
        let p = other.to_parameters();
        assert_eq!(
            p["parameter"][1]["part"],
            json!([
                {"name": "equivalence", "valueCode": "wider"},
                {"name": "concept", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0001", "code": "A"}},
                {"name": "source", "valueUri": "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"}
            ])
        );
        // Without a map: every core map from administrative-gender to v2 0001.
        let mut any = TranslateRequest::coding(Coding::new(
            "http://hl7.org/fhir/administrative-gender",
            "male",
        ));
        any.target_system = Some("http://terminology.hl7.org/CodeSystem/v2-0001".into());
        assert_eq!(
            concepts(&t.translate(&any).unwrap()),
            pairs(&[("equal", "M")])
        );
        // Reverse: v2 M back to administrative-gender.
        let mut back = TranslateRequest::coding(Coding::new(
            "http://terminology.hl7.org/CodeSystem/v2-0001",
            "M",
        ));
        back.reverse = true;
        let male = t.translate(&back).unwrap();
        assert!(male
            .matches
            .iter()
            .any(|m| m.concept.as_ref().and_then(|c| c.code.as_deref()) == Some("male")));
        // The fixed unmapped code of ConceptMap/101.
        let fixed = t
            .translate(&with_map(
                "http://hl7.org/fhir/ConceptMap/101",
                Coding::new("http://hl7.org/fhir/address-use", "billing"),
            ))
            .unwrap();
        assert!(fixed
            .matches
            .iter()
            .any(|m| m.concept.as_ref().and_then(|c| c.code.as_deref()) == Some("temp")));
        // A stored map chained before the core ones.
        let stored = Resources::new([
            json!({"resourceType": "ConceptMap", "url": "http://example.org/g",
            "group": [{"source": "http://hl7.org/fhir/administrative-gender", "target": "http://example.org/x",
                "element": [{"code": "male", "target": [{"code": "m", "equivalence": "equal"}]}]}]}),
        ]);
        let chain = Chain(stored, Core);
        let both = Terminology::new(&chain)
            .translate(&TranslateRequest::coding(Coding::new(
                "http://hl7.org/fhir/administrative-gender",
                "male",
            )))
            .unwrap();
        assert!(both.matches.len() >= 3, "{:?}", both.matches);
        assert_eq!(
            both.matches[0].source.as_deref(),
            Some("http://example.org/g")
        );
    }
}

//! `ValueSet/$validate-code` and `CodeSystem/$validate-code`: whether a code (a `code` +
//! `system`, a `coding`, or any coding of a `codeableConcept`) is in a value set or a code
//! system, with the display it should have.
//!
//! `result` is false only for the code itself: not in the value set or code system,
//! inactive where only active codes are admitted, abstract (not selectable) unless
//! `abstract` is true, or of another version than the one the value set holds. A display
//! that matches neither the concept's display nor any of its designations (ignoring case
//! and runs of whitespace) leaves `result` true, with a `message` and the right `display`.

use flint_fhir::{Error, Result};
use serde_json::{json, Value};

use crate::coding::{Coding, Definition};
use crate::compose::{entry_of, CodeSet, Evaluator};
use crate::expand::{value_set_name, Contains};
use crate::hierarchy::{Content, Hierarchy};
use crate::parameters;
use crate::{Source, Terminology};

/// The inputs of `ValueSet/$validate-code`.
#[derive(Clone, Debug)]
pub struct ValueSetValidateRequest {
    /// `url` (+ `valueSetVersion`), the `valueSet` given, or the instance invoked on.
    pub value_set: Definition,
    /// The coding to check (`code` + `system` + `systemVersion` + `display`, or `coding`), or
    /// the codings of `codeableConcept`.
    pub codings: Vec<Coding>,
    /// Whether `codings` are a `codeableConcept` (any valid one will do).
    pub codeable_concept: bool,
    /// `abstract`: whether abstract (not selectable) codes are valid here.
    pub abstract_allowed: bool,
    /// `displayLanguage`: the language of the display returned.
    pub display_language: Option<String>,
}

impl ValueSetValidateRequest {
    /// Checks one coding.
    pub fn coding(value_set: Definition, coding: Coding) -> ValueSetValidateRequest {
        ValueSetValidateRequest {
            value_set,
            codings: vec![coding],
            codeable_concept: false,
            abstract_allowed: false,
            display_language: None,
        }
    }

    /// Checks the codings of a CodeableConcept.
    pub fn codeable_concept(
        value_set: Definition,
        codings: Vec<Coding>,
    ) -> ValueSetValidateRequest {
        ValueSetValidateRequest {
            codings,
            codeable_concept: true,
            ..ValueSetValidateRequest::coding(value_set, Coding::default())
        }
    }
}

/// The inputs of `CodeSystem/$validate-code`.
#[derive(Clone, Debug)]
pub struct CodeSystemValidateRequest {
    /// `url` (+ `version`), the `codeSystem` given, or the instance invoked on.
    pub code_system: Definition,
    /// The coding to check, or the codings of `codeableConcept`. A coding without a system
    /// is taken to be of this code system.
    pub codings: Vec<Coding>,
    /// Whether `codings` are a `codeableConcept`.
    pub codeable_concept: bool,
    /// `abstract`.
    pub abstract_allowed: bool,
    /// `displayLanguage`.
    pub display_language: Option<String>,
}

impl CodeSystemValidateRequest {
    /// Checks one coding.
    pub fn coding(code_system: Definition, coding: Coding) -> CodeSystemValidateRequest {
        CodeSystemValidateRequest {
            code_system,
            codings: vec![coding],
            codeable_concept: false,
            abstract_allowed: false,
            display_language: None,
        }
    }

    /// Checks the codings of a CodeableConcept.
    pub fn codeable_concept(
        code_system: Definition,
        codings: Vec<Coding>,
    ) -> CodeSystemValidateRequest {
        CodeSystemValidateRequest {
            codings,
            codeable_concept: true,
            ..CodeSystemValidateRequest::coding(code_system, Coding::default())
        }
    }
}

/// The result of `$validate-code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub result: bool,
    /// Why the result is false, or warnings (a wrong display) when it is true.
    pub message: Option<String>,
    /// The display the code should have.
    pub display: Option<String>,
}

impl Validation {
    /// The output `Parameters`: `result`, `message`, `display`.
    pub fn to_parameters(&self) -> Value {
        let mut entries = vec![parameters::value(
            "result",
            "valueBoolean",
            json!(self.result),
        )];
        if let Some(m) = &self.message {
            entries.push(parameters::string("message", m));
        }
        if let Some(d) = &self.display {
            entries.push(parameters::string("display", d));
        }
        parameters::resource(entries)
    }
}

/// The check of one coding.
struct Checked {
    valid: bool,
    message: Option<String>,
    display: Option<String>,
}

impl Checked {
    fn invalid(message: String) -> Checked {
        Checked {
            valid: false,
            message: Some(message),
            display: None,
        }
    }
}

fn normalized(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Checks a coding against the entry it was found as: abstract, version, display.
fn check_entry(
    coding: &Coding,
    e: &Contains,
    h: Option<&Hierarchy>,
    abstract_allowed: bool,
    language: Option<&str>,
) -> Checked {
    let label = coding.label();
    let display = language
        .and_then(|l| e.display_in(l))
        .or(e.display.as_deref())
        .map(str::to_string);
    if e.abstract_ && !abstract_allowed {
        return Checked {
            display,
            ..Checked::invalid(format!(
                "the code '{label}' is abstract (not selectable), and abstract codes are not valid here"
            ))
        };
    }
    if let (Some(want), Some(have)) = (&coding.version, &e.version) {
        if want != have {
            return Checked {
                display,
                ..Checked::invalid(format!(
                    "the code '{label}' is in version '{have}' of its code system, not version '{want}'"
                ))
            };
        }
    }
    let mut message = None;
    if let Some(given) = coding.display.as_deref().filter(|d| !d.trim().is_empty()) {
        let given = normalized(given);
        let known = h.and_then(|h| h.concept(&e.code));
        let mut candidates = e
            .display
            .iter()
            .chain(e.designations.iter().map(|d| &d.value))
            .chain(known.into_iter().flat_map(|k| {
                k.display
                    .iter()
                    .chain(k.designations.iter().map(|d| &d.value))
            }));
        let has_any = e.display.is_some()
            || !e.designations.is_empty()
            || known.is_some_and(|k| k.display.is_some());
        if has_any && !candidates.any(|c| normalized(c) == given) {
            message = Some(format!(
                "the display '{}' is not a valid display for the code '{label}'{}",
                coding.display.as_deref().unwrap_or(""),
                display
                    .as_deref()
                    .map(|d| format!("; it should be '{d}'"))
                    .unwrap_or_default()
            ));
        }
    }
    Checked {
        valid: true,
        message,
        display,
    }
}

/// One answer from the checks of every coding: valid when any is.
fn combine(checks: Vec<Checked>) -> Validation {
    let join = |checks: &[&Checked]| {
        let messages: Vec<&str> = checks.iter().filter_map(|c| c.message.as_deref()).collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    };
    let valid: Vec<&Checked> = checks.iter().filter(|c| c.valid).collect();
    if let Some(first) = valid.first() {
        return Validation {
            result: true,
            message: join(&valid),
            display: first.display.clone(),
        };
    }
    let all: Vec<&Checked> = checks.iter().collect();
    Validation {
        result: false,
        message: join(&all),
        display: checks.iter().find_map(|c| c.display.clone()),
    }
}

impl<S: Source + ?Sized> Terminology<'_, S> {
    /// `ValueSet/$validate-code`.
    ///
    /// # Errors
    /// Invalid without a code, or (for a single coding) without a system; not found for an
    /// unknown value set; not supported when the answer depends on a code system not held
    /// (a code system included whole, or a filter on one).
    pub fn validate_value_set_code(&self, request: &ValueSetValidateRequest) -> Result<Validation> {
        if request.codings.is_empty() {
            return Err(Error::invalid(
                "$validate-code needs a code, a coding or a codeableConcept",
            ));
        }
        let vs = self.value_set_of(&request.value_set)?;
        let (set, mut ev) = self.member_set(&vs)?;
        let name = value_set_name(&vs);
        let mut checks = Vec::new();
        for coding in &request.codings {
            let (system, code) = match coding.require("$validate-code") {
                Ok(pair) => pair,
                Err(e) if request.codeable_concept => {
                    checks.push(Checked::invalid(
                        e.issues
                            .first()
                            .map(|i| i.diagnostics.clone())
                            .unwrap_or_default(),
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            checks.push(in_value_set(
                &mut ev, &set, &name, coding, system, code, request,
            )?);
        }
        Ok(combine(checks))
    }

    /// `CodeSystem/$validate-code`.
    ///
    /// # Errors
    /// Invalid without a code; not found for an unknown code system; not supported for a code
    /// system whose concepts are not held, or a code not found in one held only in part.
    pub fn validate_code_system_code(
        &self,
        request: &CodeSystemValidateRequest,
    ) -> Result<Validation> {
        if request.codings.is_empty() {
            return Err(Error::invalid(
                "$validate-code needs a code, a coding or a codeableConcept",
            ));
        }
        let h = self.code_system_of(&request.code_system)?;
        if h.content == Content::NotPresent {
            h.require_complete()?;
        }
        let language = request.display_language.as_deref();
        let mut checks = Vec::new();
        for coding in &request.codings {
            let Some(code) = coding.code.as_deref().filter(|c| !c.is_empty()) else {
                if request.codeable_concept {
                    checks.push(Checked::invalid("a coding has no code".into()));
                    continue;
                }
                return Err(Error::invalid("$validate-code: a code is needed"));
            };
            let label = format!("{}#{code}", h.system);
            if coding.system.as_deref().is_some_and(|s| s != h.system) {
                checks.push(Checked::invalid(format!(
                    "the coding '{}' is not of the code system '{}'",
                    coding.label(),
                    h.system
                )));
                continue;
            }
            let Some(c) = h.concept(code) else {
                if h.content != Content::Complete {
                    return Err(Error::not_supported(format!(
                        "the code system '{}' is held here only in part, and the code '{code}' is not in that part",
                        h.system
                    )));
                }
                checks.push(Checked::invalid(format!(
                    "the code '{code}' is not in the code system '{}'",
                    h.system
                )));
                continue;
            };
            let mut check = check_entry(
                coding,
                &entry_of(&h, c),
                Some(&h),
                request.abstract_allowed,
                language,
            );
            if check.valid && c.inactive {
                let note = format!("the code '{label}' is inactive");
                check.message = Some(match check.message {
                    Some(m) => format!("{m}; {note}"),
                    None => note,
                });
            }
            checks.push(check);
        }
        Ok(combine(checks))
    }
}

/// Checks one coding against the members of a value set.
fn in_value_set<S: Source + ?Sized>(
    ev: &mut Evaluator<'_, '_, S>,
    set: &CodeSet,
    name: &str,
    coding: &Coding,
    system: &str,
    code: &str,
    request: &ValueSetValidateRequest,
) -> Result<Checked> {
    let label = coding.label();
    let language = request.display_language.as_deref();
    let abstract_allowed = request.abstract_allowed;
    let not_in = || {
        Checked::invalid(format!(
            "the code '{label}' is not in the value set '{name}'"
        ))
    };
    let version = set
        .find(system, code)
        .and_then(|e| e.version.clone())
        .or_else(|| set.whole_of(system).and_then(|w| w.version.clone()));
    let h = ev.hierarchy(system, version.as_deref())?;
    // The code as the code system writes it (codes of a case-insensitive system may differ
    // in case).
    let known = h.as_ref().and_then(|h| h.concept(code));
    let code = known.map_or(code, |k| k.code.as_str());
    if let Some(e) = set.find(system, code) {
        if let Some(h) = h.as_ref().filter(|h| h.content == Content::Complete) {
            if known.is_none() {
                return Ok(Checked::invalid(format!(
                    "the code '{label}' is listed by the value set '{name}' but is not in the code system '{}'",
                    h.system
                )));
            }
        }
        return Ok(check_entry(
            coding,
            e,
            h.as_deref(),
            abstract_allowed,
            language,
        ));
    }
    let Some(whole) = set.whole_of(system) else {
        // Not among the codes known to be in; the rest could not be evaluated.
        if let Some(why) = &set.partial {
            return Err(Error::not_supported(format!(
                "{why}; so whether '{label}' is in the value set '{name}' cannot be told"
            )));
        }
        return Ok(not_in());
    };
    let Some(h) = h.as_ref() else {
        return Err(Error::not_supported(format!(
            "the value set '{name}' includes all of the code system '{system}', which is not known to this server, so its codes cannot be validated"
        )));
    };
    match known {
        Some(c) if whole.active_only && c.inactive => Ok(Checked::invalid(format!(
            "the code '{label}' is inactive, and the value set '{name}' holds only active codes"
        ))),
        Some(c) => Ok(check_entry(
            coding,
            &entry_of(h, c),
            Some(h),
            abstract_allowed,
            language,
        )),
        None if set.partial.is_some() => Err(Error::not_supported(format!(
            "{}; so whether '{label}' is in the value set '{name}' cannot be told",
            set.partial.as_deref().unwrap_or_default()
        ))),
        None if h.content == Content::Complete => Ok(Checked::invalid(format!(
            "the code '{label}' is not in the code system '{system}', so not in the value set '{name}'"
        ))),
        None => {
            h.require_complete()?;
            Ok(not_in())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, Resources};
    use flint_fhir::IssueType;

    fn source() -> Resources {
        Resources::new([
            json!({
                "resourceType": "CodeSystem", "url": "http://example.org/cs", "version": "1",
                "content": "complete",
                "concept": [
                    {"code": "group", "display": "Group", "property": [{"code": "notSelectable", "valueBoolean": true}],
                     "concept": [{"code": "a", "display": "Apple", "designation": [{"language": "de", "value": "Apfel"}]}]},
                    {"code": "old", "display": "Old", "property": [{"code": "inactive", "valueBoolean": true}]}
                ]
            }),
            json!({"resourceType": "CodeSystem", "url": "http://example.org/fragment", "content": "fragment",
                   "concept": [{"code": "f", "display": "F"}]}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/all",
                   "compose": {"include": [{"system": "http://example.org/cs"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/active",
                   "compose": {"inactive": false, "include": [{"system": "http://example.org/cs"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/snomed",
            "compose": {"include": [
                {"system": "http://snomed.info/sct", "concept": [{"code": "22298006", "display": "Myocardial infarction"}]},
                {"system": "http://example.org/cs", "concept": [{"code": "ghost"}]}
            ]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/all-snomed",
                   "compose": {"include": [{"system": "http://snomed.info/sct"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/fragment",
                   "compose": {"include": [{"system": "http://example.org/fragment"}]}}),
        ])
    }

    fn vs_check(t: &Terminology<'_, Resources>, url: &str, coding: Coding) -> Result<Validation> {
        t.validate_value_set_code(&ValueSetValidateRequest::coding(
            Definition::url(url),
            coding,
        ))
    }

    #[test]
    fn value_set_codes() {
        let s = source();
        let t = Terminology::new(&s);
        let all = "http://example.org/vs/all";
        let ok = vs_check(&t, all, Coding::new("http://example.org/cs", "a")).unwrap();
        assert_eq!(
            ok,
            Validation {
                result: true,
                message: None,
                display: Some("Apple".into())
            }
        );
        let missing = vs_check(&t, all, Coding::new("http://example.org/cs", "zz")).unwrap();
        assert!(!missing.result);
        assert!(missing.message.unwrap().contains("not in the code system"));
        let other = vs_check(&t, all, Coding::new("http://example.org/other", "a")).unwrap();
        assert!(!other.result);
        let abstract_ = vs_check(&t, all, Coding::new("http://example.org/cs", "group")).unwrap();
        assert!(!abstract_.result);
        let mut allowed = ValueSetValidateRequest::coding(
            Definition::url(all),
            Coding::new("http://example.org/cs", "group"),
        );
        allowed.abstract_allowed = true;
        assert!(t.validate_value_set_code(&allowed).unwrap().result);
        assert!(
            vs_check(&t, all, Coding::new("http://example.org/cs", "old"))
                .unwrap()
                .result
        );
        let inactive = vs_check(
            &t,
            "http://example.org/vs/active",
            Coding::new("http://example.org/cs", "old"),
        )
        .unwrap();
        assert!(!inactive.result);
        let version = vs_check(
            &t,
            all,
            Coding::new("http://example.org/cs", "a").with_version("2"),
        )
        .unwrap();
        assert!(!version.result);
    }

    #[test]
    fn displays_warn_but_do_not_fail() {
        let s = source();
        let t = Terminology::new(&s);
        let all = "http://example.org/vs/all";
        let wrong = vs_check(
            &t,
            all,
            Coding::new("http://example.org/cs", "a").with_display("Pear"),
        )
        .unwrap();
        assert!(wrong.result);
        assert_eq!(wrong.display.as_deref(), Some("Apple"));
        assert!(wrong.message.unwrap().contains("'Pear'"));
        let other_case = vs_check(
            &t,
            all,
            Coding::new("http://example.org/cs", "a").with_display(" apple "),
        )
        .unwrap();
        assert_eq!(other_case.message, None);
        let designation = vs_check(
            &t,
            all,
            Coding::new("http://example.org/cs", "a").with_display("Apfel"),
        )
        .unwrap();
        assert_eq!(designation.message, None);
        let mut de = ValueSetValidateRequest::coding(
            Definition::url(all),
            Coding::new("http://example.org/cs", "a"),
        );
        de.display_language = Some("de".into());
        assert_eq!(
            t.validate_value_set_code(&de).unwrap().display.as_deref(),
            Some("Apfel")
        );
    }

    #[test]
    fn codes_not_held_are_answered_only_when_listed() {
        let s = source();
        let t = Terminology::new(&s);
        let listed = vs_check(
            &t,
            "http://example.org/vs/snomed",
            Coding::new("http://snomed.info/sct", "22298006"),
        )
        .unwrap();
        assert!(listed.result);
        assert_eq!(listed.display.as_deref(), Some("Myocardial infarction"));
        let absent = vs_check(
            &t,
            "http://example.org/vs/snomed",
            Coding::new("http://snomed.info/sct", "1"),
        )
        .unwrap();
        assert!(!absent.result);
        let ghost = vs_check(
            &t,
            "http://example.org/vs/snomed",
            Coding::new("http://example.org/cs", "ghost"),
        )
        .unwrap();
        assert!(
            !ghost.result,
            "a listed code the complete code system lacks is not valid"
        );
        let whole = vs_check(
            &t,
            "http://example.org/vs/all-snomed",
            Coding::new("http://snomed.info/sct", "1"),
        )
        .unwrap_err();
        assert_eq!(whole.code(), IssueType::NotSupported);
        assert!(
            vs_check(
                &t,
                "http://example.org/vs/fragment",
                Coding::new("http://example.org/fragment", "f")
            )
            .unwrap()
            .result
        );
        let unknown = vs_check(
            &t,
            "http://example.org/vs/fragment",
            Coding::new("http://example.org/fragment", "g"),
        )
        .unwrap_err();
        assert_eq!(unknown.code(), IssueType::NotSupported);
    }

    #[test]
    fn partly_evaluable_value_sets() {
        let s = Resources::new([
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs/mixed",
            "compose": {"include": [
                {"system": "http://snomed.info/sct", "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}]},
                {"system": "http://snomed.info/sct", "concept": [{"code": "22298006"}]}
            ]}}),
        ]);
        let t = Terminology::new(&s);
        let mixed = "http://example.org/vs/mixed";
        let listed = Coding::new("http://snomed.info/sct", "22298006");
        assert!(vs_check(&t, mixed, listed).unwrap().result);
        let other = vs_check(&t, mixed, Coding::new("http://snomed.info/sct", "1")).unwrap_err();
        assert_eq!(other.code(), IssueType::NotSupported);
        assert!(other.to_string().contains("cannot be told"), "{other}");
        // Search membership needs every code: refused.
        assert!(t.members(mixed).is_err());
    }

    #[test]
    fn codeable_concepts_need_one_valid_coding() {
        let s = source();
        let t = Terminology::new(&s);
        let all = Definition::url("http://example.org/vs/all");
        let cc = vec![
            Coding {
                code: Some("x".into()),
                ..Default::default()
            },
            Coding::new("http://example.org/other", "a"),
            Coding::new("http://example.org/cs", "a"),
        ];
        let v = t
            .validate_value_set_code(&ValueSetValidateRequest::codeable_concept(all.clone(), cc))
            .unwrap();
        assert!(v.result);
        assert_eq!(v.display.as_deref(), Some("Apple"));
        let none = vec![Coding::new("http://example.org/other", "a")];
        let v = t
            .validate_value_set_code(&ValueSetValidateRequest::codeable_concept(
                all.clone(),
                none,
            ))
            .unwrap();
        assert!(!v.result && v.message.is_some());
        let empty = ValueSetValidateRequest::codeable_concept(all.clone(), Vec::new());
        assert_eq!(t.validate_value_set_code(&empty).unwrap_err().status(), 400);
        let no_system = ValueSetValidateRequest::coding(
            all,
            Coding {
                code: Some("a".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            t.validate_value_set_code(&no_system).unwrap_err().status(),
            400
        );
        let unknown = ValueSetValidateRequest::coding(
            Definition::url("http://example.org/none"),
            Coding::new("s", "c"),
        );
        assert_eq!(
            t.validate_value_set_code(&unknown).unwrap_err().status(),
            404
        );
    }

    #[test]
    fn code_system_codes() {
        let s = source();
        let t = Terminology::new(&s);
        let cs = Definition::url("http://example.org/cs");
        let check = |coding: Coding| {
            t.validate_code_system_code(&CodeSystemValidateRequest::coding(cs.clone(), coding))
        };
        let bare = Coding {
            code: Some("a".into()),
            display: Some("Apple".into()),
            ..Default::default()
        };
        assert_eq!(
            check(bare).unwrap(),
            Validation {
                result: true,
                message: None,
                display: Some("Apple".into())
            }
        );
        assert!(
            !check(Coding::new("http://example.org/cs", "zz"))
                .unwrap()
                .result
        );
        assert!(
            !check(Coding::new("http://example.org/other", "a"))
                .unwrap()
                .result
        );
        let old = check(Coding::new("http://example.org/cs", "old")).unwrap();
        assert!(old.result && old.message.unwrap().contains("inactive"));
        let wrong = check(Coding::new("http://example.org/cs", "a").with_display("Pear")).unwrap();
        assert!(wrong.result && wrong.message.is_some());
        assert_eq!(check(Coding::default()).unwrap_err().status(), 400);
        let fragment = Definition::url("http://example.org/fragment");
        let f = |code: &str| {
            t.validate_code_system_code(&CodeSystemValidateRequest::coding(
                fragment.clone(),
                Coding::new("http://example.org/fragment", code),
            ))
        };
        assert!(f("f").unwrap().result);
        assert_eq!(f("g").unwrap_err().code(), IssueType::NotSupported);
        let unknown = CodeSystemValidateRequest::coding(
            Definition::url("http://example.org/none"),
            Coding::new("s", "c"),
        );
        assert_eq!(
            t.validate_code_system_code(&unknown).unwrap_err().status(),
            404
        );
        let cc = CodeSystemValidateRequest::codeable_concept(
            cs,
            vec![
                Coding::new("http://example.org/other", "x"),
                Coding::new("http://example.org/cs", "a"),
            ],
        );
        assert!(t.validate_code_system_code(&cc).unwrap().result);
    }

    #[test]
    fn core_codes() {
        let t = Terminology::new(&Core);
        let gender = Definition::url("http://hl7.org/fhir/ValueSet/administrative-gender");
        let v = t
            .validate_value_set_code(&ValueSetValidateRequest::coding(
                gender.clone(),
                Coding::new("http://hl7.org/fhir/administrative-gender", "male"),
            ))
            .unwrap();
        assert_eq!(v.display.as_deref(), Some("Male"));
        assert!(v.result);
        let v = t
            .validate_value_set_code(&ValueSetValidateRequest::coding(
                gender,
                Coding::new("http://hl7.org/fhir/administrative-gender", "M"),
            ))
            .unwrap();
        assert!(!v.result);
        let params = v.to_parameters();
        assert_eq!(
            params["parameter"][0],
            json!({"name": "result", "valueBoolean": false})
        );
        assert_eq!(params["parameter"][1]["name"], "message");
        let snomed = Definition::url("http://snomed.info/sct");
        let err = t
            .validate_code_system_code(&CodeSystemValidateRequest::coding(
                snomed,
                Coding::new("http://snomed.info/sct", "22298006"),
            ))
            .unwrap_err();
        assert_eq!(err.code(), IssueType::NotSupported);
    }
}

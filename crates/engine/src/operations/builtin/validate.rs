//! `$validate` (R4 `Resource-validate`, type and instance level): checks a resource as a write
//! would — structure, types and cardinality — and then as `flint-validate` does: the FHIRPath
//! invariants of the R4 definitions, required bindings (against the value sets this server
//! can expand), and profiles — the one named by `profile` and those the resource claims in
//! `meta.profile` — stored here or core, with a snapshot or only a differential. Answers an
//! OperationOutcome that lists every problem with its location, `200` whether or not the
//! resource is valid (a 4xx means the validation itself could not be done).

use std::sync::Arc;

use flint_fhir::{Error, Issue, IssueSeverity, IssueType, Result};
use flint_store::Store;
use serde_json::{json, Value};

use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Validate;

/// The outcome: its issues, or one informational issue when there are none.
fn outcome(issues: Vec<Issue>) -> Value {
    if issues.is_empty() {
        return json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": "no issues found"}]
        });
    }
    Error::from_issues(issues).to_operation_outcome()
}

/// The structural check's problems as issues (a server fault is an error of the call).
fn structural(result: Result<()>) -> Result<Vec<Issue>> {
    match result {
        Ok(()) => Ok(Vec::new()),
        Err(e) if e.is_server_fault() => Err(e),
        Err(e) => Ok(e.issues),
    }
}

/// The deep checks of a structurally sound resource: invariants and bindings, then each
/// profile asked for or claimed.
fn deep<S: Store>(
    engine: &Arc<Engine<S>>,
    resource: &Value,
    asked: Option<&str>,
) -> Result<Vec<Issue>> {
    let validator = flint_validate::Validator::core();
    let bindings = crate::terminology::Bindings::new(engine);
    let mut issues = validator.check(resource, &bindings);
    let stored = crate::terminology::Stored(engine.as_ref());
    let resolve = |url: &str| -> Option<Value> {
        let (url, version) = match url.split_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (url, None),
        };
        stored
            .find("StructureDefinition", url, version)
            .ok()
            .flatten()
            .map(|r| (*r).clone())
            .or_else(|| flint_fhir::definitions::by_url(url).cloned())
    };
    let claimed = resource["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|p| (p.to_string(), false));
    let mut profiles: Vec<(String, bool)> =
        asked.map(|p| (p.to_string(), true)).into_iter().collect();
    for (p, _) in claimed {
        if !profiles.iter().any(|(q, _)| *q == p) {
            profiles.push((p, false));
        }
    }
    for (url, explicit) in profiles {
        let Some(profile) = resolve(&url) else {
            if explicit {
                return Err(Error::not_found(format!(
                    "the profile '{url}' is not known to this server"
                ))
                .at("profile"));
            }
            let mut unknown = Issue::error(
                IssueType::NotFound,
                format!("the resource claims the profile '{url}', which this server does not know: not checked"),
            )
            .at("meta.profile");
            unknown.severity = IssueSeverity::Warning;
            issues.push(unknown);
            continue;
        };
        match validator.check_profile(resource, &profile, &resolve, &bindings) {
            Ok(found) => issues.extend(found),
            Err(e) if explicit => return Err(e.at("profile")),
            Err(e) => issues.extend(e.issues.into_iter().map(|mut i| {
                i.severity = IssueSeverity::Warning;
                i
            })),
        }
    }
    Ok(issues)
}

impl<S: Store> Operation<S> for Validate {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-validate", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let rt = call.target.resource_type()?.to_string();
        let mode = call.inputs.str("mode").map(str::to_string);
        let profile = call.inputs.str("profile").map(str::to_string);
        let resource = call.inputs.take_resource("resource");
        let checked = match (mode.as_deref(), resource) {
            (Some("delete"), _) => {
                if call.target.level != Level::Instance {
                    return Err(Error::invalid(
                        "mode delete validates the deletion of an existing resource: invoke it on [type]/[id]/$validate",
                    )
                    .at("mode"));
                }
                // Any resource may be deleted; a deleted one is already gone.
                call.target.resource().map(|_| ())
            }
            (_, None) => {
                return Err(Error::invalid(
                    "$validate needs the resource to check (the parameter 'resource', or the resource as the body, sent with POST)",
                )
                .at("resource"))
            }
            (None | Some("create"), Some(resource)) => {
                return full(engine, &rt, &resource, profile.as_deref())
            }
            (Some("update"), Some(resource)) => {
                let id = resource["id"].as_str().map(str::to_string);
                match (&id, &call.target.id) {
                    (None, _) => Err(Error::invalid("an update needs the resource's id").at(format!("{rt}.id"))),
                    (Some(given), Some(target)) if given != target => Err(Error::invalid(format!(
                        "the resource's id '{given}' is not the id of {rt}/{target}"
                    ))
                    .at(format!("{rt}.id"))),
                    _ => return full(engine, &rt, &resource, profile.as_deref()),
                }
            }
            (Some(other), _) => {
                return Err(Error::invalid(format!(
                    "mode '{other}' is not one of create, update, delete"
                ))
                .at("mode"))
            }
        };
        Ok(Output::resource(outcome(structural(checked)?)))
    }
}

/// The structural check, then — when it passes — the deep ones.
fn full<S: Store>(
    engine: &Arc<Engine<S>>,
    rt: &str,
    resource: &Value,
    profile: Option<&str>,
) -> Result<Output> {
    let mut issues = structural(engine.check_resource(rt, resource))?;
    if issues.is_empty() {
        issues = deep(engine, resource, profile)?;
    }
    Ok(Output::resource(outcome(issues)))
}

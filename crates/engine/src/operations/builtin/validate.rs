//! `$validate` (R4 `Resource-validate`, type and instance level): checks a resource as a write
//! would, without writing it, and answers an OperationOutcome that lists every problem with
//! its location, `200` whether or not the resource is valid (a 4xx means the validation
//! itself could not be done).

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::{json, Value};

use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Validate;

/// The outcome of a check: its issues, or one informational issue when there are none.
fn outcome(result: Result<()>) -> Result<Value> {
    match result {
        Ok(()) => Ok(json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": "no issues found"}]
        })),
        Err(e) if e.is_server_fault() => Err(e),
        Err(e) => Ok(e.to_operation_outcome()),
    }
}

impl<S: Store> Operation<S> for Validate {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-validate", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let rt = call.target.resource_type()?.to_string();
        let mode = call.inputs.str("mode").map(str::to_string);
        if let Some(profile) = call.inputs.str("profile") {
            let core = format!("http://hl7.org/fhir/StructureDefinition/{rt}");
            if profile.split('|').next() != Some(core.as_str()) {
                return Err(Error::not_supported(format!(
                    "validation against the profile '{profile}' is not supported yet; only the core definition of {rt}"
                ))
                .at("profile"));
            }
        }
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
            (None | Some("create"), Some(resource)) => engine.check_resource(&rt, &resource),
            (Some("update"), Some(resource)) => {
                let id = resource["id"].as_str().map(str::to_string);
                match (&id, &call.target.id) {
                    (None, _) => Err(Error::invalid("an update needs the resource's id").at(format!("{rt}.id"))),
                    (Some(given), Some(target)) if given != target => Err(Error::invalid(format!(
                        "the resource's id '{given}' is not the id of {rt}/{target}"
                    ))
                    .at(format!("{rt}.id"))),
                    _ => engine.check_resource(&rt, &resource),
                }
            }
            (Some(other), _) => {
                return Err(Error::invalid(format!(
                    "mode '{other}' is not one of create, update, delete"
                ))
                .at("mode"))
            }
        };
        Ok(Output::resource(outcome(checked)?))
    }
}

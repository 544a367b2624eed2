//! `$export` (the Bulk Data Access IG's kick-off, at system level, on `Patient`, and on
//! `Group/[id]`): starts an export job and answers `202 Accepted` with its status URL (the IG
//! requires `Prefer: respond-async`). Polling the status URL gives `202` with `X-Progress`,
//! then `200` with the manifest; the files are served at `[base]/__export/[job]/[file]`;
//! `DELETE` on the status URL cancels the export and removes its files. See `jobs::export`.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::{json, Value};

use crate::jobs::export::ExportRequest;
use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

/// The output formats asked for by `_outputFormat` that mean NDJSON.
const NDJSON_NAMES: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

fn definition(id: &str, level: &str, description: &str) -> Definition {
    let (system, type_level, instance, resource) = match level {
        "system" => (true, false, false, json!(["Resource"])),
        "patient" => (false, true, false, json!(["Patient"])),
        _ => (false, false, true, json!(["Group"])),
    };
    let base = match level {
        "system" => "export",
        "patient" => "patient-export",
        _ => "group-export",
    };
    Definition::flint(json!({
        "id": id,
        "name": format!("{}Export", match level { "system" => "System", "patient" => "Patient", _ => "Group" }),
        "title": "Bulk Data export",
        "description": description,
        "base": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{base}"),
        "code": "export",
        "system": system,
        "type": type_level,
        "instance": instance,
        "resource": resource,
        "affectsState": false,
        "parameter": [
            {"name": "_outputFormat", "use": "in", "min": 0, "max": "1", "type": "string",
             "documentation": "application/fhir+ndjson (the default), application/ndjson or ndjson."},
            {"name": "_since", "use": "in", "min": 0, "max": "1", "type": "instant",
             "documentation": "Only resources changed at or after this instant."},
            {"name": "_type", "use": "in", "min": 0, "max": "*", "type": "string",
             "documentation": "The resource types to export, comma-separated."},
            {"name": "_typeFilter", "use": "in", "min": 0, "max": "*", "type": "string",
             "documentation": "Type?search: for that type, only the resources matching one of its searches."}
        ]
    }))
}

pub(crate) struct SystemExport;
pub(crate) struct PatientExport;
pub(crate) struct GroupExport;

impl<S: Store> Operation<S> for SystemExport {
    fn definition(&self) -> Definition {
        definition(
            "export",
            "system",
            "Exports every current resource (or those of the types asked for) as NDJSON files, one series per type, following the Bulk Data Access IG. Needs Prefer: respond-async.",
        )
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        kick_off(engine, call, "system")
    }

    fn runs_as_job(&self) -> bool {
        true
    }
}

impl<S: Store> Operation<S> for PatientExport {
    fn definition(&self) -> Definition {
        definition(
            "patient-export",
            "patient",
            "Exports the Patient compartment of every patient as NDJSON files, following the Bulk Data Access IG. Needs Prefer: respond-async.",
        )
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        kick_off(engine, call, "patient")
    }

    fn runs_as_job(&self) -> bool {
        true
    }
}

impl<S: Store> Operation<S> for GroupExport {
    fn definition(&self) -> Definition {
        definition(
            "group-export",
            "group",
            "Exports the Patient compartment of every patient the Group lists as a member, as NDJSON files, following the Bulk Data Access IG. Needs Prefer: respond-async.",
        )
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        kick_off(engine, call, "group")
    }

    fn runs_as_job(&self) -> bool {
        true
    }
}

/// Checks a kick-off request and starts the export.
fn kick_off<S: Store>(engine: &Arc<Engine<S>>, call: &mut Call<'_>, level: &str) -> Result<Output> {
    if !call.headers.respond_async() {
        return Err(Error::invalid(
            "$export runs in the background: send it with the header Prefer: respond-async",
        ));
    }
    let inputs = &call.inputs;
    if let Some(format) = inputs.str("_outputFormat") {
        if !NDJSON_NAMES.contains(&format) {
            return Err(Error::not_supported(format!(
                "_outputFormat '{format}' is not supported; use application/fhir+ndjson"
            ))
            .at("_outputFormat"));
        }
    }
    let model = engine.model();
    let compartment = (level != "system").then(super::compartment_type_names);
    let mut types = Vec::new();
    for t in inputs
        .strs("_type")
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if t.is_empty() {
            continue;
        }
        if !model.is_resource_type(t) {
            return Err(
                Error::invalid(format!("_type names '{t}', which is not a resource type"))
                    .at("_type"),
            );
        }
        if compartment
            .as_ref()
            .is_some_and(|c| !c.iter().any(|x| x == t))
        {
            return Err(Error::invalid(format!(
                "_type names '{t}', which is not in the Patient compartment: a {level}-level export holds only that"
            ))
            .at("_type"));
        }
        if !types.iter().any(|x: &String| x == t) {
            types.push(t.to_string());
        }
    }
    let mut type_filters = Vec::new();
    for filter in inputs.strs("_typeFilter") {
        let (rt, query) = filter.split_once('?').unwrap_or((filter, ""));
        if !model.is_resource_type(rt) || query.is_empty() {
            return Err(Error::invalid(format!(
                "_typeFilter '{filter}' is not Type?search-parameters"
            ))
            .at("_typeFilter"));
        }
        if !types.is_empty() && !types.iter().any(|t| t == rt) {
            return Err(
                Error::invalid(format!("_typeFilter names {rt}, which _type does not"))
                    .at("_typeFilter"),
            );
        }
        // Checked now, so that a bad filter is a 400 here rather than a failed export.
        let params = crate::search::parse_query(query);
        let limits = engine.limits();
        engine
            .parse_search(
                call.ctx,
                rt,
                &params,
                true,
                limits.max_count,
                limits.default_count,
            )
            .map_err(|e| e.at("_typeFilter"))?;
        type_filters.push((rt.to_string(), query.to_string()));
    }
    let since = match inputs.str("_since") {
        None => None,
        Some(s) => Some(
            flint_fhir::datetime::parse_instant(s)
                .ok_or_else(|| {
                    Error::invalid(format!("_since '{s}' is not an instant")).at("_since")
                })?
                .start_micros(),
        ),
    };
    let group = match call.target.level {
        Level::Instance => {
            let id = call.target.id.clone().unwrap_or_default();
            engine.group_members(&id)?;
            Some(id)
        }
        _ => None,
    };
    let path = match (level, &group) {
        ("system", _) => "$export".to_string(),
        ("patient", _) => "Patient/$export".to_string(),
        (_, g) => format!("Group/{}/$export", g.as_deref().unwrap_or_default()),
    };
    let query: Vec<String> = call
        .inputs
        .entries("_outputFormat")
        .chain(call.inputs.entries("_since"))
        .chain(call.inputs.entries("_type"))
        .chain(call.inputs.entries("_typeFilter"))
        .filter_map(|e| {
            let name = e["name"].as_str()?;
            let value = e
                .as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))?
                .1;
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!(
                "{name}={}",
                percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
            ))
        })
        .collect();
    let request_url = if query.is_empty() {
        format!("{}/{path}", call.ctx.base_url)
    } else {
        format!("{}/{path}?{}", call.ctx.base_url, query.join("&"))
    };
    let request = ExportRequest {
        level: level.to_string(),
        group,
        types,
        since,
        type_filters,
        request_url,
    };
    let id = crate::lanes::block_on(engine.start_export(call.ctx, &request))?;
    Ok(Output::Response(crate::jobs::accepted(
        call.ctx,
        &id,
        "just started",
    )))
}

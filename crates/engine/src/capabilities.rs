//! The CapabilityStatement, generated from what the server does: every interaction listed
//! here is routed and tested.

use std::sync::Arc;

use flint_fhir::model::Model;
use flint_search::Registry;
use serde_json::{json, Value};

use crate::operations::{Definition, Level};

const TYPE_INTERACTIONS: [&str; 9] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The reference search parameters of a type (for `_include`).
fn reference_params(registry: &Registry, rt: &str) -> Vec<String> {
    registry
        .params(rt)
        .iter()
        .filter(|p| p.kind == flint_search::ParamType::Reference)
        .map(|p| p.code.clone())
        .collect()
}

/// `Type:param` for every reference parameter that can point at `rt` (for `_revinclude`).
fn referring_params(model: &Model, registry: &Registry, rt: &str) -> Vec<String> {
    let mut out = Vec::new();
    for source in model.resource_types() {
        for p in registry.params(source) {
            if p.kind == flint_search::ParamType::Reference
                && (p.targets.is_empty() || p.targets.iter().any(|t| t == rt))
            {
                out.push(format!("{source}:{}", p.code));
            }
        }
    }
    out
}

/// The search parameters of a type this server answers: every indexed parameter of a type
/// it searches, plus `_id`, `_lastUpdated`, `_content`, `_list` and `_text`.
fn search_params(registry: &Registry, rt: &str) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"}),
        json!({"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}),
        json!({"name": "_content", "type": "string", "definition": "http://hl7.org/fhir/SearchParameter/Resource-content",
               "documentation": "Every word must appear somewhere in the resource's text (case and accents ignored)."}),
        json!({"name": "_list", "type": "special",
               "documentation": "The resources a stored List's entries point at (List ids; functional lists are not supported)."}),
    ];
    // Bundle, Binary and Parameters have no narrative.
    if !matches!(rt, "Bundle" | "Binary" | "Parameters") {
        out.push(json!({"name": "_text", "type": "string", "definition": "http://hl7.org/fhir/SearchParameter/DomainResource-text",
                        "documentation": "Every word must appear in the narrative (case and accents ignored)."}));
    }
    for p in registry.params(rt) {
        let supported = match p.kind {
            flint_search::ParamType::Special => false,
            flint_search::ParamType::Composite => registry.composite_searchable(rt, p),
            _ => true,
        };
        if supported && p.code != "_id" && p.code != "_lastUpdated" {
            out.push(json!({"name": p.code, "type": p.kind.code(), "definition": p.url}));
        }
    }
    out
}

/// `rest.operation` / `rest.resource.operation` entries: name and canonical URL.
fn operation_entry(d: &Definition) -> Value {
    json!({"name": d.code, "definition": d.url})
}

/// The operations offered on `rt` at the type or instance level.
fn type_operations(operations: &[Arc<Definition>], rt: &str) -> Vec<Value> {
    operations
        .iter()
        .filter(|d| d.serves(Level::Type, Some(rt)) || d.serves(Level::Instance, Some(rt)))
        .map(|d| operation_entry(d))
        .collect()
}

pub fn capability_statement(
    model: &Model,
    registry: &Registry,
    operations: &[Arc<Definition>],
    base_url: &str,
    date: &str,
) -> Value {
    let system_operations: Vec<Value> = operations
        .iter()
        .filter(|d| d.system)
        .map(|d| operation_entry(d))
        .collect();
    let resources: Vec<Value> = model
        .resource_types()
        .iter()
        .map(|rt| {
            let mut entry = json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "multiple",
                "searchInclude": reference_params(registry, rt).iter().map(|p| format!("{rt}:{p}")).chain(std::iter::once(format!("{rt}:*"))).collect::<Vec<_>>(),
                "searchRevInclude": referring_params(model, registry, rt),
                "searchParam": search_params(registry, rt),
            });
            let ops = type_operations(operations, rt);
            if !ops.is_empty() {
                entry["operation"] = Value::Array(ops);
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Flint",
        "kind": "instance",
        "software": {"name": "Flint", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Flint FHIR server", "url": base_url},
        "fhirVersion": flint_fhir::FHIR_VERSION,
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}, {"code": "search-system"}],
            "operation": system_operations,
        }],
    })
}

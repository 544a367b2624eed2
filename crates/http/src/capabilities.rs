//! The CapabilityStatement, generated from what the server does: every interaction listed
//! here is routed and tested.

use flint_fhir::model::Model;
use serde_json::{json, Value};

const TYPE_INTERACTIONS: [&str; 8] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
];

pub fn capability_statement(model: &Model, base_url: &str, date: &str) -> Value {
    let resources: Vec<Value> = model
        .resource_types()
        .iter()
        .map(|rt| {
            json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "full-support",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            })
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
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
        }],
    })
}

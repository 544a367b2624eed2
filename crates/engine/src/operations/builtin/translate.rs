//! `ConceptMap/$translate` (R4 `ConceptMap-translate`, type and instance level): the codes a
//! concept map gives for a code, Coding or CodeableConcept — from the map named (the
//! instance, `url` or `conceptMap`), or from every map that fits `source`, `target` and
//! `targetsystem` — with `reverse`, dependencies and the maps' `unmapped` rules.

use std::sync::Arc;

use flint_fhir::Result;
use flint_store::Store;
use flint_terminology::{Coding, Dependency, Terminology, TranslateRequest};
use serde_json::{json, Value};

use super::terms::{codings, entries, subject, CodedInputs};
use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Translate;

impl<S: Store> Operation<S> for Translate {
    fn definition(&self) -> Definition {
        Definition::r4("ConceptMap-translate", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let concept_map = subject(call, "url", "conceptMap", "conceptMapVersion")?;
        let names = CodedInputs {
            code: "code",
            system: Some("system"),
            version: Some("version"),
            display: None,
            coding: "coding",
        };
        let (codings, _) = codings(call, &names, "$translate")?;
        let mut dependencies = Vec::new();
        for entry in call.inputs.entries("dependency") {
            dependencies.push(dependency(entry)?);
        }
        let inputs = &call.inputs;
        let request = TranslateRequest {
            concept_map,
            codings,
            source: inputs.str("source").map(str::to_string),
            target: inputs.str("target").map(str::to_string),
            target_system: inputs.str("targetsystem").map(str::to_string),
            dependencies,
            reverse: inputs.bool("reverse").unwrap_or(false),
        };
        let sources = engine.terminology_sources();
        let translation = Terminology::new(&sources).translate(&request)?;
        Ok(Output::Parameters(entries(translation.to_parameters())))
    }
}

/// One `dependency` input: its `element` (uri) and `concept` (CodeableConcept) parts.
fn dependency(entry: &Value) -> Result<Dependency> {
    let parts = entry["part"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let part = |name: &str| parts.iter().find(|p| p["name"] == name);
    let element = part("element")
        .and_then(|p| p["valueUri"].as_str())
        .map(str::to_string);
    let concept = match part("concept").map(|p| &p["valueCodeableConcept"]) {
        Some(cc) if cc.is_object() => {
            Coding::from_codeable_concept(cc).map_err(|e| e.at("dependency.concept"))?
        }
        _ => Vec::new(),
    };
    Ok(Dependency { element, concept })
}

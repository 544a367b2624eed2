//! `$validate-code` on code systems (R4 `CodeSystem-validate-code`) and value sets (R4
//! `ValueSet-validate-code`), type and instance level: whether a code, Coding or
//! CodeableConcept (any of its codings) is in the code system or value set. `result` is false
//! only for the code itself; a display that does not match is reported in `message`, with the
//! right `display`.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use flint_terminology::{CodeSystemValidateRequest, Terminology, ValueSetValidateRequest};
use serde_json::json;

use super::terms::{codings, entries, refuse_unsupported, subject, CodedInputs};
use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct CodeSystemValidateCode;
pub(crate) struct ValueSetValidateCode;

impl<S: Store> Operation<S> for CodeSystemValidateCode {
    fn definition(&self) -> Definition {
        Definition::r4("CodeSystem-validate-code", |d| {
            d["affectsState"] = json!(false)
        })
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        refuse_unsupported(call, &["date"])?;
        let code_system = subject(call, "url", "codeSystem", "version")?.ok_or_else(|| {
            Error::invalid(
                "$validate-code needs the code system: invoke it on CodeSystem/[id], or give 'url' or 'codeSystem'",
            )
            .at("url")
        })?;
        let names = CodedInputs {
            code: "code",
            system: None,
            version: Some("version"),
            display: Some("display"),
            coding: "coding",
        };
        let (codings, codeable_concept) = codings(call, &names, "$validate-code")?;
        let request = CodeSystemValidateRequest {
            code_system,
            codings,
            codeable_concept,
            abstract_allowed: call.inputs.bool("abstract").unwrap_or(true),
            display_language: call.inputs.str("displayLanguage").map(str::to_string),
        };
        let sources = engine.terminology_sources();
        let answer = Terminology::new(&sources).validate_code_system_code(&request)?;
        Ok(Output::Parameters(entries(answer.to_parameters())))
    }
}

impl<S: Store> Operation<S> for ValueSetValidateCode {
    fn definition(&self) -> Definition {
        Definition::r4("ValueSet-validate-code", |d| {
            d["affectsState"] = json!(false)
        })
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        refuse_unsupported(call, &["context", "date"])?;
        let value_set = subject(call, "url", "valueSet", "valueSetVersion")?.ok_or_else(|| {
            Error::invalid(
                "$validate-code needs the value set: invoke it on ValueSet/[id], or give 'url' or 'valueSet'",
            )
            .at("url")
        })?;
        let names = CodedInputs {
            code: "code",
            system: Some("system"),
            version: Some("systemVersion"),
            display: Some("display"),
            coding: "coding",
        };
        let (codings, codeable_concept) = codings(call, &names, "$validate-code")?;
        let request = ValueSetValidateRequest {
            value_set,
            codings,
            codeable_concept,
            abstract_allowed: call.inputs.bool("abstract").unwrap_or(true),
            display_language: call.inputs.str("displayLanguage").map(str::to_string),
        };
        let sources = engine.terminology_sources();
        let answer = Terminology::new(&sources).validate_value_set_code(&request)?;
        Ok(Output::Parameters(entries(answer.to_parameters())))
    }
}

//! `CodeSystem/$lookup` (R4 `CodeSystem-lookup`, type level): what the code system says about
//! a code — its name, version, display (in `displayLanguage` when a designation has it),
//! designations and properties (`parent`, `child`, `inactive` and the code system's own),
//! narrowed to the `property` codes asked for.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use flint_terminology::{LookupRequest, Terminology};
use serde_json::json;

use super::terms::{coded, entries, refuse_unsupported, CodedInputs};
use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Lookup;

impl<S: Store> Operation<S> for Lookup {
    fn definition(&self) -> Definition {
        Definition::r4("CodeSystem-lookup", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        refuse_unsupported(call, &["date"])?;
        let names = CodedInputs {
            code: "code",
            system: Some("system"),
            version: Some("version"),
            display: None,
            coding: "coding",
        };
        let coding = coded(call, &names)?.ok_or_else(|| {
            Error::invalid("$lookup needs 'code' and 'system', or 'coding'").at("code")
        })?;
        if coding.system.is_none() {
            return Err(Error::invalid("$lookup needs the code's system").at("system"));
        }
        let mut request = LookupRequest::new(coding);
        request.properties = call.inputs.strs("property").map(str::to_string).collect();
        request.display_language = call.inputs.str("displayLanguage").map(str::to_string);
        let sources = engine.terminology_sources();
        let found = Terminology::new(&sources).lookup(&request)?;
        Ok(Output::Parameters(entries(found.to_parameters())))
    }
}

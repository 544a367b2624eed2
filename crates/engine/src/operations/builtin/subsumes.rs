//! `CodeSystem/$subsumes` (R4 `CodeSystem-subsumes`, type and instance level): how two codes
//! of one code system relate in its hierarchy — `equivalent`, `subsumes`, `subsumed-by` or
//! `not-subsumed`.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use flint_terminology::{Definition as TDefinition, SubsumesRequest, Terminology};
use serde_json::json;

use super::terms::{coded, entries, CodedInputs};
use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Subsumes;

impl<S: Store> Operation<S> for Subsumes {
    fn definition(&self) -> Definition {
        Definition::r4("CodeSystem-subsumes", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let side = |code: &'static str, coding: &'static str| CodedInputs {
            code,
            system: Some("system"),
            version: Some("version"),
            display: None,
            coding,
        };
        let a = coded(call, &side("codeA", "codingA"))?;
        let b = coded(call, &side("codeB", "codingB"))?;
        let (Some(mut a), Some(mut b)) = (a, b) else {
            return Err(Error::invalid(
                "$subsumes needs two codes: 'codeA' and 'codeB' (with 'system'), or 'codingA' and 'codingB'",
            )
            .at("codeA"));
        };
        // A coding without a system is of the other's.
        if a.system.is_none() {
            a.system = b.system.clone();
        }
        if b.system.is_none() {
            b.system = a.system.clone();
        }
        let mut request = SubsumesRequest::codings(a, b);
        if call.target.level == Level::Instance {
            request.code_system = Some(TDefinition::resource(call.target.resource()?));
        } else if request.a.system.is_none() {
            return Err(Error::invalid("$subsumes needs the codes' system").at("system"));
        }
        let sources = engine.terminology_sources();
        let outcome = Terminology::new(&sources).subsumes(&request)?;
        Ok(Output::Parameters(entries(outcome.to_parameters())))
    }
}

//! `$healthcheck` (Flint's own, system level): whether the server can serve, checked by a
//! read of the store. A store that cannot be read answers 503.

use std::sync::Arc;

use flint_fhir::{Error, IssueType, Result};
use flint_store::Store;
use serde_json::json;

use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Healthcheck;

impl<S: Store> Operation<S> for Healthcheck {
    fn definition(&self) -> Definition {
        Definition::flint(json!({
            "id": "healthcheck",
            "name": "Healthcheck",
            "title": "Whether the server can serve requests",
            "description": "Checks the store with a read. Answers 200 with the status and the last committed transaction, or 503 when the store cannot be read.",
            "code": "healthcheck",
            "system": true,
            "type": false,
            "instance": false,
            "affectsState": false,
            "parameter": [
                {"name": "status", "use": "out", "min": 1, "max": "1", "type": "code",
                 "documentation": "ok"},
                {"name": "version", "use": "out", "min": 1, "max": "1", "type": "string",
                 "documentation": "Flint's version."},
                {"name": "fhirVersion", "use": "out", "min": 1, "max": "1", "type": "code"},
                {"name": "lastTransaction", "use": "out", "min": 1, "max": "1", "type": "string",
                 "documentation": "The number of the last committed store transaction."}
            ]
        }))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, _call: &mut Call<'_>) -> Result<Output> {
        let last = engine.store().last_tx().map_err(|e| {
            tracing::error!(error = ?e, "healthcheck: the store cannot be read");
            Error::new(IssueType::Transient, "the store cannot be read").with_status(503)
        })?;
        Ok(Output::Parameters(vec![
            json!({"name": "status", "valueCode": "ok"}),
            json!({"name": "version", "valueString": env!("CARGO_PKG_VERSION")}),
            json!({"name": "fhirVersion", "valueCode": flint_fhir::FHIR_VERSION}),
            json!({"name": "lastTransaction", "valueString": last.to_string()}),
        ]))
    }

    fn is_bounded(&self) -> bool {
        true
    }
}

//! `$reindex` (Flint's own): indexes every current resource, or those of one type, again with
//! the search parameters in force. It runs as a background job: the answer comes at once when
//! the job ends within `[server] async_budget_ms`, otherwise `202` with the status URL.

use std::sync::Arc;

use flint_fhir::Result;
use flint_store::Store;
use serde_json::json;

use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Reindex;

impl<S: Store> Operation<S> for Reindex {
    fn definition(&self) -> Definition {
        Definition::flint(json!({
            "id": "reindex",
            "name": "Reindex",
            "title": "Index resources again with the search parameters in force",
            "description": "Indexes every current resource (system level) or every current resource of one type (type level) again, so that SearchParameters added or changed since they were written apply to them. Runs in the background; answers with the count when done within the server's asynchronous budget, otherwise 202 with a status URL.",
            "code": "reindex",
            "system": true,
            "type": true,
            "instance": false,
            "resource": ["Resource"],
            "affectsState": true,
            "parameter": [
                {"name": "reindexed", "use": "out", "min": 1, "max": "1", "type": "integer",
                 "documentation": "How many resources were indexed again."}
            ]
        }))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let resource_type = match call.target.level {
            Level::Type => Some(call.target.resource_type()?.to_string()),
            _ => None,
        };
        let id = crate::lanes::block_on(engine.start_reindex(call.ctx, resource_type))?;
        Ok(Output::Response(engine.answer_job(call.ctx, &id)?))
    }

    fn runs_as_job(&self) -> bool {
        true
    }
}

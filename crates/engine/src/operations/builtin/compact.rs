//! `$compact` (Flint's own, system level): maintenance of the store — for the embedded one,
//! full-text rows of versions no longer stored are removed, the full-text index is merged
//! into one segment and the query planner's statistics are gathered. It runs as a background
//! job: the answer (an OperationOutcome listing what was done) comes at once when the job
//! ends within `[server] async_budget_ms`, otherwise `202` with the status URL.

use std::sync::Arc;

use flint_fhir::Result;
use flint_store::Store;
use serde_json::json;

use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Compact;

impl<S: Store> Operation<S> for Compact {
    fn definition(&self) -> Definition {
        Definition::flint(json!({
            "id": "compact",
            "name": "Compact",
            "title": "Maintain the store",
            "description": "Maintenance of the store that changes no resource: for the embedded store, full-text rows of versions no longer stored are removed, the full-text index is merged into one segment and the query planner's statistics are gathered. Runs in the background; answers with an OperationOutcome listing what was done when it ends within the server's asynchronous budget, otherwise 202 with a status URL.",
            "code": "compact",
            "system": true,
            "type": false,
            "instance": false,
            "affectsState": true,
            "parameter": [
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "OperationOutcome",
                 "documentation": "What was done, one issue per step."}
            ]
        }))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let id = crate::lanes::block_on(engine.start_compact(call.ctx))?;
        Ok(Output::Response(engine.answer_job(call.ctx, &id)?))
    }

    fn runs_as_job(&self) -> bool {
        true
    }
}

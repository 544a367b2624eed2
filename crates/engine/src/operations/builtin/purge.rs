//! `Patient/[id]/$purge` (Flint's own): removes a patient and every resource of its
//! compartment (R4 `CompartmentDefinition` Patient) for good, with all their history and
//! index rows, in one store job. The compartment is found by search before the job; the job
//! makes each search again (or knows nothing of that type was written since), so a resource
//! added to the compartment meanwhile is not left behind.

use std::sync::Arc;

use flint_fhir::{Error, IssueType, Result};
use flint_store::search::SearchQuery;
use flint_store::Store;
use serde_json::json;

use crate::operations::{Call, Definition, Operation, Output};
use crate::Engine;

pub(crate) struct Purge;

/// The most resources one `$purge` removes: a larger compartment is refused, not cut.
const MAX_PURGED: usize = 50_000;

impl<S: Store> Operation<S> for Purge {
    fn definition(&self) -> Definition {
        Definition::flint(json!({
            "id": "purge",
            "name": "Purge",
            "title": "Remove a patient and its compartment for good",
            "description": "Removes the patient and every resource currently in its compartment, with all their versions, so that nothing of them can be read, searched or found in history. It cannot be undone.",
            "code": "purge",
            "system": false,
            "type": false,
            "instance": true,
            "resource": ["Patient"],
            "affectsState": true,
            "parameter": [
                {"name": "resources", "use": "out", "min": 1, "max": "1", "type": "integer",
                 "documentation": "How many resources were removed, the patient included."},
                {"name": "versions", "use": "out", "min": 1, "max": "1", "type": "integer",
                 "documentation": "How many versions were removed."}
            ]
        }))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let id = call
            .target
            .id
            .clone()
            .ok_or_else(|| Error::internal("$purge needs an instance"))?;
        if call.target.version.is_some() {
            return Err(Error::invalid(
                "$purge removes a patient with all its versions: invoke it on Patient/[id]/$purge",
            ));
        }
        let mut members: Vec<(String, String)> = vec![("Patient".into(), id.clone())];
        for rt in engine.model().resource_types() {
            let Some(clause) = crate::search::compartment_clause("Patient", &id, rt) else {
                continue;
            };
            let query = SearchQuery {
                resource_type: rt.clone(),
                clauses: vec![clause],
                limit: MAX_PURGED + 1,
                interrupt: engine.search_interrupt(call.ctx),
                ..Default::default()
            };
            let seen = engine.store().last_tx()?;
            let found = engine.store().search(&query)?.versions;
            for v in &found {
                if !(rt == "Patient" && v.id == id) {
                    members.push((rt.clone(), v.id.clone()));
                }
            }
            if members.len() > MAX_PURGED {
                return Err(Error::new(
                    IssueType::TooCostly,
                    format!("Patient/{id} has more than {MAX_PURGED} resources in its compartment; $purge removes at most that many at once"),
                ));
            }
            call.changes.rely_on(query, &found, seen);
        }
        let resources = members.len();
        let versions = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&versions);
        call.changes.step("Patient", move |txn| {
            let mut n = 0;
            for (rt, id) in &members {
                n += txn.purge(rt, id)?;
            }
            counted.store(n, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        tracing::info!(patient = %id, resources, "purging a patient's compartment");
        // What the job removed is known once it committed.
        Ok(Output::After(Box::new(move || {
            Output::Parameters(vec![
                json!({"name": "resources", "valueInteger": resources}),
                json!({"name": "versions", "valueInteger": versions.load(std::sync::atomic::Ordering::SeqCst)}),
            ])
        })))
    }
}

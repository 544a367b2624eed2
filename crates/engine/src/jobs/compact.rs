//! The `compact` job (`$compact`): store maintenance in one store transaction of its own
//! (see `Transaction::compact`), run in the background because on a large store it takes a
//! while. It changes no resource, so after a restart it simply runs again.

use std::sync::Arc;

use flint_fhir::Result;
use flint_store::{JobRecord, Store};
use serde_json::json;

use super::{Kind, Running};
use crate::request::{Payload, Response};
use crate::{Context, Engine};

pub(crate) struct Compact;

impl<S: Store> Kind<S> for Compact {
    fn name(&self) -> &'static str {
        "compact"
    }

    fn in_lane(&self) -> bool {
        false
    }

    fn run(&self, engine: &Arc<Engine<S>>, job: &Running) -> Result<Response> {
        job.interrupt.check()?;
        let mark = job.mark.clone();
        let done = crate::lanes::block_on(engine.store().write(move |t| {
            mark.claim(t)?;
            t.compact()
        }))?;
        let issues: Vec<_> = done
            .into_iter()
            .map(|step| json!({"severity": "information", "code": "informational", "diagnostics": step}))
            .collect();
        Ok(Response::new(
            200,
            Payload::Value(json!({"resourceType": "OperationOutcome", "issue": issues})),
        ))
    }

    fn resume(&self, _: &JobRecord) -> Result<()> {
        Ok(())
    }

    fn progress(&self, _: &JobRecord) -> String {
        "compacting the store".into()
    }

    fn cancelled(&self, _: &JobRecord) -> String {
        "; the store was left as it was, or compacted whole".into()
    }
}

impl<S: Store> Engine<S> {
    /// Starts `$compact`. Returns the job's id.
    ///
    /// # Errors
    /// A store fault.
    pub async fn start_compact(self: &Arc<Self>, ctx: &Context) -> Result<String> {
        let (id, _) = self.start_job(ctx, "compact", json!({}), json!({})).await?;
        Ok(id)
    }
}

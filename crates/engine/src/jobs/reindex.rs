//! The `reindex` job (`$reindex`): walks the current versions in write order from the
//! recorded position, a batch per transaction that also records the new position, so that it
//! resumes exactly where its last batch committed.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::{JobRecord, Store};
use serde_json::{json, Value};

use super::{Kind, Running};
use crate::request::{Payload, Response};
use crate::{Context, Engine};

/// Resources re-indexed per store transaction.
const BATCH: usize = 1000;

/// One version's new index rows: type, id, version, values.
type Reindexed = (String, String, u64, Vec<flint_store::IndexedParam>);

pub(crate) struct Reindex;

impl<S: Store> Kind<S> for Reindex {
    fn name(&self) -> &'static str {
        "reindex"
    }

    fn in_lane(&self) -> bool {
        false
    }

    fn run(&self, engine: &Arc<Engine<S>>, job: &Running) -> Result<Response> {
        let request: Value = serde_json::from_str(&job.record.request)
            .map_err(|e| Error::internal(format!("bad $reindex job request: {e}")))?;
        let resource_type = request["type"].as_str().map(str::to_string);
        let progress: Value = serde_json::from_str(&job.record.progress).unwrap_or(Value::Null);
        let mut after = progress["after"].as_u64().unwrap_or(0);
        let mut done = progress["done"].as_u64().unwrap_or(0);
        let mut record = job.record.clone();
        loop {
            job.interrupt.check()?;
            let batch = engine
                .store()
                .current_versions(resource_type.as_deref(), after, BATCH)?;
            let Some(last) = batch.last().map(|(position, _)| *position) else {
                return Ok(Response::new(
                    200,
                    Payload::Value(json!({
                        "resourceType": "Parameters",
                        "parameter": [{"name": "reindexed", "valueInteger": done}]
                    })),
                ));
            };
            let registry = engine.registry();
            let updates = index_in_parallel(&batch, &registry)?;
            after = last;
            done += batch.len() as u64;
            record.progress = json!({"after": after, "done": done}).to_string();
            record.updated = engine.clock.now();
            let stored = record.clone();
            let mark = job.mark.clone();
            crate::lanes::block_on(engine.store().write(move |t| {
                mark.claim(t)?;
                for (resource_type, id, version, index) in updates {
                    t.reindex(&resource_type, &id, version, index)?;
                }
                t.put_job(&stored)
            }))?;
        }
    }

    fn resume(&self, _: &JobRecord) -> Result<()> {
        // Each batch committed with its position: it goes on from there.
        Ok(())
    }

    fn progress(&self, job: &JobRecord) -> String {
        format!("{} resources reindexed", done(job))
    }

    fn cancelled(&self, job: &JobRecord) -> String {
        format!(
            "; {} resources had been reindexed, and keep their new index rows",
            done(job)
        )
    }
}

fn done(job: &JobRecord) -> u64 {
    let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
    progress["done"].as_u64().unwrap_or(0)
}

impl<S: Store> Engine<S> {
    /// Starts `$reindex` over every current resource, or those of one type: each is indexed
    /// again with the search parameters now in force. Returns the job's id.
    ///
    /// # Errors
    /// A store fault.
    pub async fn start_reindex(
        self: &Arc<Self>,
        ctx: &Context,
        resource_type: Option<String>,
    ) -> Result<String> {
        let (id, _) = self
            .start_job(
                ctx,
                "reindex",
                json!({"type": resource_type}),
                json!({"after": 0, "done": 0}),
            )
            .await?;
        Ok(id)
    }
}

/// Extracts the index values of a batch of versions on every core. A version whose values
/// are too costly to extract (a custom SearchParameter that fans out) keeps the rows it had,
/// with a warning: one such resource must not stop the whole `$reindex`.
///
/// # Errors
/// Stored bytes that are not JSON (a store fault).
fn index_in_parallel(
    batch: &[(u64, flint_store::Version)],
    registry: &flint_search::Registry,
) -> Result<Vec<Reindexed>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    let chunk = batch.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Reindexed>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (_, v) in part {
                        let resource = crate::parse_stored(v)?;
                        match crate::index_values(&resource, registry) {
                            Ok(index) => {
                                out.push((v.resource_type.clone(), v.id.clone(), v.version, index))
                            }
                            Err(e) if !e.is_server_fault() => tracing::warn!(
                                resource = %format!("{}/{}", v.resource_type, v.id),
                                error = ?e,
                                "not reindexed: its index values are too costly"
                            ),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::internal("a reindex thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(batch.len());
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

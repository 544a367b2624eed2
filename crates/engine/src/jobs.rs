//! Background jobs: work that outlives the request which started it (SPEC section 5, the
//! asynchronous request pattern), kept in the store as a [`JobRecord`] so that any node can
//! report on it and a restart does not lose it.
//!
//! A job runs as a task on this node. It records its progress in the same store transaction
//! as the work of each step, so that after a restart it resumes exactly where its last step
//! committed (`resume_jobs`); kinds that cannot resume are ended with a clear error instead.
//! Its result is the response the request would have had (status and resource), served by
//! the status URL as the single entry of a `batch-response` Bundle.
//!
//! The one kind so far is `reindex` (`$reindex`); searches, transactions and operations will
//! run through the same machinery.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flint_fhir::{Error, IssueType, Result};
use flint_store::{JobRecord, JobState, Store};
use serde_json::{json, Value};

use crate::Engine;

/// Resources re-indexed per store transaction.
const REINDEX_BATCH: usize = 1000;

/// One version's new index rows: type, id, version, values.
type Reindexed = (String, String, u64, Vec<flint_store::IndexedParam>);

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

/// How long an ended job's result stays available at its status URL (microseconds).
const KEEP_ENDED: i64 = 7 * 24 * 3600 * 1_000_000;

/// What a finished job answers: the status and resource of its response.
#[derive(Clone, Debug, PartialEq)]
pub struct JobResponse {
    pub status: u16,
    pub resource: Value,
}

impl JobResponse {
    fn to_json(&self) -> String {
        json!({"status": self.status, "resource": self.resource}).to_string()
    }

    fn parse(text: &str) -> Result<JobResponse> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("a stored job result is not JSON: {e}")))?;
        Ok(JobResponse {
            status: v["status"].as_u64().unwrap_or(500) as u16,
            resource: v["resource"].clone(),
        })
    }
}

/// A job as a client sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum JobStatus {
    /// Still running; the text says how far it got.
    Running(String),
    /// Ended: done, failed or cancelled, with its response.
    Ended(JobState, JobResponse),
}

/// The response of a job that ended with `error`.
fn failure(error: &Error) -> JobResponse {
    JobResponse {
        status: error.status(),
        resource: error.to_operation_outcome(),
    }
}

impl<S: Store> Engine<S> {
    /// The status of a job.
    ///
    /// # Errors
    /// 404 for a job that does not exist; a store fault.
    pub fn job_status(&self, id: &str) -> Result<JobStatus> {
        let job = self
            .store()
            .job(id)?
            .ok_or_else(|| Error::not_found(format!("there is no asynchronous request '{id}'")))?;
        Ok(match (job.state, &job.result) {
            (JobState::Running, _) => JobStatus::Running(progress_text(&job)),
            (state, Some(result)) => JobStatus::Ended(state, JobResponse::parse(result)?),
            (state, None) => JobStatus::Ended(
                state,
                failure(
                    &Error::new(IssueType::Exception, "the request ended without a result")
                        .with_status(500),
                ),
            ),
        })
    }

    /// Waits up to `budget` for a job to end, on the calling (blocking) thread.
    ///
    /// # Errors
    /// As [`Engine::job_status`].
    pub fn wait_job_blocking(&self, id: &str, budget: Duration) -> Result<JobStatus> {
        let deadline = std::time::Instant::now() + budget;
        let mut pause = Duration::from_millis(2);
        loop {
            let status = self.job_status(id)?;
            let now = std::time::Instant::now();
            if matches!(status, JobStatus::Ended(..)) || now >= deadline {
                return Ok(status);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Cancels a running job (its completed steps stay; it stops before the next). A job
    /// that already ended is left as it is.
    ///
    /// # Errors
    /// 404 for a job that does not exist; a store fault.
    pub async fn cancel_job(&self, id: &str) -> Result<()> {
        let mut job = self
            .store()
            .job(id)?
            .ok_or_else(|| Error::not_found(format!("there is no asynchronous request '{id}'")))?;
        if job.state != JobState::Running {
            return Ok(());
        }
        if let Some(flag) = self.running.lock().get(id) {
            flag.store(true, Ordering::SeqCst);
        }
        let cancelled = JobResponse {
            status: 200,
            resource: flint_fhir::error::information("cancelled at the client's request"),
        };
        self.end_job(&mut job, JobState::Cancelled, cancelled);
        // The job's own steps check the same flag inside their transaction, so none commits
        // after this one.
        self.store().write(move |t| t.put_job(&job)).await
    }

    /// Starts `$reindex` over every current resource, or those of one type: each is indexed
    /// again with the search parameters now in force. Returns the job's id.
    ///
    /// # Errors
    /// A store fault.
    pub async fn start_reindex(self: &Arc<Self>, resource_type: Option<String>) -> Result<String> {
        let now = self.clock.now();
        let job = JobRecord {
            id: crate::new_id(),
            kind: "reindex".into(),
            state: JobState::Running,
            request: json!({"type": resource_type}).to_string(),
            progress: json!({"after": 0, "done": 0}).to_string(),
            result: None,
            created: now,
            updated: now,
        };
        let stored = job.clone();
        let before = now - KEEP_ENDED;
        self.store()
            .write(move |t| {
                t.prune_jobs(before)?;
                t.put_job(&stored)
            })
            .await?;
        let id = job.id.clone();
        self.spawn_job(job);
        Ok(id)
    }

    /// What a server does before it serves: publishes the definitions of its operations
    /// and picks up the jobs a stop interrupted.
    ///
    /// # Errors
    /// A store fault.
    pub async fn start(self: &Arc<Self>, base_url: &str) -> Result<()> {
        let engine = Arc::clone(self);
        let ctx = crate::Context::new(base_url);
        tokio::task::spawn_blocking(move || engine.publish_operations(&ctx))
            .await
            .map_err(|e| Error::internal(format!("publishing the operations panicked: {e}")))??;
        self.resume_jobs().await
    }

    /// Picks up the jobs a stop interrupted: those that can resume do, the others end with
    /// an error that says so.
    ///
    /// # Errors
    /// A store fault.
    pub async fn resume_jobs(self: &Arc<Self>) -> Result<()> {
        let before = self.clock.now() - KEEP_ENDED;
        self.store().write(move |t| t.prune_jobs(before)).await?;
        for mut job in self.store().jobs(JobState::Running)? {
            if self.running.lock().contains_key(&job.id) {
                continue;
            }
            if job.kind == "reindex" {
                tracing::info!(job = %job.id, "resuming an interrupted $reindex");
                self.spawn_job(job);
            } else {
                let stopped = Error::new(
                    IssueType::Incomplete,
                    "the server stopped while this request ran; send it again",
                )
                .with_status(500);
                self.end_job(&mut job, JobState::Failed, failure(&stopped));
                self.store().write(move |t| t.put_job(&job)).await?;
            }
        }
        Ok(())
    }

    /// Marks a job ended, with the response its status URL will give.
    fn end_job(&self, job: &mut JobRecord, state: JobState, response: JobResponse) {
        job.state = state;
        job.updated = self.clock.now();
        job.result = Some(response.to_json());
    }

    fn spawn_job(self: &Arc<Self>, job: JobRecord) {
        let cancelled = Arc::new(AtomicBool::new(false));
        self.running
            .lock()
            .insert(job.id.clone(), Arc::clone(&cancelled));
        let engine = Arc::clone(self);
        // The job reads, indexes and writes: blocking work, off the runtime's threads.
        tokio::task::spawn_blocking(move || {
            let id = job.id.clone();
            if let Err(e) = engine.run_reindex(job.clone(), &cancelled) {
                if !cancelled.load(Ordering::SeqCst) {
                    tracing::error!(job = %id, error = ?e, "a background job failed");
                    let mut failed = job;
                    engine.end_job(&mut failed, JobState::Failed, failure(&e));
                    let flag = Arc::clone(&cancelled);
                    let _ = crate::lanes::block_on(engine.store().write(move |t| {
                        if flag.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        t.put_job(&failed)
                    }));
                }
            }
            engine.running.lock().remove(&id);
        });
    }

    /// The `$reindex` job: walks the current versions in write order from the recorded
    /// position, a batch per transaction that also records the new position.
    fn run_reindex(&self, mut job: JobRecord, cancelled: &Arc<AtomicBool>) -> Result<()> {
        let request: Value = serde_json::from_str(&job.request)
            .map_err(|e| Error::internal(format!("bad $reindex job request: {e}")))?;
        let resource_type = request["type"].as_str().map(str::to_string);
        let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
        let mut after = progress["after"].as_u64().unwrap_or(0);
        let mut done = progress["done"].as_u64().unwrap_or(0);
        loop {
            // A cancellation made on another node shows in the store.
            if cancelled.load(Ordering::SeqCst)
                || self
                    .store()
                    .job(&job.id)?
                    .is_none_or(|j| j.state != JobState::Running)
            {
                return Ok(());
            }
            let batch =
                self.store()
                    .current_versions(resource_type.as_deref(), after, REINDEX_BATCH)?;
            let last = batch.last().map(|(position, _)| *position);
            let registry = self.registry();
            let n = batch.len() as u64;
            let updates = index_in_parallel(&batch, &registry)?;
            job.updated = self.clock.now();
            match last {
                Some(position) => {
                    after = position;
                    done += n;
                    job.progress = json!({"after": after, "done": done}).to_string();
                }
                None => {
                    let reindexed = JobResponse {
                        status: 200,
                        resource: json!({
                            "resourceType": "Parameters",
                            "parameter": [{"name": "reindexed", "valueInteger": done}]
                        }),
                    };
                    self.end_job(&mut job, JobState::Done, reindexed);
                }
            }
            let record = job.clone();
            let flag = Arc::clone(cancelled);
            crate::lanes::block_on(self.store().write(move |t| {
                if flag.load(Ordering::SeqCst) {
                    return Err(Error::new(IssueType::Incomplete, "cancelled"));
                }
                for (resource_type, id, version, index) in updates {
                    t.reindex(&resource_type, &id, version, index)?;
                }
                t.put_job(&record)
            }))?;
            if last.is_none() {
                return Ok(());
            }
        }
    }
}

fn progress_text(job: &JobRecord) -> String {
    let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
    match job.kind.as_str() {
        "reindex" => format!(
            "{} resources reindexed",
            progress["done"].as_u64().unwrap_or(0)
        ),
        _ => "running".into(),
    }
}

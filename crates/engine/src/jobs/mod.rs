//! Background jobs: work that outlives the request which started it (SPEC section 5, the
//! asynchronous request pattern), kept in the store as a [`JobRecord`] so that any node can
//! report on it and a restart does not lose it.
//!
//! - **Kinds.** What a job does is its [`Kind`], found by name in one registry ([`kinds`]):
//!   `reindex` (`$reindex`) and `request` (any search, history, Bundle or operation sent with
//!   `Prefer: respond-async`). A kind runs a job, says what becomes of it after a restart
//!   (run again, or end with a clear error) and how far it got.
//! - **Leases.** The node that runs a job holds a lease on it (the job's `node` and
//!   `lease_until`), renewed every third of [`LEASE`] by [`Engine::keep_jobs`]. Every store
//!   transaction of a job's work claims the lease first ([`JobMark::claim`]), so a job that
//!   was cancelled (on any node) or taken over commits nothing more. A job whose lease ran out
//!   (its node died) is taken over by the next node to look; at start a node takes back the
//!   jobs it held in its previous life at once.
//! - **Results.** A job's result is the response its request would have had — status,
//!   `Location`, `ETag`, `Last-Modified` and resource — served by the status URL as the single
//!   entry of a `batch-response` Bundle, kept for `[server] async_results_kept_hours`, then
//!   deleted. Only the job's owner (tenant and caller) sees or cancels it; to anybody else it
//!   does not exist. Status URLs carry a random (v4 UUID) id.
//! - **Cancellation** stops the work (its interrupt is set; its next transaction is refused)
//!   and says what had been committed by then.

mod compact;
pub(crate) mod export;
mod reindex;
mod request;

pub(crate) use request::accepted;

use std::sync::Arc;
use std::time::Duration;

use flint_fhir::{Error, IssueType, Result};
use flint_store::{Interrupt, JobRecord, JobState, Store, Transaction};
use serde_json::{json, Value};

use crate::request::{Payload, Response};
use crate::{Context, Engine};

/// How long a node's lease on a job holds without being renewed.
pub const LEASE: Duration = Duration::from_secs(30);

/// A kind of background job.
pub(crate) trait Kind<S: Store>: Sync {
    /// The name kept in the job's record.
    fn name(&self) -> &'static str;

    /// Whether the job runs in the request core's costly lane (a request run in the
    /// background), or on a thread of its own (maintenance that paces itself).
    fn in_lane(&self) -> bool;

    /// Runs the job (from where its record says it got to) on the calling blocking thread,
    /// until it ends. Each store transaction of its work claims the job first
    /// ([`JobMark::claim`]).
    ///
    /// # Errors
    /// The response's error: the job ends failed with it.
    fn run(&self, engine: &Arc<Engine<S>>, job: &Running) -> Result<Response>;

    /// What a restart (or a takeover) does with the job: `Ok` runs it again from its
    /// record, an error ends it with that error.
    ///
    /// # Errors
    /// The reason it cannot run again.
    fn resume(&self, job: &JobRecord) -> Result<()>;

    /// How far it got, for `X-Progress`.
    fn progress(&self, job: &JobRecord) -> String;

    /// What a cancellation leaves behind, for the answer to `DELETE`.
    fn cancelled(&self, job: &JobRecord) -> String;
}

/// Every kind of job.
fn kinds<S: Store>() -> [&'static dyn Kind<S>; 4] {
    [
        &compact::Compact,
        &export::Export,
        &reindex::Reindex,
        &request::Deferred,
    ]
}

fn kind<S: Store>(name: &str) -> Option<&'static dyn Kind<S>> {
    kinds::<S>().into_iter().find(|k| k.name() == name)
}

/// The job a piece of work belongs to, carried by its [`Context`]: its store transactions
/// claim the job and count their commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobMark {
    pub id: String,
    pub node: String,
}

impl JobMark {
    /// Renews the job's lease inside a transaction of its work, or refuses the transaction
    /// when the job was cancelled or taken over.
    ///
    /// # Errors
    /// The job no longer runs here (499, as for a client that went away); a store fault.
    pub(crate) fn claim(&self, txn: &mut dyn Transaction) -> Result<()> {
        let now = wall_clock();
        if txn.claim_job(&self.id, &self.node, now, now + micros(LEASE))? {
            Ok(())
        } else {
            Err(Error::new(
                IssueType::Incomplete,
                "the asynchronous request was cancelled or taken over; this step was not kept",
            )
            .with_status(499))
        }
    }

    /// Counts a committed transaction of the job's work (call it last in the transaction).
    ///
    /// # Errors
    /// A store fault.
    pub(crate) fn committed(&self, txn: &mut dyn Transaction) -> Result<()> {
        txn.note_job_commit(&self.id)
    }
}

/// In a store transaction of work that may belong to a job: claims the job first.
pub(crate) fn claim(job: &Option<JobMark>, txn: &mut dyn Transaction) -> Result<()> {
    match job {
        Some(mark) => mark.claim(txn),
        None => Ok(()),
    }
}

/// In a store transaction of work that may belong to a job, once it wrote: counts it.
pub(crate) fn committed(job: &Option<JobMark>, txn: &mut dyn Transaction) -> Result<()> {
    match job {
        Some(mark) => mark.committed(txn),
        None => Ok(()),
    }
}

/// A job running on this node.
pub(crate) struct Running {
    pub record: JobRecord,
    pub mark: JobMark,
    /// Set when it is cancelled or the server stops.
    pub interrupt: Interrupt,
}

/// The running jobs of a node: each one's interrupt, and where its end is announced.
pub(crate) struct Live {
    interrupt: Interrupt,
    ended: tokio::sync::watch::Sender<Option<Result<Response>>>,
}

/// What a finished job answers: its response, as the status URL's Bundle entry holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobResponse {
    pub status: u16,
    pub resource: Value,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl JobResponse {
    /// The response as a job keeps it.
    ///
    /// # Errors
    /// A body that is not JSON (a server fault).
    pub fn of(response: &Response) -> Result<JobResponse> {
        let resource = match &response.payload {
            Payload::None => Value::Null,
            Payload::Value(v) => v.clone(),
            Payload::Stored(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| Error::internal(format!("a response body is not JSON: {e}")))?,
            Payload::Text(text) => serde_json::from_str(text)
                .map_err(|e| Error::internal(format!("a response body is not JSON: {e}")))?,
        };
        Ok(JobResponse {
            status: response.status,
            resource,
            location: response
                .location
                .clone()
                .or_else(|| response.content_location.clone()),
            etag: response.version.map(|(v, _)| format!("W/\"{v}\"")),
            last_modified: response
                .version
                .map(|(_, at)| flint_fhir::datetime::format_instant(at)),
        })
    }

    /// The response of a job that ended with `error`.
    pub fn failure(error: &Error) -> JobResponse {
        JobResponse {
            status: error.status(),
            resource: error.to_operation_outcome(),
            location: None,
            etag: None,
            last_modified: None,
        }
    }

    fn to_json(&self) -> String {
        json!({
            "status": self.status,
            "resource": self.resource,
            "location": self.location,
            "etag": self.etag,
            "lastModified": self.last_modified,
        })
        .to_string()
    }

    fn parse(text: &str) -> Result<JobResponse> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("a stored job result is not JSON: {e}")))?;
        let text = |key: &str| v[key].as_str().map(str::to_string);
        Ok(JobResponse {
            status: v["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
            resource: v["resource"].clone(),
            location: text("location"),
            etag: text("etag"),
            last_modified: text("lastModified"),
        })
    }

    /// The `batch-response` Bundle the status URL answers with once the job ended.
    pub fn bundle(&self) -> Value {
        let mut response = json!({"status": crate::bundle::status_line(self.status)});
        for (key, value) in [
            ("location", &self.location),
            ("etag", &self.etag),
            ("lastModified", &self.last_modified),
        ] {
            if let Some(value) = value {
                response[key] = json!(value);
            }
        }
        let mut entry = json!({"response": response});
        if !self.resource.is_null() {
            entry["resource"] = self.resource.clone();
        }
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": [entry]})
    }
}

/// A job as its owner sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum JobStatus {
    /// Still running; the text says how far it got.
    Running(String),
    /// Ended: done, failed or cancelled, with its response.
    Ended(JobState, JobResponse),
}

/// A job as its owner sees it.
///
/// # Errors
/// A stored result that is not JSON (a store fault).
pub(crate) fn status_of<S: Store>(job: &JobRecord) -> Result<JobStatus> {
    Ok(match (job.state, &job.result) {
        (JobState::Running, _) => JobStatus::Running(match kind::<S>(&job.kind) {
            Some(k) => k.progress(job),
            None => "running".into(),
        }),
        (state, Some(result)) => JobStatus::Ended(state, JobResponse::parse(result)?),
        (state, None) => JobStatus::Ended(
            state,
            JobResponse::failure(
                &Error::new(IssueType::Exception, "the request ended without a result")
                    .with_status(500),
            ),
        ),
    })
}

/// Microseconds since the epoch, by the wall clock (leases are compared across nodes).
fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

fn no_such_job(id: &str) -> Error {
    Error::not_found(format!("there is no asynchronous request '{id}'"))
}

impl<S: Store> Engine<S> {
    /// A job as `ctx`'s caller may see it: only its owner does.
    pub(crate) fn owned_job(&self, ctx: &Context, id: &str) -> Result<JobRecord> {
        match self.store().job(id)? {
            // A job with no owner is the server's own (a migration's `$reindex`).
            Some(job) if job.owner.is_empty() || job.owner == ctx.owner() => Ok(job),
            _ => Err(no_such_job(id)),
        }
    }

    /// The status of a job.
    ///
    /// # Errors
    /// 404 for a job that does not exist or is not the caller's; a store fault.
    pub fn job_status(&self, ctx: &Context, id: &str) -> Result<JobStatus> {
        status_of::<S>(&self.owned_job(ctx, id)?)
    }

    /// Waits up to `budget` for a job to end, on the calling (blocking) thread.
    ///
    /// # Errors
    /// As [`Engine::job_status`].
    pub fn wait_job_blocking(
        &self,
        ctx: &Context,
        id: &str,
        budget: Duration,
    ) -> Result<JobStatus> {
        let deadline = std::time::Instant::now() + budget;
        let mut pause = Duration::from_millis(2);
        loop {
            let status = self.job_status(ctx, id)?;
            let now = std::time::Instant::now();
            if matches!(status, JobStatus::Ended(..)) || now >= deadline {
                return Ok(status);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Cancels a running job: its work stops, and no transaction of it commits after this
    /// one. Returns what that leaves behind. A job that already ended is left as it is.
    ///
    /// # Errors
    /// 404 for a job that does not exist or is not the caller's; a store fault.
    pub async fn cancel_job(&self, ctx: &Context, id: &str) -> Result<String> {
        let mut job = self.owned_job(ctx, id)?;
        if job.state == JobState::Done && job.kind == "export" {
            // The Bulk Data IG: a DELETE after the export ended removes its files.
            job.state = JobState::Cancelled;
            job.updated = self.clock.now();
            self.store().write(move |t| t.put_job(&job)).await?;
            self.remove_export(id);
            return Ok(format!("the export '{id}' and its files are deleted"));
        }
        if job.state != JobState::Running {
            return Ok(format!(
                "the asynchronous request '{id}' had already ended ({})",
                job.state.as_str()
            ));
        }
        if let Some(live) = self.running.lock().get(id) {
            live.interrupt.cancel();
        }
        job.state = JobState::Cancelled;
        job.updated = self.clock.now();
        job.result = Some(
            JobResponse {
                status: 200,
                resource: flint_fhir::error::information("cancelled at the client's request"),
                location: None,
                etag: None,
                last_modified: None,
            }
            .to_json(),
        );
        // Any later transaction of the job claims it and is refused: after this write, the
        // record's commits are final.
        let kind_name = job.kind.clone();
        self.store().write(move |t| t.put_job(&job)).await?;
        if kind_name == "export" {
            self.remove_export(id);
        }
        let job = self.store().job(id)?.ok_or_else(|| no_such_job(id))?;
        let left = match kind::<S>(&job.kind) {
            Some(k) => k.cancelled(&job),
            None => String::new(),
        };
        Ok(format!(
            "the asynchronous request '{id}' is cancelled{left}"
        ))
    }

    /// Records a new job of `kind` for `ctx`'s caller and starts it on this node. Returns
    /// its id and where its end will be announced.
    pub(crate) async fn start_job(
        self: &Arc<Self>,
        ctx: &Context,
        kind: &str,
        request: Value,
        progress: Value,
    ) -> Result<(
        String,
        tokio::sync::watch::Receiver<Option<Result<Response>>>,
    )> {
        let now = self.clock.now();
        let job = JobRecord {
            id: crate::new_id(),
            kind: kind.to_string(),
            state: JobState::Running,
            request: request.to_string(),
            progress: progress.to_string(),
            result: None,
            created: now,
            updated: now,
            owner: ctx.owner(),
            node: self.node.clone(),
            lease_until: wall_clock() + micros(LEASE),
            commits: 0,
        };
        let stored = job.clone();
        let before = now - micros(self.limits.async_kept);
        self.store()
            .write(move |t| {
                t.prune_jobs(before)?;
                t.put_job(&stored)
            })
            .await?;
        let id = job.id.clone();
        let ended = self.spawn_job(job)?;
        Ok((id, ended))
    }

    /// What a server does before it serves: publishes the definitions of its operations,
    /// picks up the jobs a stop interrupted and starts keeping its jobs' leases.
    ///
    /// # Errors
    /// A store fault.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            engine.reload_custom_operations()?;
            engine.publish_operations()
        })
        .await
        .map_err(|e| Error::internal(format!("publishing the operations panicked: {e}")))??;
        // Reading the jobs (and the export directory) is blocking work: off the runtime's
        // threads, as every store read but a point read is.
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || crate::lanes::block_on(engine.resume_jobs()))
            .await
            .map_err(|e| Error::internal(format!("resuming the jobs panicked: {e}")))??;
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if engine.is_stopping() {
                    return;
                }
                let kept =
                    tokio::task::spawn_blocking(move || crate::lanes::block_on(engine.keep_jobs()))
                        .await;
                match kept {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = ?e, "cannot renew the leases of the running jobs")
                    }
                    Err(e) => tracing::error!(error = %e, "keeping the jobs panicked"),
                }
            }
        });
        Ok(())
    }

    /// Renews the leases of the jobs this node runs (one whose lease was lost is stopped
    /// here: another node has it), takes over the jobs whose node's lease ran out, and
    /// deletes the results kept past their time.
    ///
    /// # Errors
    /// A store fault.
    pub async fn keep_jobs(self: &Arc<Self>) -> Result<()> {
        let ids: Vec<String> = self.running.lock().keys().cloned().collect();
        let node = self.node.clone();
        let before = self.clock.now() - micros(self.limits.async_kept);
        let lost = self
            .store()
            .write(move |t| {
                let now = wall_clock();
                let mut lost = Vec::new();
                for id in ids {
                    if !t.claim_job(&id, &node, now, now + micros(LEASE))? {
                        lost.push(id);
                    }
                }
                t.prune_jobs(before)?;
                Ok(lost)
            })
            .await?;
        // The files of exports whose results expired with them.
        self.remove_stale_exports()?;
        for id in lost {
            if let Some(live) = self.running.lock().get(&id) {
                tracing::info!(job = %id, "stopping a job that ended or moved to another node");
                live.interrupt.cancel();
            }
        }
        self.take_over(false).await
    }

    /// Picks up the jobs a stop interrupted, and those of nodes whose lease ran out: those
    /// that can run again do, the others end with an error that says why.
    ///
    /// # Errors
    /// A store fault.
    pub async fn resume_jobs(self: &Arc<Self>) -> Result<()> {
        let before = self.clock.now() - micros(self.limits.async_kept);
        self.store().write(move |t| t.prune_jobs(before)).await?;
        self.take_over(true).await
    }

    async fn take_over(self: &Arc<Self>, starting: bool) -> Result<()> {
        let now = wall_clock();
        for mut job in self.store().jobs(JobState::Running)? {
            if self.running.lock().contains_key(&job.id) {
                continue;
            }
            // At start, this node's own jobs are from its previous life: nobody runs them.
            let ours = starting && job.node == self.node;
            if !(ours || job.node.is_empty() || job.lease_until < now) {
                continue;
            }
            let (id, node) = (job.id.clone(), self.node.clone());
            let granted = self
                .store()
                .write(move |t| {
                    let now = wall_clock();
                    t.claim_job(&id, &node, now, now + micros(LEASE))
                })
                .await?;
            if !granted {
                continue;
            }
            job.node = self.node.clone();
            let verdict = match kind::<S>(&job.kind) {
                Some(k) => k.resume(&job),
                None => Err(Error::internal(format!(
                    "this server does not know the job kind '{}'",
                    job.kind
                ))),
            };
            match verdict {
                Ok(()) => {
                    tracing::info!(job = %job.id, kind = %job.kind, "resuming an interrupted job");
                    self.spawn_job(job)?;
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, kind = %job.kind, error = ?e, "ending an interrupted job");
                    self.end_job(&mut job, JobState::Failed, &JobResponse::failure(&e));
                    self.store().write(move |t| t.put_job(&job)).await?;
                }
            }
        }
        Ok(())
    }

    /// Marks a job ended, with the response its status URL will give.
    fn end_job(&self, job: &mut JobRecord, state: JobState, response: &JobResponse) {
        job.state = state;
        job.updated = self.clock.now();
        job.result = Some(response.to_json());
    }

    /// Runs a job (already recorded, leased by this node) in the background.
    fn spawn_job(
        self: &Arc<Self>,
        job: JobRecord,
    ) -> Result<tokio::sync::watch::Receiver<Option<Result<Response>>>> {
        let kind = kind::<S>(&job.kind).ok_or_else(|| {
            Error::internal(format!(
                "this server does not know the job kind '{}'",
                job.kind
            ))
        })?;
        let interrupt = Interrupt::new();
        let (ended, receiver) = tokio::sync::watch::channel(None);
        self.running.lock().insert(
            job.id.clone(),
            Live {
                interrupt: interrupt.clone(),
                ended,
            },
        );
        let running = Running {
            mark: JobMark {
                id: job.id.clone(),
                node: self.node.clone(),
            },
            record: job,
            interrupt,
        };
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let id = running.record.id.clone();
            let outcome = if kind.in_lane() {
                let runner = Arc::clone(&engine);
                let lanes = &engine.lanes;
                let job = Arc::new(running);
                let held = Arc::clone(&job);
                let outcome = lanes.run(true, move || kind.run(&runner, &held)).await;
                engine.finish_job(&job, outcome).await
            } else {
                let runner = Arc::clone(&engine);
                let result = tokio::task::spawn_blocking(move || {
                    let outcome = kind.run(&runner, &running);
                    (running, outcome)
                })
                .await;
                match result {
                    Ok((running, outcome)) => engine.finish_job(&running, outcome).await,
                    Err(e) => Err(Error::internal(format!("a background job panicked: {e}"))),
                }
            };
            let live = engine.running.lock().remove(&id);
            if let Some(live) = live {
                let _ = live.ended.send(Some(outcome));
            }
        });
        Ok(receiver)
    }

    /// Records how a job ended, unless it no longer runs here (cancelled, taken over) or the
    /// server is stopping (it stays running, to be resumed). Returns the outcome to announce.
    async fn finish_job(&self, job: &Running, outcome: Result<Response>) -> Result<Response> {
        let interrupted = job.interrupt.is_cancelled();
        if interrupted && self.is_stopping() {
            return outcome;
        }
        let (state, response) = match &outcome {
            Ok(r) => match JobResponse::of(r) {
                Ok(response) => (JobState::Done, response),
                Err(e) => (JobState::Failed, JobResponse::failure(&e)),
            },
            Err(e) => {
                if !interrupted {
                    tracing::warn!(job = %job.record.id, error = ?e, "a background job failed");
                }
                (JobState::Failed, JobResponse::failure(e))
            }
        };
        let mut record = job.record.clone();
        self.end_job(&mut record, state, &response);
        let mark = job.mark.clone();
        let written = self
            .store()
            .write(move |t| {
                let now = wall_clock();
                if t.claim_job(&mark.id, &mark.node, now, now + micros(LEASE))? {
                    t.put_job(&record)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::error!(job = %job.record.id, error = ?e, "cannot record how a job ended");
        }
        outcome
    }

    /// Interrupts the jobs this node runs (a stopping server): they stay running in the
    /// store, and the next start resumes them.
    pub(crate) fn interrupt_jobs(&self) {
        for live in self.running.lock().values() {
            live.interrupt.cancel();
        }
    }

    /// The name this node holds leases under: `[server] node_id`, else the host's name.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// This host's name, the default node name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "flint".into()
    } else {
        name
    }
}

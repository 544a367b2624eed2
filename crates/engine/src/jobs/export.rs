//! The `export` job (Bulk Data Access IG `$export`, at system, `Patient` and `Group/[id]`
//! level): current resources written as NDJSON files, one series of files per type, in the
//! export directory (`Limits::export_dir/[job]/[Type]-[n].ndjson`), then served at
//! `[base]/__export/[job]/[file]` to the job's owner only.
//!
//! - **System level:** every current resource of the types asked for (all types without
//!   `_type`), read in write order straight from the store as the bytes it was stored as.
//! - **Patient and Group level:** the resources in the Patient compartment of every patient
//!   (or of the group's members), found through the index, many patients per query.
//! - `_since` keeps resources changed at or after the instant; `_typeFilter` keeps, for a
//!   type, the resources that match any of its searches.
//!
//! An export only reads, so after a restart it starts again from the beginning (its partial
//! files removed). Its files go with the job: when it is cancelled, or when its result
//! expires.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flint_fhir::{Error, IssueType, Result};
use flint_store::search::{Predicate, Prefix, SearchQuery};
use flint_store::{JobRecord, Store};
use serde_json::{json, Value};

use super::{Kind, Running};
use crate::request::{Payload, Response};
use crate::{Context, Engine};

/// The media type of the files.
pub const NDJSON: &str = "application/fhir+ndjson";

/// Resources per file: a client can fetch (and a server can serve) one file at a time.
const PER_FILE: u64 = 50_000;

/// Versions read from the store per step.
const BATCH: usize = 5_000;

/// Patients whose compartments one query reads.
const PATIENTS_PER_QUERY: usize = 500;

/// How often (in resources written) the job records how far it got.
const PROGRESS_EVERY: u64 = 50_000;

/// What an export is asked for, as its job record keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportRequest {
    /// `system`, `patient` or `group`.
    pub level: String,
    /// The group, at the group level.
    pub group: Option<String>,
    /// `_type`: the types exported (empty: all, or the whole compartment).
    pub types: Vec<String>,
    /// `_since`, as microseconds since the epoch.
    pub since: Option<i64>,
    /// `_typeFilter`: per type, the search queries (`code=…&date=…`) a resource must match
    /// one of.
    pub type_filters: Vec<(String, String)>,
    /// The kick-off request's URL, for the manifest.
    pub request_url: String,
}

impl ExportRequest {
    fn to_json(&self) -> Value {
        json!({
            "level": self.level,
            "group": self.group,
            "types": self.types,
            "since": self.since,
            "typeFilters": self.type_filters,
            "requestUrl": self.request_url,
        })
    }

    fn parse(v: &Value) -> Result<ExportRequest> {
        let bad = || Error::internal("a stored export request is malformed");
        let strings = |key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        Ok(ExportRequest {
            level: v["level"].as_str().ok_or_else(bad)?.to_string(),
            group: v["group"].as_str().map(str::to_string),
            types: strings("types"),
            since: v["since"].as_i64(),
            type_filters: v["typeFilters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect(),
            request_url: v["requestUrl"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// One output file as the manifest lists it.
struct Written {
    resource_type: String,
    file: String,
    count: u64,
}

/// The files of one type, rotated every [`PER_FILE`] resources.
struct Series<'d> {
    dir: &'d Path,
    resource_type: String,
    file: Option<(std::io::BufWriter<std::fs::File>, String, u64)>,
    done: Vec<Written>,
}

impl<'d> Series<'d> {
    fn new(dir: &'d Path, resource_type: &str) -> Series<'d> {
        Series {
            dir,
            resource_type: resource_type.to_string(),
            file: None,
            done: Vec::new(),
        }
    }

    fn write(&mut self, json: &[u8]) -> Result<()> {
        if self.file.as_ref().is_some_and(|(_, _, n)| *n >= PER_FILE) {
            self.close()?;
        }
        if self.file.is_none() {
            let name = format!("{}-{}.ndjson", self.resource_type, self.done.len() + 1);
            let f = std::fs::File::create(self.dir.join(&name)).map_err(io_fault)?;
            self.file = Some((std::io::BufWriter::with_capacity(1 << 20, f), name, 0));
        }
        if let Some((w, _, n)) = &mut self.file {
            w.write_all(json).map_err(io_fault)?;
            w.write_all(b"\n").map_err(io_fault)?;
            *n += 1;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((mut w, name, count)) = self.file.take() {
            w.flush().map_err(io_fault)?;
            w.into_inner()
                .map_err(|e| io_fault(e.into_error()))?
                .sync_all()
                .map_err(io_fault)?;
            self.done.push(Written {
                resource_type: self.resource_type.clone(),
                file: name,
                count,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Written>> {
        self.close()?;
        Ok(self.done)
    }
}

fn io_fault(e: std::io::Error) -> Error {
    let mut error = Error::internal("writing the export files failed");
    error.source = Some(Box::new(e));
    error
}

pub(crate) struct Export;

impl<S: Store> Kind<S> for Export {
    fn name(&self) -> &'static str {
        "export"
    }

    fn in_lane(&self) -> bool {
        false
    }

    fn run(&self, engine: &Arc<Engine<S>>, job: &Running) -> Result<Response> {
        let kept: Value = serde_json::from_str(&job.record.request)
            .map_err(|e| Error::internal(format!("a stored export request is not JSON: {e}")))?;
        let request = ExportRequest::parse(&kept["export"])?;
        let base_url = kept["baseUrl"].as_str().unwrap_or_default().to_string();
        let dir = engine.export_dir(&job.record.id)?;
        // A restart begins again: what an earlier run left is removed.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_fault)?;
        let transaction_time = flint_fhir::datetime::format_instant(job.record.created);
        let mut progress = Progress {
            engine,
            job,
            written: 0,
            next_report: PROGRESS_EVERY,
        };
        let written = engine.write_export(&request, &dir, &mut progress)?;
        let output: Vec<Value> = written
            .iter()
            .map(|w| {
                json!({
                    "type": w.resource_type,
                    "url": format!("{base_url}/__export/{}/{}", job.record.id, w.file),
                    "count": w.count,
                })
            })
            .collect();
        let manifest = json!({
            "transactionTime": transaction_time,
            "request": request.request_url,
            "requiresAccessToken": false,
            "output": output,
            "error": [],
        });
        Ok(Response::new(200, Payload::Value(manifest)))
    }

    fn resume(&self, _: &JobRecord) -> Result<()> {
        Ok(())
    }

    fn progress(&self, job: &JobRecord) -> String {
        let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
        format!(
            "{} resources exported",
            progress["written"].as_u64().unwrap_or(0)
        )
    }

    fn cancelled(&self, _: &JobRecord) -> String {
        "; its files are deleted".into()
    }
}

/// Counts what an export wrote, records it now and then, and stops the export when it was
/// cancelled.
struct Progress<'a, S> {
    engine: &'a Arc<Engine<S>>,
    job: &'a Running,
    written: u64,
    next_report: u64,
}

impl<S: Store> Progress<'_, S> {
    fn wrote(&mut self, n: u64) -> Result<()> {
        self.written += n;
        self.job.interrupt.check()?;
        if self.written >= self.next_report {
            self.next_report = self.written + PROGRESS_EVERY;
            let mut record = self.job.record.clone();
            record.progress = json!({"written": self.written}).to_string();
            record.updated = self.engine.clock.now();
            let mark = self.job.mark.clone();
            crate::lanes::block_on(self.engine.store().write(move |t| {
                mark.claim(t)?;
                t.put_job(&record)
            }))?;
        }
        Ok(())
    }
}

impl<S: Store> Engine<S> {
    /// Starts a bulk export for `ctx`'s caller. Returns the job's id.
    ///
    /// # Errors
    /// No export directory configured; a store fault.
    pub(crate) async fn start_export(
        self: &Arc<Self>,
        ctx: &Context,
        request: &ExportRequest,
    ) -> Result<String> {
        if self.limits.export_dir.is_none() {
            return Err(Error::not_supported(
                "bulk export is not available: this server has no export directory",
            ));
        }
        let kept = json!({"export": request.to_json(), "baseUrl": ctx.base_url});
        let (id, _) = self
            .start_job(ctx, "export", kept, json!({"written": 0}))
            .await?;
        Ok(id)
    }

    /// Where a job's files go.
    fn export_dir(&self, job: &str) -> Result<PathBuf> {
        let root = self
            .limits
            .export_dir
            .as_ref()
            .ok_or_else(|| Error::internal("no export directory"))?;
        Ok(root.join(job))
    }

    /// Removes a job's files (cancelled, or its result expired).
    pub(crate) fn remove_export(&self, job: &str) {
        if let Ok(dir) = self.export_dir(job) {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(job, error = %e, "cannot remove an export's files");
                }
            }
        }
    }

    /// Removes the files of exports whose job is gone (its result expired).
    pub(crate) fn remove_stale_exports(&self) -> Result<()> {
        let Some(root) = &self.limits.export_dir else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.store().job(&name)?.is_none() {
                self.remove_export(&name);
            }
        }
        Ok(())
    }

    /// `GET [base]/__export/[job]/[file]`: one file of a finished export, to its owner.
    ///
    /// # Errors
    /// 404 for a job or file that does not exist or is not the caller's; 409 while the
    /// export runs.
    pub(crate) fn export_file(&self, ctx: &Context, job: &str, file: &str) -> Result<Response> {
        let record = self.owned_job(ctx, job)?;
        if record.kind != "export" {
            return Err(Error::not_found(format!("there is no export '{job}'")));
        }
        match record.state {
            flint_store::JobState::Done => {}
            flint_store::JobState::Running => {
                return Err(Error::conflict(format!(
                    "the export '{job}' has not finished; poll its status URL"
                )))
            }
            _ => return Err(Error::not_found(format!("the export '{job}' has no files"))),
        }
        // Only names this server wrote: no path can leave the job's directory.
        let valid = file.ends_with(".ndjson")
            && file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !file.starts_with('.');
        let path = self.export_dir(job)?.join(file);
        let bytes = match valid.then(|| std::fs::read(&path)) {
            Some(Ok(bytes)) => bytes,
            _ => {
                return Err(Error::not_found(format!(
                    "the export '{job}' has no file '{file}'"
                )))
            }
        };
        let mut r = Response::new(200, Payload::Stored(bytes.into()));
        r.content_type = Some(NDJSON);
        Ok(r)
    }

    /// Writes the files of an export; returns them in the order written.
    fn write_export(
        self: &Arc<Self>,
        request: &ExportRequest,
        dir: &Path,
        progress: &mut Progress<'_, S>,
    ) -> Result<Vec<Written>> {
        let ctx = Context::new("");
        let snapshot = self.store().last_tx()?;
        let patients = match request.level.as_str() {
            "system" => None,
            "patient" => Some(self.all_patient_ids()?),
            "group" => Some(self.group_members(request.group.as_deref().unwrap_or_default())?),
            other => return Err(Error::internal(format!("unknown export level '{other}'"))),
        };
        let types: Vec<String> = match (&patients, request.types.is_empty()) {
            (_, false) => request.types.clone(),
            (None, true) => self.model().resource_types().to_vec(),
            (Some(_), true) => crate::operations::builtin::compartment_type_names(),
        };
        let mut written = Vec::new();
        for rt in &types {
            let mut series = Series::new(dir, rt);
            let filters: Vec<&str> = request
                .type_filters
                .iter()
                .filter(|(t, _)| t == rt)
                .map(|(_, q)| q.as_str())
                .collect();
            let mut narrowing: Vec<Vec<Vec<Predicate>>> = Vec::new();
            for query in &filters {
                let params = crate::search::parse_query(query);
                let limits = &self.limits;
                narrowing.push(
                    self.parse_search(
                        &ctx,
                        rt,
                        &params,
                        true,
                        limits.max_count,
                        limits.default_count,
                    )?
                    .query
                    .clauses,
                );
            }
            let since = request.since;
            match (&patients, narrowing.is_empty()) {
                (None, true) => self.export_scan(rt, since, &mut series, progress)?,
                (None, false) => {
                    self.export_queries(rt, narrowing, since, snapshot, &mut series, progress)?
                }
                (Some(ids), _) => {
                    let links = crate::operations::builtin::compartment_links(rt);
                    let filters = if narrowing.is_empty() {
                        vec![Vec::new()]
                    } else {
                        narrowing
                    };
                    let mut runs = Vec::new();
                    for chunk in ids.chunks(PATIENTS_PER_QUERY) {
                        let keys: Vec<String> =
                            chunk.iter().map(|id| format!("Patient/{id}")).collect();
                        let mut tie: Vec<Predicate> = links
                            .iter()
                            .filter(|p| p.as_str() != "{def}")
                            .map(|p| Predicate::Reference {
                                param: p.clone(),
                                keys: keys.clone(),
                            })
                            .collect();
                        if rt == "Patient" {
                            tie.extend(chunk.iter().map(|id| Predicate::Id(id.clone())));
                        }
                        if tie.is_empty() {
                            continue;
                        }
                        for filter in &filters {
                            let mut clauses = filter.clone();
                            clauses.push(tie.clone());
                            runs.push(clauses);
                        }
                    }
                    self.export_queries(rt, runs, since, snapshot, &mut series, progress)?
                }
            }
            written.extend(series.finish()?);
        }
        Ok(written)
    }

    /// Every current resource of a type, straight from the store in write order.
    fn export_scan(
        &self,
        rt: &str,
        since: Option<i64>,
        series: &mut Series<'_>,
        progress: &mut Progress<'_, S>,
    ) -> Result<()> {
        let mut after = 0;
        loop {
            let batch = self.store().current_versions(Some(rt), after, BATCH)?;
            let Some((last, _)) = batch.last() else {
                return Ok(());
            };
            after = *last;
            let mut n = 0;
            for (_, v) in &batch {
                if since.is_some_and(|s| v.last_updated < s) {
                    continue;
                }
                if let Some(json) = &v.json {
                    series.write(json)?;
                    n += 1;
                }
            }
            progress.wrote(n)?;
        }
    }

    /// The resources of a type matching any of `runs` (each a set of clauses), each once.
    fn export_queries(
        &self,
        rt: &str,
        runs: Vec<Vec<Vec<Predicate>>>,
        since: Option<i64>,
        snapshot: u64,
        series: &mut Series<'_>,
        progress: &mut Progress<'_, S>,
    ) -> Result<()> {
        let several = runs.len() > 1;
        let mut seen: HashSet<String> = HashSet::new();
        for clauses in runs {
            let mut query = SearchQuery {
                resource_type: rt.to_string(),
                clauses,
                snapshot: Some(snapshot),
                limit: BATCH,
                ..Default::default()
            };
            if let Some(since) = since {
                query.clauses.push(vec![Predicate::LastUpdated {
                    prefix: Prefix::Ge,
                    start: since,
                    end: since,
                }]);
            }
            loop {
                let page = self.store().search(&query)?;
                let mut n = 0;
                for v in &page.versions {
                    if several && !seen.insert(v.id.clone()) {
                        continue;
                    }
                    if let Some(json) = &v.json {
                        series.write(json)?;
                        n += 1;
                    }
                }
                progress.wrote(n)?;
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// The ids of every current patient (Patient-level export).
    fn all_patient_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut after = 0;
        loop {
            let batch = self
                .store()
                .current_versions(Some("Patient"), after, BATCH)?;
            let Some((last, _)) = batch.last() else {
                return Ok(ids);
            };
            after = *last;
            ids.extend(batch.into_iter().map(|(_, v)| v.id));
        }
    }

    /// The patients a Group lists as members (Group-level export).
    pub(crate) fn group_members(&self, group: &str) -> Result<Vec<String>> {
        let v = self.read("Group", group)?;
        let resource = crate::parse_stored(&v)?;
        let mut ids = Vec::new();
        for member in resource["member"].as_array().into_iter().flatten() {
            if let Some(id) = member["entity"]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("Patient/"))
            {
                if !id.contains('/') {
                    ids.push(id.to_string());
                }
            }
        }
        if ids.is_empty() {
            return Err(Error::new(
                IssueType::NotFound,
                format!("Group/{group} lists no Patient among its members"),
            )
            .with_status(404));
        }
        Ok(ids)
    }
}

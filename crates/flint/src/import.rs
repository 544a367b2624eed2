//! `flint import`: loads Bundles and NDJSON into the data directory through the same engine
//! the server uses, so every resource is validated and written transactionally. Transaction
//! Bundles commit whole or not at all; every other resource is written on its own (update
//! when it has an id, create otherwise), gathered into batch Bundles of [`CHUNK`] resources so
//! that each chunk is one store transaction (and several chunks share a group commit). An
//! interrupted import (Ctrl-C) stops reading, finishes what is in flight, and reports exactly
//! what was written and what was not.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flint_engine::{Body, Context, Engine, Headers, Interaction, Request};
use flint_fhir::Error;
use flint_store_sqlite::SqliteStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;

/// Resources written per batch (one store transaction).
const CHUNK: usize = 256;

/// Batches in flight at once (they wait in the request core's costly lane).
const IN_FLIGHT: usize = 4;

struct Importer {
    engine: Arc<Engine<SqliteStore>>,
    ctx: Context,
    imported: AtomicU64,
    rejected: Mutex<Vec<(String, String)>>,
    bundles: Semaphore,
    writes: Arc<Semaphore>,
    /// Resources waiting to be sent as a batch, with where each came from.
    pending: std::sync::Mutex<Vec<(String, Value)>>,
    /// Set by Ctrl-C: stop reading.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Files read to the end.
    finished_files: AtomicU64,
}

pub async fn run(config: &Config, paths: &[PathBuf], concurrency: usize) -> Result<(), String> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if files.is_empty() {
        return Err("no .json or .ndjson files found".into());
    }
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let store = SqliteStore::open(&config.storage.data_dir)
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let base = if config.server.base_url.is_empty() {
        format!(
            "http://localhost:{}{}",
            config.server.port, config.server.context_path
        )
    } else {
        config.server.base_url.clone()
    };
    let importer = Arc::new(Importer {
        engine: Engine::with(
            store.clone(),
            import_limits(concurrency),
            Box::new(flint_engine::paging::SystemClock),
        ),
        ctx: Context::new(base),
        imported: AtomicU64::new(0),
        rejected: Mutex::new(Vec::new()),
        bundles: Semaphore::new(concurrency),
        writes: Arc::new(Semaphore::new(IN_FLIGHT)),
        pending: std::sync::Mutex::new(Vec::new()),
        stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        finished_files: AtomicU64::new(0),
    });
    let file_count = files.len();
    {
        let stopping = Arc::clone(&importer.stopping);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("flint: interrupted; finishing the writes in flight");
                stopping.store(true, Ordering::SeqCst);
            }
        });
    }
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for file in files {
        if importer.stopping.load(Ordering::SeqCst) {
            break;
        }
        let permit_holder = Arc::clone(&importer);
        let bar = bar.clone();
        // Bound the files (and so the memory) in flight.
        let permit = permit_holder
            .bundles
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        permit.forget();
        tasks.spawn(async move {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if permit_holder.import_file(&file).await {
                permit_holder.finished_files.fetch_add(1, Ordering::Relaxed);
            }
            permit_holder.bundles.add_permits(1);
            bar.inc(size);
            bar.set_message(format!(
                "{} resources",
                permit_holder.imported.load(Ordering::Relaxed)
            ));
        });
    }
    while tasks.join_next().await.is_some() {}
    let rest = std::mem::take(&mut *importer.pending.lock().unwrap_or_else(|e| e.into_inner()));
    if !rest.is_empty() {
        importer.send_batch(rest).await;
    }
    // Wait for the last batches.
    let _all = importer
        .writes
        .acquire_many(IN_FLIGHT as u32)
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    store.close();
    let elapsed = started.elapsed().as_secs_f64();
    let imported = importer.imported.load(Ordering::Relaxed);
    let rejected = importer.rejected.lock().await;
    println!(
        "imported {imported} resources in {elapsed:.1}s ({:.0} resources/s); {} rejected",
        imported as f64 / elapsed.max(1e-9),
        rejected.len()
    );
    for (source, reason) in rejected.iter() {
        eprintln!("rejected {source}: {reason}");
    }
    if importer.stopping.load(Ordering::SeqCst) {
        let finished = importer.finished_files.load(Ordering::Relaxed);
        return Err(format!(
            "interrupted: {imported} resources were written and {} rejected; {finished} of \
             {file_count} files were read to the end (what was written is durable; import the \
             remaining files again, resources with ids are updated in place)",
            rejected.len()
        ));
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} items were rejected (listed above)",
            rejected.len()
        ))
    }
}

/// The request core's limits for an import: Bundles are its costly requests, and a Bundle's
/// thread mostly waits for its commit, so there are as many threads as Bundles in flight
/// (their commits then share group commits), at normal priority (nothing else is served).
fn import_limits(concurrency: usize) -> flint_engine::Limits {
    let lanes = flint_engine::lanes::LaneLimits {
        costly_threads: concurrency.max(1),
        costly_queue: concurrency + IN_FLIGHT,
        costly_niceness: 0,
        ..Default::default()
    };
    flint_engine::Limits {
        lanes,
        ..Default::default()
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, out)?;
        }
    } else if path
        .extension()
        .is_some_and(|e| e == "json" || e == "ndjson")
    {
        out.push(path.to_path_buf());
    } else if !path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file or folder",
        ));
    }
    Ok(())
}

impl Importer {
    async fn reject(&self, source: String, reason: impl std::fmt::Display) {
        self.rejected
            .lock()
            .await
            .push((source, reason.to_string()));
    }

    /// Imports one file; `false` when an interruption stopped it before its end.
    async fn import_file(self: &Arc<Self>, file: &Path) -> bool {
        let name = file.display().to_string();
        let text = match tokio::fs::read(file).await {
            Ok(t) => t,
            Err(e) => {
                self.reject(name, e).await;
                return true;
            }
        };
        if file.extension().is_some_and(|e| e == "ndjson") {
            for (i, line) in text.split(|b| *b == b'\n').enumerate() {
                if self.stopping.load(Ordering::SeqCst) {
                    return false;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Value>(line) {
                    Ok(resource) => self.write_one(format!("{name}:{}", i + 1), resource).await,
                    Err(e) => {
                        self.reject(format!("{name}:{}", i + 1), format!("not JSON: {e}"))
                            .await
                    }
                }
            }
            return true;
        }
        let value: Value = match serde_json::from_slice(&text) {
            Ok(v) => v,
            Err(e) => {
                self.reject(name, format!("not JSON: {e}")).await;
                return true;
            }
        };
        let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
        match value
            .get("type")
            .and_then(Value::as_str)
            .filter(|_| is_bundle)
        {
            Some("transaction") => {
                let entries = value
                    .get("entry")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len) as u64;
                match self.bundle(value).await {
                    Ok(_) => {
                        self.imported.fetch_add(entries, Ordering::Relaxed);
                    }
                    Err(e) => self.reject(name, describe(&e)).await,
                }
            }
            Some("batch") => {
                // As the server would run it; each entry's outcome is in the response.
                match self.bundle(value).await {
                    Ok(text) => self.count_batch_response(&name, &text).await,
                    Err(e) => self.reject(name, describe(&e)).await,
                }
            }
            Some(_) => {
                // collection, searchset, history, document...: each entry's resource on its
                // own; entries without a resource (a response, a search mode) carry no data.
                let Some(Value::Array(entries)) = value.get("entry").cloned() else {
                    return true;
                };
                for (i, mut entry) in entries.into_iter().enumerate() {
                    if self.stopping.load(Ordering::SeqCst) {
                        return false;
                    }
                    if let Some(resource) = entry.get_mut("resource").map(Value::take) {
                        self.write_one(format!("{name} entry {i}"), resource).await;
                    }
                }
            }
            None => self.write_one(name, value).await,
        }
        true
    }

    async fn count_batch_response(&self, name: &str, text: &str) {
        let count = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v["entry"].as_array().map(Vec::len))
            .unwrap_or(0);
        let sources: Vec<String> = (0..count).map(|i| format!("{name} entry {i}")).collect();
        self.count_batch_entries(&sources, text).await;
    }

    /// Queues one resource; a full chunk goes out as a batch.
    async fn write_one(self: &Arc<Self>, source: String, resource: Value) {
        if !resource.get("resourceType").is_some_and(Value::is_string) {
            return self
                .reject(source, "the resource has no resourceType")
                .await;
        }
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((source, resource));
            (pending.len() >= CHUNK).then(|| std::mem::take(&mut *pending))
        };
        if let Some(chunk) = full {
            self.send_batch(chunk).await;
        }
    }

    /// Sends resources as one batch Bundle in the background (bounded by the in-flight
    /// permits): an update for each resource with an id, a create for the others.
    async fn send_batch(self: &Arc<Self>, chunk: Vec<(String, Value)>) {
        let Ok(permit) = Arc::clone(&self.writes).acquire_owned().await else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut sources = Vec::with_capacity(chunk.len());
            let mut entries = Vec::with_capacity(chunk.len());
            for (source, resource) in chunk {
                let rt = resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let url = match resource.get("id").and_then(Value::as_str) {
                    Some(id) => (format!("{rt}/{id}"), "PUT"),
                    None => (rt, "POST"),
                };
                entries.push(serde_json::json!({
                    "resource": resource,
                    "request": {"method": url.1, "url": url.0}
                }));
                sources.push(source);
            }
            let bundle =
                serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
            match this.bundle(bundle).await {
                Ok(text) => this.count_batch_entries(&sources, &text).await,
                Err(e) => {
                    let reason = describe(&e);
                    for source in sources {
                        this.reject(source, &reason).await;
                    }
                }
            }
            drop(permit);
        });
    }

    /// Counts a batch response's entries, each against the source it came from.
    async fn count_batch_entries(&self, sources: &[String], text: &str) {
        let Ok(response) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let entries = response.get("entry").and_then(Value::as_array);
        for (i, entry) in entries.into_iter().flatten().enumerate() {
            let status = entry
                .pointer("/response/status")
                .and_then(Value::as_str)
                .unwrap_or("");
            if status.starts_with('2') {
                self.imported.fetch_add(1, Ordering::Relaxed);
            } else {
                let reason = entry
                    .pointer("/response/outcome")
                    .map(describe_outcome)
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| status.to_string());
                let source = sources.get(i).cloned().unwrap_or_default();
                self.reject(source, reason).await;
            }
        }
    }

    /// What every request of the import sends: no representation back.
    fn headers() -> Headers {
        Headers {
            prefer: Some("return=minimal".into()),
            ..Headers::default()
        }
    }

    /// A batch or transaction Bundle through the request core; the response Bundle's JSON.
    async fn bundle(&self, bundle: Value) -> Result<String, Error> {
        let request = Request::new(Interaction::Bundle)
            .with_headers(Self::headers())
            .with_body(Body::Json(bundle));
        let response = self.engine.handle(self.ctx.clone(), request).await?;
        Ok(response.payload_text().unwrap_or_default().into_owned())
    }
}

/// An OperationOutcome's issues as one line, each with the elements it names.
fn describe_outcome(outcome: &Value) -> String {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let text = i["diagnostics"].as_str().unwrap_or("");
            let at: Vec<&str> = i["expression"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if at.is_empty() {
                text.to_string()
            } else {
                format!("{text} ({})", at.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe(e: &Error) -> String {
    e.issues
        .iter()
        .map(|i| {
            if i.expression.is_empty() {
                i.diagnostics.clone()
            } else {
                format!("{} ({})", i.diagnostics, i.expression.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

//! `flint import`: loads Bundles and NDJSON into the data directory through the same engine
//! the server uses, so every resource is validated and written transactionally. Transaction
//! Bundles commit whole or not at all; every other resource is written on its own (update
//! when it has an id, create otherwise). Many writes are kept in flight so that the store's
//! group commit can batch them.

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

/// Single-resource writes in flight at once.
const IN_FLIGHT: usize = 512;

struct Importer {
    engine: Arc<Engine<SqliteStore>>,
    ctx: Context,
    imported: AtomicU64,
    rejected: Mutex<Vec<(String, String)>>,
    bundles: Semaphore,
    writes: Arc<Semaphore>,
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
        engine: Engine::new(store.clone()),
        ctx: Context::new(base),
        imported: AtomicU64::new(0),
        rejected: Mutex::new(Vec::new()),
        bundles: Semaphore::new(concurrency),
        writes: Arc::new(Semaphore::new(IN_FLIGHT)),
    });
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for file in files {
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
            permit_holder.import_file(&file).await;
            permit_holder.bundles.add_permits(1);
            bar.inc(size);
            bar.set_message(format!(
                "{} resources",
                permit_holder.imported.load(Ordering::Relaxed)
            ));
        });
    }
    while tasks.join_next().await.is_some() {}
    // Wait for the last single-resource writes.
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
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} items were rejected (listed above)",
            rejected.len()
        ))
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

    async fn import_file(self: &Arc<Self>, file: &Path) {
        let name = file.display().to_string();
        let text = match tokio::fs::read(file).await {
            Ok(t) => t,
            Err(e) => return self.reject(name, e).await,
        };
        if file.extension().is_some_and(|e| e == "ndjson") {
            for (i, line) in text.split(|b| *b == b'\n').enumerate() {
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
            return;
        }
        let value: Value = match serde_json::from_slice(&text) {
            Ok(v) => v,
            Err(e) => return self.reject(name, format!("not JSON: {e}")).await,
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
                    return;
                };
                for (i, mut entry) in entries.into_iter().enumerate() {
                    if let Some(resource) = entry.get_mut("resource").map(Value::take) {
                        self.write_one(format!("{name} entry {i}"), resource).await;
                    }
                }
            }
            None => self.write_one(name, value).await,
        }
    }

    async fn count_batch_response(&self, name: &str, text: &str) {
        let Ok(response) = serde_json::from_str::<Value>(text) else {
            return;
        };
        for (i, entry) in response
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let status = entry
                .pointer("/response/status")
                .and_then(Value::as_str)
                .unwrap_or("");
            if status.starts_with('2') {
                self.imported.fetch_add(1, Ordering::Relaxed);
            } else {
                let reason = entry
                    .pointer("/response/outcome/issue/0/diagnostics")
                    .and_then(Value::as_str)
                    .unwrap_or(status)
                    .to_string();
                self.reject(format!("{name} entry {i}"), reason).await;
            }
        }
    }

    /// Writes one resource in the background, bounded by the in-flight permits.
    async fn write_one(self: &Arc<Self>, source: String, resource: Value) {
        let Ok(permit) = Arc::clone(&self.writes).acquire_owned().await else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = this.upsert(resource).await;
            match result {
                Ok(()) => {
                    this.imported.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => this.reject(source, describe(&e)).await,
            }
            drop(permit);
        });
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

    /// One resource through the request core: an update when it has an id, else a create.
    async fn upsert(&self, resource: Value) -> Result<(), Error> {
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("the resource has no resourceType"))?
            .to_string();
        let interaction = match resource.get("id").and_then(Value::as_str) {
            Some(id) => Interaction::Update {
                rt,
                id: id.to_string(),
            },
            None => Interaction::Create { rt },
        };
        let request = Request::new(interaction)
            .with_headers(Self::headers())
            .with_body(Body::Json(resource));
        self.engine.handle(self.ctx.clone(), request).await.map(drop)
    }
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

//! The writer thread: group commit of queued jobs, each in its own savepoint.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flint_store::{
    Error, IndexedParam, JobRecord, NewVersion, Result, Transaction, TxNumber, Version,
};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::{fault, read_current};

/// Most jobs committed together.
const MAX_BATCH: usize = 512;

/// What a job hands back after it ran: whether it succeeded (keep its writes) and a
/// completion to call with the outcome of the commit.
type Ran = (bool, Completion);

/// Called with the commit's outcome (an error message, or none when durable).
type Completion = Box<dyn FnOnce(Option<&str>) + Send>;

/// A type-erased job.
pub type Job = Box<dyn FnOnce(&mut dyn Transaction) -> Ran + Send>;

/// Wraps a typed job; the receiver yields its result once the commit is durable.
pub fn job<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let job: Job = Box::new(move |txn| match f(txn) {
        Ok(value) => (
            true,
            Box::new(move |commit_error: Option<&str>| {
                let outcome = match commit_error {
                    None => Ok(value),
                    Some(e) => Err(Error::internal(format!("commit failed: {e}"))),
                };
                let _ = sender.send(outcome);
            }),
        ),
        Err(e) => (
            false,
            Box::new(move |_| {
                let _ = sender.send(Err(e));
            }),
        ),
    });
    (job, receiver)
}

/// Starts the writer thread; it publishes the number of each transaction it commits in
/// `last_tx` (before it answers the transaction's callers).
pub fn start(
    conn: Connection,
    last_tx: Arc<std::sync::atomic::AtomicU64>,
    versions: Arc<crate::cache::VersionCache>,
) -> Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let next_tx: i64 = conn
        .query_row("SELECT COALESCE(MAX(t), 0) + 1 FROM tx", [], |r| r.get(0))
        .map_err(fault)?;
    let last_time: i64 = conn
        .query_row("SELECT COALESCE(MAX(instant), 0) FROM tx", [], |r| r.get(0))
        .map_err(fault)?;
    last_tx.store(next_tx as u64 - 1, std::sync::atomic::Ordering::SeqCst);
    let thread = std::thread::Builder::new()
        .name("flint-writer".into())
        .spawn(move || {
            Writer {
                conn,
                params: Default::default(),
                rows: Default::default(),
                next_tx: next_tx as u64,
                last_time,
                full_text: Vec::new(),
                last_tx,
                versions,
                written: Vec::new(),
            }
            .run(receiver)
        })
        .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
    Ok((sender, thread))
}

struct Writer {
    conn: Connection,
    params: crate::index::ParamIds,
    /// The running job's index rows, written when it ends (see `index::Rows`).
    rows: crate::index::Rows,
    next_tx: TxNumber,
    last_time: i64,
    /// Full-text rows of the batch's committed jobs, written just before the commit.
    full_text: Vec<crate::index::FullTextRow>,
    /// The last committed transaction, for readers (`Store::last_tx`).
    last_tx: Arc<std::sync::atomic::AtomicU64>,
    /// The readers' cache of current versions, told of every commit before its callers are.
    versions: Arc<crate::cache::VersionCache>,
    /// The resources (cache keys) the batch's committed jobs wrote.
    written: Vec<String>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        // All senders are gone: checkpoint so the database file is complete on its own.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let saved = (self.next_tx, self.last_time);
        let mut completions = Vec::with_capacity(batch.len());
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cannot begin a write transaction");
            for job in batch {
                // The job never runs; its caller hears of the failure.
                let (_, done) = job(&mut Refused);
                done(Some(&msg));
            }
            return;
        }
        for job in batch {
            completions.push(self.run_job(job));
        }
        let mut rows = std::mem::take(&mut self.full_text);
        // One row per version: a version re-indexed in the batch that wrote it has two, with
        // the same text. Mostly in order already, so the sort is a single pass.
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        let commit = crate::index::write_full_text(&self.conn, rows)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        let written = std::mem::take(&mut self.written);
        let error = match commit {
            Ok(()) => {
                self.versions.committed(&written);
                self.last_tx
                    .store(self.next_tx - 1, std::sync::atomic::Ordering::SeqCst);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; rolling back");
                let _ = self.conn.execute_batch("ROLLBACK");
                (self.next_tx, self.last_time) = saved;
                self.params.clear();
                Some(e.to_string())
            }
        };
        for done in completions {
            done(error.as_deref());
        }
    }

    fn run_job(&mut self, job: Job) -> Completion {
        if let Err(e) = self.conn.execute_batch("SAVEPOINT job") {
            let msg = e.to_string();
            let (_, done) = job(&mut Refused);
            return Box::new(move |_| done(Some(&msg)));
        }
        let now = now_micros().max(self.last_time + 1);
        let mut txn = SqliteTransaction {
            conn: &self.conn,
            params: &mut self.params,
            rows: &mut self.rows,
            tx: self.next_tx,
            now,
            wrote: false,
            failed: None,
            full_text: Vec::new(),
            written: Vec::new(),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| job(&mut txn)));
        let (wrote, failed) = (txn.wrote, txn.failed.take());
        let full_text = std::mem::take(&mut txn.full_text);
        let written = std::mem::take(&mut txn.written);
        // The job's own verdict; a backend error it saw (or the flush of its index rows)
        // overrules it.
        let ok = matches!(&ran, Ok((true, _)));
        let mut failed = failed;
        if ok && failed.is_none() {
            if let Err(e) = self.rows.flush(&self.conn) {
                failed = Some(e.to_string());
            }
        }
        let keep = ok && failed.is_none();
        self.rows.clear();
        let recorded = keep
            && (!wrote
                || self
                    .conn
                    .prepare_cached(
                        "INSERT INTO tx (t, instant, last_seq)
                         VALUES (?1, ?2, (SELECT coalesce(max(seq), 0) FROM resource))",
                    )
                    .and_then(|mut s| s.execute((self.next_tx as i64, now)))
                    .is_ok());
        if recorded {
            let _ = self.conn.execute_batch("RELEASE job");
            self.full_text.extend(full_text);
            self.written.extend(written);
            if wrote {
                self.next_tx += 1;
                self.last_time = now;
            }
        } else {
            let _ = self.conn.execute_batch("ROLLBACK TO job; RELEASE job");
            // Parameter ids the job created are gone with it.
            self.params.clear();
        }
        match ran {
            Ok((_, done)) if keep && !recorded => {
                Box::new(move |_| done(Some("cannot record the transaction")))
            }
            Ok((_, done)) => match failed {
                // The job swallowed a backend error but returned Ok: it was rolled back, and
                // its caller hears of the fault.
                Some(msg) if ok => Box::new(move |_| done(Some(&msg))),
                _ => done,
            },
            Err(_) => {
                tracing::error!("a write job panicked; its transaction was rolled back");
                Box::new(|_| {})
            }
        }
    }
}

/// A transaction handed to jobs that cannot run because the database refused to start one.
struct Refused;

impl Transaction for Refused {
    fn tx(&self) -> TxNumber {
        0
    }
    fn now(&self) -> i64 {
        0
    }
    fn current(&mut self, _: &str, _: &str) -> Result<Option<Version>> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn version(&mut self, _: &str, _: &str, _: u64) -> Result<Option<Version>> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn put(&mut self, _: NewVersion) -> Result<Version> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn delete_history(&mut self, _: &str, _: &str) -> Result<u64> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn add_paging_key(&mut self, _: i64, _: &[u8], _: usize) -> Result<u64> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn search(&mut self, _: &flint_store::search::SearchQuery) -> Result<Vec<Version>> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn reindex(&mut self, _: &str, _: &str, _: u64, _: Vec<IndexedParam>) -> Result<bool> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn rewrite_meta(
        &mut self,
        _: &str,
        _: &str,
        _: u64,
        _: String,
        _: Vec<IndexedParam>,
    ) -> Result<bool> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn purge(&mut self, _: &str, _: &str) -> Result<u64> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn put_job(&mut self, _: &JobRecord) -> Result<()> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn prune_jobs(&mut self, _: i64) -> Result<u64> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn claim_job(&mut self, _: &str, _: &str, _: i64, _: i64) -> Result<bool> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn note_job_commit(&mut self, _: &str) -> Result<()> {
        Err(Error::internal("the store cannot start a transaction"))
    }
    fn compact(&mut self) -> Result<Vec<String>> {
        Err(Error::internal("the store cannot start a transaction"))
    }
}

struct SqliteTransaction<'c> {
    conn: &'c Connection,
    params: &'c mut crate::index::ParamIds,
    /// Index rows written so far, not yet in their tables: flushed before the index is read.
    rows: &'c mut crate::index::Rows,
    tx: TxNumber,
    now: i64,
    wrote: bool,
    /// A backend error seen by this transaction: the job must not commit after one.
    failed: Option<String>,
    /// Full-text rows of the versions it wrote (see `index::FullTextRow`).
    full_text: Vec<crate::index::FullTextRow>,
    /// The resources it wrote a version of (cache keys).
    written: Vec<String>,
}

impl SqliteTransaction<'_> {
    fn check<T>(&mut self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| {
            self.failed = Some(e.to_string());
            fault(e)
        })
    }

    /// Replaces the index rows of version `seq` (its full-text row aside); returns the
    /// full-text row the new values would have.
    fn replace_index(
        &mut self,
        resource_type: &str,
        seq: i64,
        index: &[IndexedParam],
    ) -> Result<Option<crate::index::FullTextRow>> {
        // Only this version's own rows must be in their tables before they are deleted.
        if self.rows.holds(seq) {
            self.flush()?;
        }
        let r = crate::index::delete_for_version(self.conn, seq);
        self.check(r)?;
        let r = crate::index::write(self.conn, self.params, self.rows, resource_type, seq, index);
        self.check(r)
    }

    /// Writes the gathered index rows: whatever reads the index next must see them.
    fn flush(&mut self) -> Result<()> {
        let r = self.rows.flush(self.conn);
        self.check(r)
    }
}

impl Transaction for SqliteTransaction<'_> {
    fn tx(&self) -> TxNumber {
        self.tx
    }

    fn now(&self) -> i64 {
        self.now
    }

    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<Version>> {
        let r = read_current(self.conn, resource_type, id);
        Ok(self.check(r)?.map(|(v, _)| v))
    }

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<Version>> {
        let r = crate::read_version(self.conn, resource_type, id, version);
        self.check(r)
    }

    fn put(&mut self, new: NewVersion) -> Result<Version> {
        self.written
            .push(crate::cache::key(&new.resource_type, &new.id));
        // A first version needs no look-up: the unique (type, id, version) index refuses it
        // if the resource exists after all.
        let current = if new.version == 1 {
            None
        } else {
            let r = read_current(self.conn, &new.resource_type, &new.id);
            self.check(r)?
        };
        let expected = current.as_ref().map_or(1, |(v, _)| v.version + 1);
        if new.version != expected {
            return Err(Error::conflict(format!(
                "{}/{} is at version {}, cannot write version {}",
                new.resource_type,
                new.id,
                expected - 1,
                new.version
            )));
        }
        if let Some((_, seq)) = current {
            let r = self
                .conn
                .prepare_cached("UPDATE resource SET t_end = ?1, ended_at = ?2 WHERE seq = ?3")
                .and_then(|mut s| s.execute((self.tx as i64, self.now, seq)));
            self.check(r)?;
            let r = self
                .conn
                .prepare_cached("INSERT INTO ended (seq, t_end) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute((seq, self.tx as i64)));
            self.check(r)?;
        }
        let r = self
            .conn
            .prepare_cached(
                "INSERT INTO resource (type, id, version, t, last_updated, method, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute((
                    &new.resource_type,
                    &new.id,
                    new.version as i64,
                    self.tx as i64,
                    self.now,
                    i64::from(new.method.to_code()),
                    new.json.as_deref().map(str::as_bytes),
                ))
            });
        if let Err(rusqlite::Error::SqliteFailure(e, _)) = &r {
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
                return Err(Error::conflict(format!(
                    "{}/{} already exists",
                    new.resource_type, new.id
                )));
            }
        }
        self.check(r)?;
        let seq = self.conn.last_insert_rowid();
        let r = crate::index::write(
            self.conn,
            self.params,
            self.rows,
            &new.resource_type,
            seq,
            &new.index,
        );
        let row = self.check(r)?;
        self.full_text.extend(row);
        self.wrote = true;
        Ok(Version {
            resource_type: new.resource_type,
            id: new.id,
            version: new.version,
            tx: self.tx,
            last_updated: self.now,
            method: new.method,
            json: new.json.map(bytes::Bytes::from),
        })
    }

    fn search(&mut self, query: &flint_store::search::SearchQuery) -> Result<Vec<Version>> {
        // The writer must not be held by a costly search: it stops at the query's interrupt.
        query.interrupt.check()?;
        self.flush()?;
        let watch = query.interrupt.clone();
        self.conn
            .progress_handler(crate::PROGRESS_STEPS, Some(move || watch.is_due()));
        let r = crate::run_search(self.conn, None, query);
        self.conn
            .progress_handler(crate::PROGRESS_STEPS, None::<fn() -> bool>);
        match r {
            Err(_) if query.interrupt.is_due() => {
                self.failed = Some("a search inside the write was interrupted".into());
                Err(query.interrupt.error())
            }
            other => Ok(self.check(other)?.versions),
        }
    }

    fn unchanged_since(&mut self, resource_type: &str, tx: TxNumber) -> Result<bool> {
        let r = self
            .conn
            .prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM resource INDEXED BY resource_type_seq
                   WHERE type = ?1
                     AND seq > coalesce((SELECT last_seq FROM tx WHERE t = ?2), 0))",
            )
            .and_then(|mut s| s.query_row((resource_type, tx as i64), |r| r.get::<_, bool>(0)));
        self.check(r)
    }

    fn add_paging_key(&mut self, created: i64, key: &[u8], keep: usize) -> Result<u64> {
        let r = self
            .conn
            .prepare_cached("INSERT INTO paging_key (created, key) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute((created, key)));
        self.check(r)?;
        let id = self.conn.last_insert_rowid();
        let r = self
            .conn
            .prepare_cached("DELETE FROM paging_key WHERE id NOT IN (SELECT id FROM paging_key ORDER BY id DESC LIMIT ?1)")
            .and_then(|mut s| s.execute([keep as i64]));
        self.check(r)?;
        Ok(id as u64)
    }

    fn delete_history(&mut self, resource_type: &str, id: &str) -> Result<u64> {
        self.flush()?;
        let r = crate::index::delete_for_history(self.conn, resource_type, id);
        self.check(r)?;
        let r = self
            .conn
            .prepare_cached(
                "DELETE FROM ended WHERE seq IN
                 (SELECT seq FROM resource WHERE type = ?1 AND id = ?2 AND t_end IS NOT NULL)",
            )
            .and_then(|mut s| s.execute((resource_type, id)));
        self.check(r)?;
        let r = self
            .conn
            .prepare_cached(
                "DELETE FROM resource WHERE type = ?1 AND id = ?2 AND t_end IS NOT NULL",
            )
            .and_then(|mut s| s.execute((resource_type, id)));
        let n = self.check(r)?;
        if n > 0 {
            self.wrote = true;
        }
        Ok(n as u64)
    }

    fn reindex(
        &mut self,
        resource_type: &str,
        id: &str,
        version: u64,
        index: Vec<IndexedParam>,
    ) -> Result<bool> {
        let r = self
            .conn
            .prepare_cached(
                "SELECT seq FROM resource WHERE type = ?1 AND id = ?2 AND version = ?3
                 AND t_end IS NULL AND json IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_row((resource_type, id, version as i64), |r| r.get::<_, i64>(0))
                    .optional()
            });
        let Some(seq) = self.check(r)? else {
            return Ok(false);
        };
        let row = self.replace_index(resource_type, seq, &index)?;
        // Full text depends on the resource alone, not on the search parameters: a version
        // that has its row keeps it. Rewriting it cost a third of the writer's time (each
        // FTS5 delete flushes and merges segments).
        if let Some(row) = row {
            let r = crate::index::has_full_text(self.conn, seq);
            if !self.check(r)? {
                self.full_text.push(row);
            }
        }
        Ok(true)
    }

    fn rewrite_meta(
        &mut self,
        resource_type: &str,
        id: &str,
        version: u64,
        json: String,
        index: Vec<IndexedParam>,
    ) -> Result<bool> {
        let r = self
            .conn
            .prepare_cached(
                "SELECT seq FROM resource WHERE type = ?1 AND id = ?2 AND version = ?3
                 AND json IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_row((resource_type, id, version as i64), |r| r.get::<_, i64>(0))
                    .optional()
            });
        let Some(seq) = self.check(r)? else {
            return Ok(false);
        };
        let r = self
            .conn
            .prepare_cached("UPDATE resource SET json = ?1 WHERE seq = ?2")
            .and_then(|mut s| s.execute((json.as_bytes(), seq)));
        self.check(r)?;
        self.written.push(crate::cache::key(resource_type, id));
        // The version's own rows (tags, profiles, security labels among them) are written
        // anew; its full-text row stays (meta holds no narrative, and codes are not text).
        self.replace_index(resource_type, seq, &index)?;
        self.wrote = true;
        Ok(true)
    }

    fn purge(&mut self, resource_type: &str, id: &str) -> Result<u64> {
        self.flush()?;
        let r = self
            .conn
            .prepare_cached("SELECT seq FROM resource WHERE type = ?1 AND id = ?2")
            .and_then(|mut s| {
                s.query_map((resource_type, id), |r| r.get::<_, i64>(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()
            });
        let seqs = self.check(r)?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let r = crate::index::delete_for_resource(self.conn, resource_type, id);
        self.check(r)?;
        // Full-text rows this job gathered for the resource are not written.
        self.full_text.retain(|row| !seqs.contains(&row.seq));
        let r = self
            .conn
            .prepare_cached(
                "DELETE FROM ended WHERE seq IN (SELECT seq FROM resource WHERE type = ?1 AND id = ?2)",
            )
            .and_then(|mut s| s.execute((resource_type, id)));
        self.check(r)?;
        let r = self
            .conn
            .prepare_cached("DELETE FROM resource WHERE type = ?1 AND id = ?2")
            .and_then(|mut s| s.execute((resource_type, id)));
        let n = self.check(r)?;
        self.written.push(crate::cache::key(resource_type, id));
        self.wrote = true;
        Ok(n as u64)
    }

    fn put_job(&mut self, job: &JobRecord) -> Result<()> {
        let r = self
            .conn
            .prepare_cached(
                "INSERT INTO job (id, kind, state, request, progress, result, created, updated,
                                  owner, node, lease_until, commits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET
                     kind = excluded.kind, state = excluded.state, request = excluded.request,
                     progress = excluded.progress, result = excluded.result,
                     created = excluded.created, updated = excluded.updated,
                     owner = excluded.owner, node = excluded.node,
                     lease_until = excluded.lease_until",
            )
            .and_then(|mut s| {
                s.execute((
                    &job.id,
                    &job.kind,
                    job.state.as_str(),
                    &job.request,
                    &job.progress,
                    &job.result,
                    job.created,
                    job.updated,
                    &job.owner,
                    &job.node,
                    job.lease_until,
                    job.commits as i64,
                ))
            });
        self.check(r)?;
        Ok(())
    }

    fn prune_jobs(&mut self, before: i64) -> Result<u64> {
        let r = self
            .conn
            .prepare_cached("DELETE FROM job WHERE state <> 'running' AND updated < ?1")
            .and_then(|mut s| s.execute([before]));
        Ok(self.check(r)? as u64)
    }

    fn claim_job(&mut self, id: &str, node: &str, now: i64, until: i64) -> Result<bool> {
        let r = self
            .conn
            .prepare_cached(
                "UPDATE job SET node = ?2, lease_until = ?4
                 WHERE id = ?1 AND state = 'running'
                   AND (node = ?2 OR node = '' OR lease_until < ?3)",
            )
            .and_then(|mut s| s.execute((id, node, now, until)));
        Ok(self.check(r)? == 1)
    }

    fn note_job_commit(&mut self, id: &str) -> Result<()> {
        let r = self
            .conn
            .prepare_cached("UPDATE job SET commits = commits + 1 WHERE id = ?1")
            .and_then(|mut s| s.execute([id]));
        self.check(r)?;
        Ok(())
    }

    fn compact(&mut self) -> Result<Vec<String>> {
        self.flush()?;
        let pages = |conn: &Connection| -> rusqlite::Result<(i64, i64)> {
            Ok((
                conn.query_row("PRAGMA page_count", [], |r| r.get(0))?,
                conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?,
            ))
        };
        let mut done = Vec::new();
        let r = pages(self.conn);
        let (before, free_before) = self.check(r)?;
        // Full-text rows left by versions that are gone (a purge or delete-history in the
        // same group commit as their write can leave one behind).
        let r = self.conn.execute(
            "DELETE FROM idx_fulltext WHERE rowid NOT IN (SELECT seq FROM resource)",
            [],
        );
        let orphans = self.check(r)?;
        done.push(format!(
            "{orphans} full-text rows of versions no longer stored removed"
        ));
        // Merge the full-text index's segments into one.
        let r = self.conn.execute(
            "INSERT INTO idx_fulltext (idx_fulltext) VALUES ('optimize')",
            [],
        );
        self.check(r)?;
        done.push("full-text index merged into one segment".into());
        // Fresh statistics for the query planner.
        let r = self.conn.execute_batch("ANALYZE");
        self.check(r)?;
        done.push("query planner statistics gathered (ANALYZE)".into());
        let r = pages(self.conn);
        let (after, free_after) = self.check(r)?;
        done.push(format!(
            "database: {before} pages ({free_before} free) before, {after} pages ({free_after} free) after; free pages are reused by later writes"
        ));
        Ok(done)
    }
}

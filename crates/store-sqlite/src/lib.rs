//! The embedded store: one SQLite database in WAL mode inside the data directory.
//!
//! Writes go through a single writer thread that takes every job waiting in its queue, runs
//! each in its own savepoint inside one SQLite transaction and commits them together with one
//! fsync (group commit, `synchronous=FULL`): a job's caller hears back only after that commit,
//! so an acknowledged write survives a crash. Readers use their own pooled connections and
//! see the last committed state without waiting for the writer (WAL snapshots).

mod cache;
mod checkpoint;
mod index;
mod schema;
mod search;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use flint_store::{
    Error, HistoryPage, HistoryQuery, Method, Result, Store, Transaction, TxNumber, Version,
};
use parking_lot::Mutex;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension, Row};

use writer::Job;

/// How many idle read connections are kept.
const MAX_IDLE_READERS: usize = 32;

/// Virtual machine steps between two looks at a read's interrupt (a few microseconds).
pub(crate) const PROGRESS_STEPS: std::ffi::c_int = 4000;

/// Columns of a version row, in the order [`version_from_row`] reads them. A macro so that
/// queries are string literals: `prepare_cached` then hashes no freshly formatted text.
macro_rules! version_columns {
    () => {
        "type, id, version, t, last_updated, method, json, seq"
    };
}
const VERSION_COLUMNS: &str = version_columns!();

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    /// The writer thread, joined by `close` once it has committed what was queued.
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<mpsc::Sender<()>>>,
    /// The last committed transaction, published by the writer.
    last_tx: Arc<std::sync::atomic::AtomicU64>,
    /// Current versions recently read by id (see `cache`).
    versions: Arc<cache::VersionCache>,
    /// Search parameter ids by (type, code), as committed: ids are never reused or removed,
    /// so searches need not look them up again.
    param_ids: search::ParamCache,
}

pub(crate) fn fault(e: rusqlite::Error) -> Error {
    Error::internal(e)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, migrating its schema, and starts the
    /// writer thread.
    ///
    /// # Errors
    /// The directory or database cannot be created or opened.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::internal(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("flint.sqlite");
        skip_memory_statistics();
        let conn = Connection::open(&path).map_err(fault)?;
        schema::configure_writer(&conn).map_err(fault)?;
        schema::migrate(&conn).map_err(fault)?;
        let last_tx = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let versions = Arc::new(cache::VersionCache::default());
        let (sender, writer_thread) =
            writer::start(conn, Arc::clone(&last_tx), Arc::clone(&versions))?;
        let checkpointer = checkpoint::start(&path)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(sender)),
                writer_thread: Mutex::new(Some(writer_thread)),
                checkpointer: Mutex::new(Some(checkpointer)),
                last_tx,
                versions,
                param_ids: Default::default(),
            }),
        })
    }

    /// Runs `f` with a pooled read connection, stopping it when `interrupt` is due: checked
    /// before it starts and, through SQLite's progress handler, every few thousand virtual
    /// machine steps while a statement runs.
    fn with_reader_until<T>(
        &self,
        interrupt: &flint_store::Interrupt,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        interrupt.check()?;
        let watch = interrupt.clone();
        let result = self.with_reader(|c| {
            c.progress_handler(PROGRESS_STEPS, Some(move || watch.is_due()));
            let result = f(c);
            c.progress_handler(PROGRESS_STEPS, None::<fn() -> bool>);
            if c.is_autocommit() {
                result
            } else {
                // Interrupted inside the search's read transaction: end it so the
                // connection can serve again.
                let _ = c.execute_batch("ROLLBACK");
                result
            }
        });
        match result {
            Err(_) if interrupt.is_due() => Err(interrupt.error()),
            other => other,
        }
    }

    /// Runs `f` with a pooled read connection.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.inner.readers.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(fault)?;
                schema::configure_reader(&c).map_err(fault)?;
                c
            }
        };
        let result = f(&conn).map_err(fault);
        // A connection left inside a transaction would serve an old snapshot: not reused.
        if !conn.is_autocommit() {
            return result;
        }
        let mut pool = self.inner.readers.lock();
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }
}

fn job_from_row(row: &Row) -> rusqlite::Result<flint_store::JobRecord> {
    let state: String = row.get(2)?;
    Ok(flint_store::JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: flint_store::JobState::parse(&state).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(2, state, rusqlite::types::Type::Text)
        })?,
        request: row.get(3)?,
        progress: row.get(4)?,
        result: row.get(5)?,
        created: row.get(6)?,
        updated: row.get(7)?,
        owner: row.get(8)?,
        node: row.get(9)?,
        lease_until: row.get(10)?,
        commits: row.get::<_, i64>(11)? as u64,
    })
}

pub(crate) fn version_from_row(row: &Row) -> rusqlite::Result<Version> {
    let json: Option<Vec<u8>> = row.get(6)?;
    Ok(Version {
        resource_type: row.get(0)?,
        id: row.get(1)?,
        version: row.get::<_, i64>(2)? as u64,
        tx: row.get::<_, i64>(3)? as u64,
        last_updated: row.get(4)?,
        method: Method::from_code(row.get::<_, i64>(5)? as u8),
        json: json.map(Bytes::from),
    })
}

pub(crate) fn read_current(
    conn: &Connection,
    resource_type: &str,
    id: &str,
) -> rusqlite::Result<Option<(Version, i64)>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        version_columns!(),
        " FROM resource WHERE type = ?1 AND id = ?2 ORDER BY version DESC LIMIT 1"
    ))?
    .query_row((resource_type, id), |row| {
        Ok((version_from_row(row)?, row.get::<_, i64>(7)?))
    })
    .optional()
}

pub(crate) fn read_version(
    conn: &Connection,
    resource_type: &str,
    id: &str,
    version: u64,
) -> rusqlite::Result<Option<Version>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        version_columns!(),
        " FROM resource WHERE type = ?1 AND id = ?2 AND version = ?3"
    ))?
    .query_row((resource_type, id, version as i64), version_from_row)
    .optional()
}

pub(crate) fn run_search(
    c: &Connection,
    cache: Option<&search::ParamCache>,
    q: &flint_store::search::SearchQuery,
) -> rusqlite::Result<flint_store::search::SearchPage> {
    use flint_store::search::{Order, Position, SearchPage};
    let rendered = search::render(c, cache, q, false)?;
    tracing::debug!(sql = %rendered.sql, "search");
    let mut stmt = c.prepare_cached(&rendered.sql)?;
    let mut rows = stmt.query(params_from_iter(rendered.params))?;
    let mut versions = Vec::new();
    let mut seqs = Vec::new();
    let mut keys = Vec::new();
    if rendered.seq_only {
        while let Some(row) = rows.next()? {
            seqs.push(row.get::<_, i64>(0)? as u64);
            if rendered.index_order {
                keys.push(row.get::<_, String>(1)?);
            }
        }
        let mut by_seq = c.prepare_cached(
            "SELECT type, id, version, t, last_updated, method, json FROM resource WHERE seq = ?1",
        )?;
        for seq in &seqs {
            versions.push(by_seq.query_row([*seq as i64], version_from_row)?);
        }
    } else {
        while let Some(row) = rows.next()? {
            seqs.push(row.get::<_, i64>(7)? as u64);
            versions.push(version_from_row(row)?);
        }
    }
    let more = versions.len() > q.limit;
    versions.truncate(q.limit);
    let next = match (more, versions.last()) {
        (true, Some(_)) if !q.sort.is_empty() => {
            let before = match q.after {
                Some(Position::Offset(n)) => n,
                _ => 0,
            };
            Some(Position::Offset(before + versions.len() as u64))
        }
        (true, Some(_)) if rendered.index_order => {
            let i = versions.len() - 1;
            Some(Position::Key(keys[i].clone(), seqs[i]))
        }
        (true, Some(last)) => Some(match q.order {
            Order::Any | Order::LastUpdated | Order::LastUpdatedDesc => {
                Position::Seq(seqs[versions.len() - 1])
            }
            Order::Id | Order::IdDesc => Position::Id(last.id.clone()),
        }),
        _ => None,
    };
    Ok(SearchPage { versions, next })
}

/// Builds the WHERE clause and parameters of a history query.
fn history_filter(q: &HistoryQuery, with_keyset: bool) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<V> = Vec::new();
    let mut bind = |clause: &str, values: Vec<V>, params: &mut Vec<V>| {
        // Number each `?` in turn: `?N` refers to the N-th bound value.
        let mut numbered = String::with_capacity(clause.len() + 8);
        let mut values = values.into_iter();
        for (i, piece) in clause.split('?').enumerate() {
            if i > 0 {
                if let Some(v) = values.next() {
                    params.push(v);
                }
                numbered.push_str(&format!("?{}", params.len()));
            }
            numbered.push_str(piece);
        }
        clauses.push(numbered);
    };
    if let Some(t) = &q.resource_type {
        bind("type = ?", vec![V::Text(t.clone())], &mut params);
    }
    if let Some(id) = &q.id {
        bind("id = ?", vec![V::Text(id.clone())], &mut params);
    }
    if let Some(since) = q.since {
        bind("last_updated >= ?", vec![V::Integer(since)], &mut params);
    }
    if let Some((start, end)) = q.at {
        bind(
            "last_updated < ? AND (ended_at IS NULL OR ended_at > ?)",
            vec![V::Integer(end), V::Integer(start)],
            &mut params,
        );
    }
    if let Some(snapshot) = q.snapshot {
        bind("t <= ?", vec![V::Integer(snapshot as i64)], &mut params);
    }
    if with_keyset {
        // `seq` follows commit order, so it alone is the keyset position.
        if let Some((_, seq)) = q.after {
            bind("seq < ?", vec![V::Integer(seq as i64)], &mut params);
        }
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (filter, params)
}

impl Store for SqliteStore {
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Version>> {
        let key = cache::key(resource_type, id);
        let (cached, epoch) = self.inner.versions.get(&key);
        if cached.is_some() {
            return Ok(cached);
        }
        let found =
            self.with_reader(|c| Ok(read_current(c, resource_type, id)?.map(|(v, _)| v)))?;
        if let Some(v) = &found {
            self.inner.versions.insert(epoch, key, v.clone());
        }
        Ok(found)
    }

    fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<Version>> {
        self.with_reader(|c| read_version(c, resource_type, id, version))
    }

    fn history(&self, q: &HistoryQuery) -> Result<HistoryPage> {
        let (filter, params) = history_filter(q, true);
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM resource {filter} ORDER BY seq DESC LIMIT {}",
            q.limit + 1
        );
        self.with_reader_until(&q.interrupt, |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(params))?;
            let mut versions = Vec::new();
            let mut keys = Vec::new();
            while let Some(row) = rows.next()? {
                let v = version_from_row(row)?;
                keys.push((v.tx, row.get::<_, i64>(7)? as u64));
                versions.push(v);
            }
            let more = versions.len() > q.limit;
            versions.truncate(q.limit);
            let next = if more {
                keys.get(q.limit.wrapping_sub(1)).copied()
            } else {
                None
            };
            Ok(HistoryPage { next, versions })
        })
    }

    fn history_count(&self, q: &HistoryQuery) -> Result<u64> {
        let (filter, params) = history_filter(q, false);
        let sql = format!("SELECT COUNT(*) FROM resource {filter}");
        self.with_reader_until(&q.interrupt, |c| {
            c.prepare_cached(&sql)?
                .query_row(params_from_iter(params), |r| r.get::<_, i64>(0))
        })
        .map(|n| n as u64)
    }

    fn search(
        &self,
        q: &flint_store::search::SearchQuery,
    ) -> Result<flint_store::search::SearchPage> {
        // One read transaction for the statements of a search (parameter ids, the page, its
        // versions): each statement would otherwise take and drop the WAL read lock itself.
        self.with_reader_until(&q.interrupt, |c| {
            c.execute_batch("BEGIN")?;
            let page = run_search(c, Some(&self.inner.param_ids), q);
            c.execute_batch("COMMIT")?;
            page
        })
    }

    fn search_count(&self, q: &flint_store::search::SearchQuery) -> Result<u64> {
        self.with_reader_until(&q.interrupt, |c| {
            let rendered = search::render(c, Some(&self.inner.param_ids), q, true)?;
            c.prepare_cached(&rendered.sql)?
                .query_row(params_from_iter(rendered.params), |r| r.get::<_, i64>(0))
        })
        .map(|n| n as u64)
    }

    fn paging_keys(&self) -> Result<Vec<flint_store::PagingKey>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, created, key FROM paging_key ORDER BY id DESC")?;
            let rows = stmt.query_map([], |r| {
                Ok(flint_store::PagingKey {
                    id: r.get::<_, i64>(0)? as u64,
                    created: r.get(1)?,
                    key: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn current_versions(
        &self,
        resource_type: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Version)>> {
        self.with_reader(|c| {
            let (sql, params): (&str, Vec<rusqlite::types::Value>) = match resource_type {
                Some(t) => (
                    concat!(
                        "SELECT ",
                        version_columns!(),
                        " FROM resource INDEXED BY resource_type_seq
                     WHERE type = ?1 AND seq > ?2 AND t_end IS NULL AND json IS NOT NULL
                     ORDER BY seq LIMIT ?3"
                    ),
                    vec![
                        t.to_string().into(),
                        (after as i64).into(),
                        (limit as i64).into(),
                    ],
                ),
                None => (
                    concat!(
                        "SELECT ",
                        version_columns!(),
                        " FROM resource
                     WHERE seq > ?1 AND t_end IS NULL AND json IS NOT NULL
                     ORDER BY seq LIMIT ?2"
                    ),
                    vec![(after as i64).into(), (limit as i64).into()],
                ),
            };
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query(params_from_iter(params))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((row.get::<_, i64>(7)? as u64, version_from_row(row)?));
            }
            Ok(out)
        })
    }

    fn job(&self, id: &str) -> Result<Option<flint_store::JobRecord>> {
        self.with_reader(|c| {
            c.prepare_cached(
                "SELECT id, kind, state, request, progress, result, created, updated, owner, node, lease_until, commits FROM job WHERE id = ?1",
            )?
            .query_row([id], job_from_row)
            .optional()
        })
    }

    fn jobs(&self, state: flint_store::JobState) -> Result<Vec<flint_store::JobRecord>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, state, request, progress, result, created, updated, owner, node, lease_until, commits FROM job
                 WHERE state = ?1 ORDER BY created",
            )?;
            let rows = stmt.query_map([state.as_str()], job_from_row)?;
            rows.collect()
        })
    }

    fn count_jobs(&self, state: flint_store::JobState) -> Result<u64> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT count(*) FROM job WHERE state = ?1")?
                .query_row([state.as_str()], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    fn last_tx(&self) -> Result<TxNumber> {
        Ok(self.inner.last_tx.load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static,
    {
        let (job, receiver) = writer::job(job);
        let sent = self
            .inner
            .writer
            .lock()
            .as_ref()
            .map(|w| w.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(Error::new(
                flint_fhir::IssueType::Transient,
                "the store is shutting down",
            ));
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(Error::internal("the write was abandoned by the writer")))
    }
}

impl SqliteStore {
    /// Stops accepting writes and waits until the writer has committed what it has and
    /// checkpointed the log into the database file.
    pub fn close(&self) {
        self.inner.checkpointer.lock().take();
        self.inner.writer.lock().take();
        // The writer ends once its queue is empty; a panic there was already reported.
        if let Some(thread) = self.inner.writer_thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// Turns off SQLite's memory statistics, which Flint never reads: with them on, every
/// allocation SQLite makes takes a global mutex (a tenth of the writer's time in a bulk load).
/// It can only be set before SQLite initialises, so it is done once, before the first
/// connection; when something else opened a connection first, SQLite refuses and keeps them.
fn skip_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` is called with its documented argument for this option
        // (an int) and before any other use of SQLite by this code; if SQLite has already
        // been initialised it returns SQLITE_MISUSE and changes nothing.
        let _ = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
    });
}

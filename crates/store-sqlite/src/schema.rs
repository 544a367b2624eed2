//! Connection settings and the schema, created or migrated on open.

use rusqlite::Connection;

/// The schema version this build writes. Migrations run in order up to it.
const SCHEMA_VERSION: i64 = 10;

/// SQL functions the queries use: `flint_hash(text)`, the index key hash (chains, `_has`).
fn add_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "flint_hash",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: String = ctx.get(0)?;
            Ok(crate::index::key_hash(&text))
        },
    )
}

pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    add_functions(conn)?;
    // A job runs a few dozen distinct statements (one insert per index table, look-ups,
    // conditional searches): all of them stay prepared.
    conn.set_prepared_statement_cache_capacity(256);
    // WAL lets readers work beside the writer; FULL makes every commit durable with an fsync
    // of the log (amortised by group commit in the writer thread).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Checkpoints are the background thread's job (see `checkpoint`); this is the safety net.
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -131_072)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(())
}

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    add_functions(conn)?;
    // Searches of one shape share their SQL text (values are bound), so prepared statements
    // are reused across requests.
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(())
}

pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the data directory was written by a newer Flint (schema {current}, this build knows {SCHEMA_VERSION})"
        )));
    }
    if current < 1 {
        conn.execute_batch(
            "BEGIN;
             -- One row per committed transaction: its number and time.
             CREATE TABLE tx (
                 t       INTEGER PRIMARY KEY,
                 instant INTEGER NOT NULL
             );
             -- Every version of every resource. `seq` grows with every version written, so
             -- it orders versions exactly as their transactions committed; `t_end`/`ended_at`
             -- are set when a later version supersedes this one, so that a snapshot at
             -- transaction T sees exactly the versions with t <= T < t_end.
             CREATE TABLE resource (
                 seq          INTEGER PRIMARY KEY,
                 type         TEXT    NOT NULL,
                 id           TEXT    NOT NULL,
                 version      INTEGER NOT NULL,
                 t            INTEGER NOT NULL,
                 t_end        INTEGER,
                 last_updated INTEGER NOT NULL,
                 ended_at     INTEGER,
                 method       INTEGER NOT NULL,
                 json         BLOB
             );
             CREATE UNIQUE INDEX resource_key ON resource (type, id, version);
             CREATE INDEX resource_type_seq ON resource (type, seq);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if current < 2 {
        // Search indexes: one table per value type, rows tied to the version (`seq`) they were
        // extracted from, so that a search can be answered as of any transaction. Text columns
        // hold '' for an absent part: they are key columns, which must not be NULL.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE search_param (
                 id   INTEGER PRIMARY KEY,
                 type TEXT NOT NULL,
                 code TEXT NOT NULL,
                 UNIQUE (type, code)
             );
             CREATE TABLE idx_string (
                 param INTEGER NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL, original TEXT NOT NULL,
                 PRIMARY KEY (param, value, seq, original)
             ) WITHOUT ROWID;
             -- Tokens and references are matched by 64-bit hashes of their parts (see
             -- `index::key_hash`): integer keys keep these, the largest index tables, small and
             -- fast. 0 stands for an absent system or code.
             CREATE TABLE idx_token (
                 param INTEGER NOT NULL, code INTEGER NOT NULL, system INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (param, code, system, seq)
             ) WITHOUT ROWID;
             -- Displays and CodeableConcept texts, normalized, for `:text`.
             CREATE TABLE idx_token_text (
                 param INTEGER NOT NULL, text TEXT NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (param, text, seq)
             ) WITHOUT ROWID;
             -- One row per way a reference can be searched: `Type/id`, `Type/id/_history/v`,
             -- `U:` absolute or canonical URL (and `url|version`), `I:system|value` and
             -- `I:|value` for a logical identifier.
             CREATE TABLE idx_reference (
                 param INTEGER NOT NULL, key INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (param, key, seq)
             ) WITHOUT ROWID;
             CREATE TABLE idx_date (
                 param INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (param, start, end, seq)
             ) WITHOUT ROWID;
             CREATE INDEX idx_date_end ON idx_date (param, end, start, seq);
             CREATE TABLE idx_number (
                 param INTEGER NOT NULL, low REAL NOT NULL, high REAL NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY (param, low, high, seq, value)
             ) WITHOUT ROWID;
             CREATE TABLE idx_quantity (
                 param INTEGER NOT NULL, seq INTEGER NOT NULL, low REAL NOT NULL, high REAL NOT NULL,
                 system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,
                 canonical_unit TEXT NOT NULL, canonical_low REAL, canonical_high REAL
             );
             CREATE INDEX idx_quantity_code ON idx_quantity (param, code, low, seq);
             CREATE INDEX idx_quantity_canonical ON idx_quantity (param, canonical_unit, canonical_low, seq);
             CREATE TABLE idx_uri (
                 param INTEGER NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (param, value, seq)
             ) WITHOUT ROWID;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if current < 3 {
        conn.execute_batch(
            "BEGIN;
             -- Keys that seal paging links; the engine rotates them.
             CREATE TABLE paging_key (
                 id      INTEGER PRIMARY KEY,
                 created INTEGER NOT NULL,
                 key     BLOB NOT NULL
             );
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    if current < 4 {
        // Look-ups of one version's rows (filters that do not drive a search, `:missing`,
        // delete-history) for the tables whose keys do not lead to `seq`.
        conn.execute_batch(
            "BEGIN;
             CREATE INDEX idx_string_seq ON idx_string (seq, param);
             CREATE INDEX idx_token_text_seq ON idx_token_text (seq, param);
             CREATE INDEX idx_date_seq ON idx_date (seq, param);
             CREATE INDEX idx_number_seq ON idx_number (seq, param);
             CREATE INDEX idx_quantity_seq ON idx_quantity (seq, param);
             CREATE INDEX idx_uri_seq ON idx_uri (seq, param);
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    if current < 5 {
        // Searches driven by an index decide whether a row's version is live without reading
        // the version itself (wide: it holds the JSON):
        // - `ended` lists the versions a later one superseded, with the transaction that did;
        // - `tx.last_seq` is the highest `seq` written up to each transaction, so the versions
        //   of a snapshot T are exactly those with `seq <= last_seq(T)` that no transaction
        //   up to T ended.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE ended (
                 seq   INTEGER PRIMARY KEY,
                 t_end INTEGER NOT NULL
             );
             INSERT INTO ended (seq, t_end) SELECT seq, t_end FROM resource WHERE t_end IS NOT NULL;
             ALTER TABLE tx ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
             CREATE TEMP TABLE tx_seq (t INTEGER PRIMARY KEY, s INTEGER NOT NULL);
             INSERT INTO temp.tx_seq SELECT t, max(seq) FROM resource GROUP BY t;
             CREATE TEMP TABLE tx_last (t INTEGER PRIMARY KEY, s INTEGER NOT NULL);
             INSERT INTO temp.tx_last
                 SELECT tx.t, coalesce(max(x.s) OVER (ORDER BY tx.t), 0)
                 FROM tx LEFT JOIN temp.tx_seq x ON x.t = tx.t;
             UPDATE tx SET last_seq = (SELECT s FROM temp.tx_last l WHERE l.t = tx.t);
             DROP TABLE temp.tx_seq;
             DROP TABLE temp.tx_last;
             PRAGMA user_version = 5;
             COMMIT;",
        )?;
    }
    // (Version 6 was never released: its tables came with version 9.)
    if current < 7 {
        // Background jobs (asynchronous requests, `$reindex`), and look-ups of one version's
        // token and reference rows, which `$reindex` replaces and `delete_history` removes.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS job (
                 id       TEXT PRIMARY KEY,
                 kind     TEXT NOT NULL,
                 state    TEXT NOT NULL,
                 request  TEXT NOT NULL,
                 progress TEXT NOT NULL,
                 result   TEXT,
                 created  INTEGER NOT NULL,
                 updated  INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS job_state ON job (state);
             CREATE INDEX IF NOT EXISTS idx_token_seq ON idx_token (seq, param);
             CREATE INDEX IF NOT EXISTS idx_reference_seq ON idx_reference (seq, param);
             PRAGMA user_version = 7;
             COMMIT;",
        )?;
    }
    if current < 8 {
        // `_text` and `_content`: one full-text row per version (rowid = seq) with its
        // resource type as a token, its narrative and all its text. Contentless: the text is
        // in the resource already; rows can still be deleted (reindex, delete-history).
        conn.execute_batch(
            "BEGIN;
             CREATE VIRTUAL TABLE IF NOT EXISTS idx_fulltext USING fts5(
                 kind, narrative, content,
                 content = '', contentless_delete = 1,
                 tokenize = 'unicode61 remove_diacritics 2'
             );
             PRAGMA user_version = 8;
             COMMIT;",
        )?;
    }
    if current < 9 {
        // Composite parameters and `_sort` by token and reference parameters.
        // - `idx_composite`: one row per tuple and trailing component. The first component
        //   (a token or a reference) is the key: `a_code`/`a_system` as in `idx_token`, or a
        //   reference key hash in `a_code` with `a_system` 0. `pos` says which component the
        //   `b_` columns hold (1, 2, ...); `tuple` ties the rows of one tuple together, so
        //   every component matches on the same element. `b_code`/`b_system`: token or
        //   reference hashes; `b_text`: normalized string, uri, quantity code; `b_original`:
        //   string as written, quantity system; `b_low`/`b_high`: date microseconds, number
        //   or quantity ranges.
        // - `sort` on token and reference rows: the text `_sort` orders by (token: system,
        //   U+0001, code; reference: `Type/id`, else the URL, else the identifier's value). A
        //   column rather than a table: no row more to write per value.
        // Resources stored before this version lack these rows, and those of versions 7 and 8
        // (full text, contained resources): a `$reindex` job over everything is queued, which
        // the engine runs in the background from the start (`resume_jobs`).
        conn.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS idx_composite (
                 param      INTEGER NOT NULL,
                 a_code     INTEGER NOT NULL,
                 a_system   INTEGER NOT NULL,
                 seq        INTEGER NOT NULL,
                 tuple      INTEGER NOT NULL,
                 pos        INTEGER NOT NULL,
                 b_code     INTEGER,
                 b_system   INTEGER,
                 b_text     TEXT,
                 b_original TEXT,
                 b_unit     TEXT,
                 b_low,
                 b_high
             );
             CREATE INDEX IF NOT EXISTS idx_composite_key ON idx_composite (param, a_code, a_system, seq);
             CREATE INDEX IF NOT EXISTS idx_composite_seq ON idx_composite (seq, param);
             ALTER TABLE idx_token ADD COLUMN sort TEXT;
             ALTER TABLE idx_reference ADD COLUMN sort TEXT;
             INSERT INTO job (id, kind, state, request, progress, result, created, updated)
                 SELECT 'schema-9-reindex', 'reindex', 'running', '{{\"type\":null}}',
                        '{{\"after\":0,\"done\":0}}', NULL, {now}, {now}
                 WHERE EXISTS (SELECT 1 FROM resource);
             PRAGMA user_version = 9;
             COMMIT;",
            now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64)
        ))?;
    }
    if current < 10 {
        // Jobs for every kind of asynchronous request: whose they are, which node runs them
        // under a lease, and whether their work committed anything (SPEC section 5).
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE job ADD COLUMN owner TEXT NOT NULL DEFAULT '';
             ALTER TABLE job ADD COLUMN node TEXT NOT NULL DEFAULT '';
             ALTER TABLE job ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE job ADD COLUMN commits INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 10;
             COMMIT;",
        )?;
    }
    Ok(())
}

//! Connection settings and the schema, created or migrated on open.

use rusqlite::Connection;

/// The schema version this build writes. Migrations run in order up to it.
const SCHEMA_VERSION: i64 = 1;

pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers work beside the writer; FULL makes every commit durable with an fsync
    // of the log (amortised by group commit in the writer thread).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -131_072)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(())
}

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
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
    Ok(())
}

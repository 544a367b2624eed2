//! Background WAL checkpoints. Copying the log back into the database file is the costliest
//! part of a busy write load; done by this thread on its own connection, it stays off the
//! writer's path (the writer's own automatic checkpoint remains as a safety net, at a size the
//! background thread normally never lets the log reach).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use flint_store::{Error, Result};
use rusqlite::Connection;

use crate::fault;

/// How often the log is checkpointed.
const INTERVAL: Duration = Duration::from_millis(200);

/// Starts the checkpointer; it stops when the returned sender is dropped.
pub fn start(path: &Path) -> Result<mpsc::Sender<()>> {
    let conn = Connection::open(path).map_err(fault)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fault)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("flint-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                // PASSIVE never waits for readers or the writer; what it cannot copy now it
                // copies next time.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "background checkpoint failed");
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

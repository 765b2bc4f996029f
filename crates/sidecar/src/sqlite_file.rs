//! Opening a SQLite file that other sidecar processes open at the same time
//! (the name registry, the default state store).
//!
//! Turning a new file to WAL mode needs an exclusive lock, and SQLite may
//! answer "database is locked" at once instead of waiting for its busy
//! timeout. [`open_shared`] retries that first set-up for a bounded time,
//! so sidecars started together (as `dapr-wasm up` does) all start.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// How long to keep retrying a locked database at start-up.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// How long a statement of the registry or the SQLite broker waits for
/// another process's lock before it fails.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` with `busy_timeout` (how long a statement waits for
/// another connection's lock) and runs `setup` (pragmas, `CREATE ... IF
/// NOT EXISTS`), retrying while another process holds the lock.
pub(crate) fn open_shared(
    path: &Path,
    setup: &str,
    busy_timeout: Duration,
) -> rusqlite::Result<Connection> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let attempt = Connection::open(path).and_then(|connection| {
            connection.busy_timeout(busy_timeout)?;
            connection.execute_batch(setup)?;
            Ok(connection)
        });
        match attempt {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    && started.elapsed() < OPEN_PATIENCE =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}
